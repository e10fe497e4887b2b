//! `m3ae parity DIR… [--dump FILE]`
use std::path::{Path, PathBuf};

use tch::Device;

use m3ae::parity;
use m3ae::weights::write_safetensors;

#[derive(clap::Args)]
pub struct ParityArgs {
    /// Set directories (model sets such as parity/tiny-a, or preprocessing sets such as parity/preprocess).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Also write every tensor the port computed, under the golden names, to this safetensors file
    /// (with several sets, the set name is inserted before the extension).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Multiply every tolerance, from 1 to 10 (larger values are refused). The CUDA device check uses 10.
    #[arg(long, default_value_t = 1.0)]
    pub tol_scale: f64,
    /// Load model sets from their upstream `model.ckpt` (our reader and converter) instead of
    /// `state_dict.safetensors`; the load report is compared with upstream's too.
    #[arg(long)]
    pub from_ckpt: bool,
}

fn dump_path(base: &Path, set: &str, many: bool) -> PathBuf {
    if !many {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    base.with_file_name(format!("{stem}.{set}.safetensors"))
}

/// Prints each set's table; Ok(false) when any tensor is out of tolerance.
pub fn run(args: &ParityArgs, device: Device) -> m3ae::Result<bool> {
    let mut all_ok = true;
    for dir in &args.dirs {
        let source = if args.from_ckpt { parity::WeightsSource::Checkpoint } else { parity::WeightsSource::StateDict };
        let outcome = parity::check_set_with(dir, source, device, args.tol_scale)?;
        print!("{}", outcome.table());
        let failures = outcome.failures();
        if !failures.is_empty() {
            all_ok = false;
            let names: Vec<&str> = failures.iter().map(|r| r.name.as_str()).collect();
            eprintln!("{}: {} tensor(s) out of tolerance: {}", dir.display(), failures.len(), names.join(", "));
        }
        if let Some(base) = &args.dump {
            let path = dump_path(base, &outcome.set, args.dirs.len() > 1);
            write_safetensors(&path, outcome.computed.iter().map(|(k, v)| (k.as_str(), v)))?;
            println!("wrote {} tensors to {}", outcome.computed.len(), path.display());
        }
    }
    Ok(all_ok)
}
