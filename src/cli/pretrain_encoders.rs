//! `m3ae pretrain-encoders --out DIR [--config FILE] [--set KEY=JSON]… [--epochs N] …`: stage 0,
//! CLIP-style contrastive pre-training of the vision and text encoders on image–caption pairs,
//! saved where `vit` and `tokenizer` load them (for users with no CLIP or RoBERTa download).
use std::io::Write;
use std::path::PathBuf;

use m3ae::config::keys::{parse_override, write_json};
use m3ae::train::contrastive::{self, ContrastiveOptions, Pairs, Towers};
use m3ae::train::setup::{resolve, Pipeline};
use m3ae::train::task::Task;
use m3ae::weights::encoders;
use m3ae::Error;
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder: `clip.pt` (set `vit` to it), `roberta/` (set `tokenizer` to it), `log.jsonl`, `config.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Upstream's config dict as JSON over the pre-training preset: `data_root`, `datasets` (the
    /// caption sets, e.g. `["roco"]`), `tokenizer` (a folder with config.json), the encoder shapes, `seed`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Config override `key=JSON`; repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=JSON", num_args = 1..)]
    pub set: Vec<String>,
    /// Passes over the training pairs.
    #[arg(long, default_value_t = ContrastiveOptions::default().epochs)]
    pub epochs: usize,
    /// Pairs per step (each caption is told apart from the batch's others).
    #[arg(long, default_value_t = ContrastiveOptions::default().batch)]
    pub batch: usize,
    /// AdamW learning rate (constant).
    #[arg(long, default_value_t = ContrastiveOptions::default().lr)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = ContrastiveOptions::default().weight_decay)]
    pub weight_decay: f64,
    /// Width of the shared embedding space.
    #[arg(long, default_value_t = ContrastiveOptions::default().proj_dim)]
    pub proj_dim: i64,
}

pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    if device != Device::Cpu {
        return Err(Error::Config("pretrain-encoders runs on the CPU; drop --cuda".into()));
    }
    let opts = ContrastiveOptions { epochs: args.epochs, batch: args.batch, lr: args.lr, weight_decay: args.weight_decay, proj_dim: args.proj_dim, ..Default::default() };
    opts.check()?;
    // the loader's batch is set when the pairs are cached; any value passes the config check
    let mut overrides = vec![("per_gpu_batchsize".to_string(), serde_json::json!(args.batch))];
    overrides.extend(args.set.iter().map(|s| parse_override(s)).collect::<m3ae::Result<Vec<_>>>()?);
    let resolved = resolve(&Task::pretrain(), args.config.as_deref(), &overrides)?;
    let config = resolved.config;
    let towers = Towers::new(&config, &opts)?;
    if let Some(enc) = &resolved.encoders {
        let n = encoders::load(&towers.vs, enc)?;
        println!("starting from {n} encoder tensors of {}", enc.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "));
    }
    let pipe = Pipeline::new(&config)?;
    let (train, val) = (Pairs::load(&pipe, "train")?, Pairs::load(&pipe, "val")?);
    towers.check(&train, "training")?;
    towers.check(&val, "validation")?;
    println!("pretrain-encoders: {} training pairs, {} validation pairs, {} epochs of batch {}", train.len(), val.len(), opts.epochs, opts.batch);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    write_json(&args.out.join("config.json"), &serde_json::json!({"config": &config, "recipe": opts}))?;
    let log_path = args.out.join("log.jsonl");
    let mut log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let start = contrastive::evaluate(&towers, &val, opts.batch);
    println!("epoch 0: val loss {:.4}, in-batch top-1 {:.3} (chance {:.3}), R@1 {:.4} of {}", start.loss, start.inbatch_acc, start.inbatch_chance, start.r1, start.n);
    let mut write_err = None;
    contrastive::train(&towers, &train, &val, &opts, |e| {
        println!(
            "epoch {}: train loss {:.4} top-1 {:.3}; val loss {:.4} top-1 {:.3} R@1 {:.4}; temperature {:.4}",
            e.epoch, e.train_loss, e.train_inbatch_acc, e.val.loss, e.val.inbatch_acc, e.val.r1, e.temperature
        );
        if let Err(err) = serde_json::to_string(e).map_err(|x| x.to_string()).and_then(|s| writeln!(log, "{s}").map_err(|x| x.to_string())) {
            write_err.get_or_insert(err);
        }
    })?;
    if let Some(e) = write_err {
        return Err(Error::Config(format!("{}: {e}", log_path.display())));
    }
    let saved = towers.save(&args.out, std::path::Path::new(&config.tokenizer))?;
    println!("wrote {} (set `vit` to it) and {} (set `tokenizer` to it)", saved.clip.display(), saved.roberta.display());
    Ok(true)
}
