//! `m3ae finetune TASK --run-dir DIR [--config FILE] [--set KEY=JSON]… [--resume]`
use m3ae::train::task::{Task, FINETUNE_TASKS};
use tch::Device;

use super::RunArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The task: upstream's `task_finetune_*` preset with `clip16 text_roberta`.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(FINETUNE_TASKS))]
    pub task: String,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    super::fit(Task::finetune(&args.task)?, &args.run, device)
}
