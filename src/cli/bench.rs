//! `m3ae bench --dir DIR --workload W [--repeats N] [--bf16] [--out FILE.json]`
use std::path::PathBuf;

use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// A folder written by `bench/upstream_bench.py prepare` (config.json, state_dict.safetensors, inputs.safetensors).
    #[arg(long)]
    pub dir: PathBuf,
    /// infer | train | retrieval | load | matmul
    #[arg(long)]
    pub workload: String,
    /// Timed runs after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Weights and inputs in bfloat16 (infer, retrieval); train: the step under bf16 autocast
    /// (fp32 weights, as `precision: "bf16"`); with --cuda, the GPU comparison.
    #[arg(long)]
    pub bf16: bool,
    /// Also write the report here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    let report = m3ae::bench::run(&args.dir, &args.workload, args.repeats, device, args.bf16)?;
    let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
    println!("{json}");
    if let Some(out) = &args.out {
        std::fs::write(out, json).map_err(|e| m3ae::Error::io(out, e))?;
    }
    Ok(true)
}
