//! `m3ae convert`
use std::path::PathBuf;

use m3ae::weights::convert::{convert, write_model_dir, ConfigOptions, ModelWeights};
use m3ae::weights::fresh::init_model;
use m3ae::config::keys::{build_config, parse_override, read_json};
use m3ae::Error;
use tch::Device;

#[derive(clap::Args)]
pub struct Args {
    /// `IN OUT_DIR`: IN is a Lightning .ckpt, a state dict, a {"state_dict"|"model": …} wrapper or a model folder.
    /// With OUT_DIR alone, a fresh model is initialised (from --clip / --roberta where given), as upstream does
    /// when `load_path` is empty.
    #[arg(value_names = ["IN", "OUT_DIR"], num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,
    /// Target image size; the positional embedding is adapted to its grid.
    #[arg(long)]
    image_size: Option<i64>,
    /// Config override `key=JSON` (e.g. `mim_layer=3`, `loss_names.vqa=1`); repeatable. Unknown keys are refused.
    #[arg(long = "set", value_name = "KEY=JSON", num_args = 1..)]
    set: Vec<String>,
    /// Base config (upstream's config dict as JSON) for any input: it replaces a checkpoint's own
    /// config, and states what a bare state dict lacks. Keys it leaves out take upstream's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// OpenAI CLIP weights (TorchScript `ViT-*.pt` or a state dict) for a fresh model's vision encoder.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Hugging Face RoBERTa folder (config.json + pytorch_model.bin or model.safetensors) for its language encoder.
    #[arg(long)]
    roberta: Option<PathBuf>,
    /// Replace the files of an existing model folder at OUT_DIR (without it, one is refused).
    #[arg(long)]
    force: bool,
}

/// The files `convert` writes into OUT_DIR.
const OUTPUTS: [&str; 3] = ["model.safetensors", "config.json", "load_report.json"];

pub fn run(args: &Args, _device: Device) -> m3ae::Result<bool> {
    let overrides = args.set.iter().map(|s| parse_override(s)).collect::<m3ae::Result<Vec<_>>>()?;
    if let Some(out_dir) = args.paths.last().filter(|_| !args.force) {
        if let Some(f) = OUTPUTS.iter().map(|f| out_dir.join(f)).find(|p| p.exists()) {
            return Err(Error::Config(format!("{} already exists: give --force to overwrite the model folder {}", f.display(), out_dir.display())));
        }
    }
    let (weights, out_dir) = match args.paths.as_slice() {
        [input, out_dir] => {
            if args.clip.is_some() || args.roberta.is_some() {
                return Err(Error::Config("--clip and --roberta initialise a fresh model: give OUT_DIR only".into()));
            }
            let opts = ConfigOptions { config_file: args.config.clone(), overrides, image_size: args.image_size };
            (convert(input, out_dir, &opts)?, out_dir)
        }
        [out_dir] => {
            let (base, origin) = match &args.config {
                Some(p) => (Some(read_json(p)?), p.display().to_string()),
                None => (None, "upstream's defaults".to_string()),
            };
            let mut config = build_config(base, &origin, &overrides, args.image_size)?;
            let (state_dict, report) = init_model(&mut config, args.clip.as_deref(), args.roberta.as_deref())?;
            let weights = ModelWeights { config, state_dict, report };
            write_model_dir(out_dir, &weights)?;
            (weights, out_dir)
        }
        _ => return Err(Error::Config("expected `IN OUT_DIR` or `OUT_DIR`".into())),
    };
    let r = &weights.report;
    println!(
        "wrote {} ({} tensors): {} missing, {} unexpected, adapted {:?}, regenerated {:?}, {} cast to float32{}",
        out_dir.display(),
        weights.state_dict.len(),
        r.missing.len(),
        r.unexpected.len(),
        r.adapted,
        r.regenerated,
        r.cast.len(),
        if r.cast.is_empty() { String::new() } else { format!(" ({})", r.cast.join(", ")) }
    );
    Ok(true)
}
