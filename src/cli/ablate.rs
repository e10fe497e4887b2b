//! `m3ae ablate --variants full,no-mim,no-mlm,none [--seeds 0,1] [--tasks …] [--set …]`: the
//! demo's study on any data (e.g. upstream's Arrow files, from an upstream checkpoint).
use std::path::PathBuf;
use std::time::Instant;

use m3ae::config::keys::parse_override;
use m3ae::demo::plan::{StudySpec, Variant};
use m3ae::demo::run_study;
use m3ae::train::task::FINETUNE_TASKS;
use serde_json::json;
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// The study folder: runs/ and the report.
    #[arg(long, default_value = "ablation-report")]
    pub out: PathBuf,
    /// Pre-training variants, comma-separated: full, no-mim, no-mlm, none.
    #[arg(long, value_delimiter = ',', default_value = "full,no-mim,no-mlm,none")]
    pub variants: Vec<String>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    pub seeds: Vec<u64>,
    /// Fine-tuning tasks, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "vqa_vqa_rad,irtr_roco")]
    pub tasks: Vec<String>,
    /// Skip the fine-tuning runs that start from no pre-training.
    #[arg(long)]
    pub no_baseline: bool,
    /// `--config` of every run (e.g. the architecture, data_root, tokenizer).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `key=JSON` for every run (e.g. `data_root="…"`, `load_path="…"` as the initialisation).
    #[arg(long = "set", value_name = "KEY=JSON", num_args = 1..)]
    pub set: Vec<String>,
    /// `key=JSON` for the pre-training runs only (e.g. `max_steps=1000`).
    #[arg(long = "pretrain-set", value_name = "KEY=JSON", num_args = 1..)]
    pub pretrain_set: Vec<String>,
    /// `key=JSON` for the fine-tuning runs only.
    #[arg(long = "finetune-set", value_name = "KEY=JSON", num_args = 1..)]
    pub finetune_set: Vec<String>,
    /// Jobs at once (default: one per core).
    #[arg(long)]
    pub parallel: Option<usize>,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    if device != Device::Cpu {
        return Err(m3ae::Error::Config("m3ae ablate starts its jobs on the CPU; pass --cuda through --set is not supported yet: drop --cuda".into()));
    }
    let parse = |v: &[String]| v.iter().map(|s| parse_override(s)).collect::<m3ae::Result<Vec<_>>>();
    for t in &args.tasks {
        if !FINETUNE_TASKS.contains(&t.as_str()) {
            return Err(m3ae::Error::Config(format!("--tasks: unknown task `{t}`; the tasks are {}", FINETUNE_TASKS.join(", "))));
        }
    }
    if args.seeds.is_empty() || args.variants.is_empty() {
        return Err(m3ae::Error::Config("--seeds and --variants need at least one value".into()));
    }
    let finetune = parse(&args.finetune_set)?;
    let spec = StudySpec {
        out: args.out.clone(),
        variants: args.variants.iter().map(|v| Variant::parse(v)).collect::<m3ae::Result<_>>()?,
        scratch_baseline: !args.no_baseline,
        seeds: args.seeds.clone(),
        tasks: args.tasks.clone(),
        config_file: args.config.clone(),
        common: parse(&args.set)?,
        pretrain: parse(&args.pretrain_set)?,
        finetune: args.tasks.iter().map(|t| (t.clone(), finetune.clone())).collect(),
        encoders: None,
        baselines: Default::default(),
    };
    let dataset = json!({"config": args.config, "set": args.set});
    let schedule = json!({"pretrain_set": args.pretrain_set, "finetune_set": args.finetune_set});
    super::demo::print_report(&run_study(&spec, args.parallel, dataset, schedule, Instant::now())?);
    Ok(true)
}
