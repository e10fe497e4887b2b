//! The `m3ae` command line.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tch::Device;

mod cli;

#[derive(Parser)]
#[command(name = "m3ae", version, about = "M3AE on libtorch: parity with the upstream reference, checkpoints, training")]
struct Cli {
    /// Run on the first CUDA device (default: CPU). Without a usable GPU this is an error, never a quiet CPU run.
    #[arg(long, global = true)]
    cuda: bool,
    /// Run `precision: "bf16"` (or `predict --bf16`) on a CPU without bf16 instructions
    /// (neither avx512_bf16 nor amx_bf16), where bf16 is emulated and slower than fp32.
    #[arg(long, global = true)]
    allow_slow_bf16: bool,
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
    /// Pre-train (MLM + MIM + ITM, upstream's task_pretrain_m3ae) into a run folder.
    Pretrain(cli::RunArgs),
    /// Stage 0: contrastive (CLIP-style) pre-training of the vision and text encoders, saved where `vit` and `tokenizer` load them.
    PretrainEncoders(cli::pretrain_encoders::Args),
    /// Fine-tune on a downstream task (upstream's task_finetune_* presets).
    Finetune(cli::finetune::Args),
    /// Evaluate a checkpoint on a split with upstream's metrics.
    Test(cli::test::Args),
    /// The MIM/MLM ablation study on generated data, end to end: pre-train, fine-tune, test, report.
    Demo(cli::demo::Args),
    /// The same ablation study on any data and initialisation.
    Ablate(cli::ablate::Args),
    /// Draw a run's losses, lr and validation metrics (metrics.jsonl) into PNG files.
    Plot(cli::plot::Args),
    /// Inference on your own images: answer a question, score a caption, rank images for a query.
    Predict(cli::predict::Args),
}

fn main() -> ExitCode {
    // first, while this is the only thread (setenv is not thread-safe)
    m3ae::runtime::set_process_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if !m3ae::runtime::keep_freed_tensor_memory() {
        log::debug!("allocator settings not applied (glibc settings given, or not glibc)");
    }
    let cli = Cli::parse();
    if let Err(e) = m3ae::model::linear::check_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    m3ae::train::cpu_bf16::set_allow_slow(cli.allow_slow_bf16);
    let device = if !cli.cuda {
        Device::Cpu
    } else if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        eprintln!("error: --cuda: no usable CUDA device (libtorch sees {} GPU(s); a CPU-only machine, a missing driver or a CPU build of libtorch)", tch::Cuda::device_count());
        return ExitCode::from(2);
    };
    log::info!("device: {}", m3ae::parity::report::device_name(device));
    if device == Device::Cpu {
        log::debug!("large fp32 linear layers: {:?} (M3AE_CPU_GEMM=blas|onednn)", m3ae::model::linear::cpu_gemm());
    }
    let result = match &cli.command {
        Command::Parity(args) => cli::parity::run(args, device),
        Command::Convert(args) => cli::convert::run(args, device),
        Command::Export(args) => cli::export::run(args, device),
        Command::Data(args) => cli::data::run(args, device),
        Command::Bench(args) => cli::bench::run(args, device),
        Command::Pretrain(args) => cli::pretrain::run(args, device),
        Command::PretrainEncoders(args) => cli::pretrain_encoders::run(args, device),
        Command::Finetune(args) => cli::finetune::run(args, device),
        Command::Test(args) => cli::test::run(args, device),
        Command::Plot(args) => cli::plot::run(args, device),
        Command::Demo(args) => cli::demo::run(args, device),
        Command::Ablate(args) => cli::ablate::run(args, device),
        Command::Predict(args) => cli::predict::run(args, device),
    };
    // M3AE_ONEDNN_FALLBACK=error: a oneDNN failure the command did not report itself
    let result = result.and_then(|ok| m3ae::model::linear::check_no_fallback().map(|()| ok));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            // a launcher that chose the port starts the ranks over on another
            ExitCode::from(if matches!(e, m3ae::Error::PortInUse { .. }) { m3ae::dist::launch::PORT_IN_USE_EXIT } else { 2 })
        }
    }
}
