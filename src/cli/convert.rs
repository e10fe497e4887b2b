//! `m3ae convert`
use tch::Device;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args, _device: Device) -> m3ae::Result<bool> {
    Err(m3ae::Error::Config("`m3ae convert` is being written".into()))
}
