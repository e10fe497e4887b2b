//! `m3ae test TASK --run-dir DIR [--checkpoint best|last|PATH] [--split test|val] [--set KEY=JSON]…`
use std::path::PathBuf;

use m3ae::config::keys::parse_override;
use m3ae::train::evaluate::{test, TestOptions};
use m3ae::train::task::{Task, FINETUNE_TASKS};
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// The task (`pretrain` evaluates the pre-training objectives).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(FINETUNE_TASKS.iter().copied().chain(["pretrain"])))]
    pub task: String,
    /// The run folder: metrics are appended to its metrics.jsonl and written to test_metrics.json.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// `best` or `last` of the run, or a model folder / .ckpt.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
    /// The split to evaluate. Upstream's test computes recalls on val: `--split val` reproduces its figures.
    #[arg(long, default_value = "test", value_parser = ["test", "val"])]
    pub split: String,
    /// Config override `key=JSON` (e.g. `data_root="…"`); repeatable.
    #[arg(long = "set", value_name = "KEY=JSON", num_args = 1..)]
    pub set: Vec<String>,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    let task = if args.task == "pretrain" { Task::pretrain() } else { Task::finetune(&args.task)? };
    let overrides = args.set.iter().map(|s| parse_override(s)).collect::<m3ae::Result<Vec<_>>>()?;
    let o = TestOptions { task, run_dir: args.run_dir.clone(), checkpoint: args.checkpoint.clone(), split: args.split.clone(), overrides, device };
    let ev = test(&o)?;
    for (k, v) in &ev.values {
        println!("{k:<40} {v:.6}");
    }
    if ev.unreadable_images > 0 {
        println!("{:<40} {}", "unreadable images (left out)", ev.unreadable_images);
    }
    Ok(true)
}
