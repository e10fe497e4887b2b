//! The `m3ae` command line.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tch::Device;

use m3ae::parity;
use m3ae::weights::write_safetensors;

#[derive(Parser)]
#[command(name = "m3ae", version, about = "M3AE on libtorch: parity with the upstream reference, checkpoints, training")]
struct Cli {
    /// Run on CUDA when available (default: CPU).
    #[arg(long, global = true)]
    cuda: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the port against a golden set directory; exit non-zero if any tensor is out of tolerance.
    Parity {
        /// Set directories (model sets such as parity/tiny-a, or preprocessing sets).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Also write every tensor the port computed, under the golden names, to this safetensors file
        /// (with several sets, the set name is appended to the file stem).
        #[arg(long)]
        dump: Option<PathBuf>,
    },
}

fn device(cuda: bool) -> Device {
    if cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    }
}

fn dump_path(base: &PathBuf, set: &str, many: bool) -> PathBuf {
    if !many {
        return base.clone();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    base.with_file_name(format!("{stem}.{set}.safetensors"))
}

fn run_parity(dirs: &[PathBuf], dump: Option<&PathBuf>, device: Device) -> m3ae::Result<bool> {
    let mut all_ok = true;
    for dir in dirs {
        let outcome = parity::check_set(dir, device)?;
        print!("{}", outcome.table());
        let failures = outcome.failures();
        if !failures.is_empty() {
            all_ok = false;
            eprintln!("{}: {} tensor(s) out of tolerance: {}", dir.display(), failures.len(), failures.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "));
        }
        if let Some(base) = dump {
            let path = dump_path(base, &outcome.set, dirs.len() > 1);
            write_safetensors(&path, outcome.computed.iter().map(|(k, v)| (k.as_str(), v)))?;
            println!("wrote {} tensors to {}", outcome.computed.len(), path.display());
        }
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let device = device(cli.cuda);
    let result = match &cli.command {
        Command::Parity { dirs, dump } => run_parity(dirs, dump.as_ref(), device),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
