//! `m3ae export`
use tch::Device;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args, _device: Device) -> m3ae::Result<bool> {
    Err(m3ae::Error::Config("`m3ae export` is being written".into()))
}
