//! `m3ae export`
use std::path::PathBuf;

use m3ae::checkpoint::export::export_model_dir;
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// Model folder: model.safetensors + config.json (as `m3ae convert` writes it).
    model_dir: PathBuf,
    /// Output .ckpt: a Lightning-shaped torch.save zip that `torch.load(weights_only=True)` opens.
    out: PathBuf,
    /// Replace an existing OUT (without it, one is refused).
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args, _device: Device) -> m3ae::Result<bool> {
    if args.out.exists() && !args.force {
        return Err(m3ae::Error::Config(format!("{} already exists: give --force to overwrite it", args.out.display())));
    }
    let n = export_model_dir(&args.model_dir, &args.out)?;
    println!("wrote {} ({n} tensors)", args.out.display());
    Ok(true)
}
