//! `m3ae plot DIR`
use std::path::PathBuf;

use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// A run folder holding metrics.jsonl; the PNG files go to DIR/plots/.
    pub run_dir: PathBuf,
}

pub fn run(args: &Args, _device: Device) -> m3ae::Result<bool> {
    for p in m3ae::report::plot::plot_run(&args.run_dir)? {
        println!("wrote {}", p.display());
    }
    Ok(true)
}
