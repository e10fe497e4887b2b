//! `m3ae demo [--out DIR] [--seeds N] [--quick | --long] [--parallel N]`: the ablation study on
//! generated data, end to end, with its report.
use std::path::PathBuf;

use m3ae::demo::presets::Size;
use m3ae::demo::{run_demo, DemoOptions, StudyReport};
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// The report folder; the generated data and every run live inside it. A rerun skips what finished.
    #[arg(long, default_value = "demo-report")]
    pub out: PathBuf,
    /// Seeds per variant (each cell of the table is a mean ± spread over them) [default: 3; 5 with --long].
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Smoke-test size: a tenth of the data and a few steps per run (numbers mean nothing).
    #[arg(long, conflicts_with = "long")]
    pub quick: bool,
    /// The larger study (about an hour on 2 cores): 3× the pre-training, 2–3× the fine-tuning, 5 seeds.
    #[arg(long)]
    pub long: bool,
    /// Jobs at once (default: one per core, each single-threaded).
    #[arg(long)]
    pub parallel: Option<usize>,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    if device != Device::Cpu {
        return Err(m3ae::Error::Config("m3ae demo runs its jobs on the CPU (the study is sized for it); drop --cuda".into()));
    }
    let size = if args.quick { Size::Quick } else if args.long { Size::Long } else { Size::Standard };
    let o = DemoOptions { out: args.out.clone(), seeds: args.seeds, size, parallel: args.parallel };
    print_report(&run_demo(&o)?);
    Ok(true)
}

/// Prints the table and the report's files.
pub fn print_report(r: &StudyReport) {
    println!("\n{}\n{}", r.table, r.checks);
    println!("{} job(s) run now; report files:", r.jobs_run);
    for f in &r.files {
        println!("  {}", f.display());
    }
}
