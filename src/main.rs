//! The `m3ae` command line.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tch::Device;

mod cli;

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
    /// Compare the port against golden set directories; exit 1 if any tensor is out of tolerance.
    Parity(cli::parity::ParityArgs),
    /// Convert an upstream checkpoint (.ckpt, state_dict, CLIP or RoBERTa weights) to a model folder.
    Convert(cli::convert::Args),
    /// Export a model folder to a Lightning-shaped .ckpt that upstream PyTorch loads.
    Export(cli::export::Args),
    /// Time one benchmark workload on a prepared folder (bench/run.sh runs both implementations).
    Bench(cli::bench::Args),
    /// Inspect upstream Arrow datasets before a long job.
    Data(cli::data::Args),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if !m3ae::runtime::keep_freed_tensor_memory() {
        log::debug!("allocator settings not applied (glibc settings given, or not glibc)");
    }
    let cli = Cli::parse();
    let device = if cli.cuda { Device::cuda_if_available() } else { Device::Cpu };
    let result = match &cli.command {
        Command::Parity(args) => cli::parity::run(args, device),
        Command::Convert(args) => cli::convert::run(args, device),
        Command::Export(args) => cli::export::run(args, device),
        Command::Data(args) => cli::data::run(args, device),
        Command::Bench(args) => cli::bench::run(args, device),
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
