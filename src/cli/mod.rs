//! One file per subcommand; each owns its clap arguments and its `run`.
pub mod ablate;
pub mod bench;
pub mod convert;
pub mod data;
pub mod demo;
pub mod data_prepare;
pub mod data_synth;
pub mod export;
pub mod finetune;
pub mod parity;
pub mod plot;
pub mod predict;
pub mod pretrain;
pub mod pretrain_encoders;
pub mod test;

use std::path::PathBuf;

use m3ae::config::keys::parse_override;
use m3ae::train::task::Task;
use m3ae::train::trainer::{fit as fit_run, Outcome, RunOptions};
use tch::Device;

/// The options every training command takes.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The run folder: config.json, metrics.jsonl, checkpoints/{last,best}.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Upstream's config dict as JSON, laid over the task's preset and load_path's architecture.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Config override `key=JSON` (e.g. `per_gpu_batchsize=16`, `loss_names.mim=0`); repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=JSON", num_args = 1..)]
    pub set: Vec<String>,
    /// Switch an objective off: the readable form of `--set loss_names.X=0` (no head, no loss).
    #[arg(long, value_parser = ["mim", "mlm", "itm"])]
    pub ablate: Vec<String>,
    /// Continue the run from checkpoints/last with its saved config (--config, --ablate and
    /// --set are refused, except `--set max_steps=N` to extend the run).
    #[arg(long)]
    pub resume: bool,
    /// Train with N processes on this machine (torchrun's job, built in): Gloo on the CPU,
    /// NCCL with --cuda (GPU i for process i). Each optimizer step sees the same samples as
    /// one process; only rank 0 writes files.
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,
}

/// Runs `fit` for `task` with the CLI's options and reports how it ended.
pub fn fit(task: Task, args: &RunArgs, device: Device) -> m3ae::Result<bool> {
    let mut overrides = args.set.iter().map(|s| parse_override(s)).collect::<m3ae::Result<Vec<_>>>()?;
    overrides.extend(args.ablate.iter().map(|o| (format!("loss_names.{o}"), serde_json::json!(0))));
    // a resumed run keeps its saved config; only its step budget can grow (start.rs checks the value)
    let resumable = overrides.iter().all(|(k, _)| k == m3ae::train::start::RESUME_KEY) && args.ablate.is_empty();
    if args.resume && (!resumable || args.config.is_some()) {
        return Err(m3ae::Error::Config(format!("--resume continues the run with its saved config: drop --config, --ablate and every --set but {}=N", m3ae::train::start::RESUME_KEY)));
    }
    if let Some(n) = args.nproc.filter(|&n| n > 1) {
        if std::env::var_os("RANK").is_some() {
            return Err(m3ae::Error::Config("--nproc inside a launch that already set RANK (torchrun?): use one launcher".into()));
        }
        return m3ae::dist::launch::launch_local(n, &without_nproc(std::env::args_os().skip(1)));
    }
    let opts = RunOptions { task, run_dir: args.run_dir.clone(), config_file: args.config.clone(), overrides, resume: args.resume, device };
    let summary = fit_run(&opts)?;
    // in a multi-process run, rank 0 reports
    if std::env::var("RANK").is_ok_and(|r| r.trim() != "0") {
        return Ok(summary.outcome != Outcome::Interrupted);
    }
    println!("{}", m3ae::train::log::end_line(&summary));
    if let Some(v) = &summary.last_validation {
        for (k, x) in v {
            println!("  {k:<40} {x:.6}");
        }
    }
    Ok(summary.outcome != Outcome::Interrupted)
}

/// The command line minus `--nproc N` / `--nproc=N`: what each launched rank runs.
fn without_nproc(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match a.to_str() {
            Some("--nproc") => skip_value = true,
            Some(s) if s.starts_with("--nproc=") => {}
            _ => out.push(a),
        }
    }
    out
}
