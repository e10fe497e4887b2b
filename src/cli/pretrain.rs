//! `m3ae pretrain --run-dir DIR [--config FILE] [--set KEY=JSON]… [--ablate mim|mlm|itm]… [--resume]`
use m3ae::train::task::Task;
use tch::Device;

use super::RunArgs;

pub fn run(args: &RunArgs, device: Device) -> m3ae::Result<bool> {
    super::fit(Task::pretrain(), args, device)
}
