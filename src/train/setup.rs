//! What a run is built from: the config, layered as upstream stacks named configs; the model,
//! fresh or from `load_path`; and the data of each split.
//!
//! Config layering, lowest first: upstream's defaults; the task's preset ([`Task::preset`]);
//! the architecture of `load_path` (its config's model-shape keys); `--config FILE`; `--set`.
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tch::{nn, Device};

use super::task::{Task, TaskKind};
use crate::checkpoint::read_checkpoint;
use crate::config::keys::{build_config, check, read_json};
use crate::config::{from_weights, text, M3aeConfig};
use crate::data::collate::Collator;
use crate::data::dataset::{Dataset, DatasetList, DatasetKind};
use crate::data::loader::{LoaderConfig, Unreadable};
use crate::data::mlm::{MaskingMode, MlmMasker};
use crate::data::tokenizer::TextTokenizer;
use crate::data::transforms::{Transform, TransformKind};
use crate::error::{Error, Result};
use crate::model::M3aeTransformerSs;
use crate::weights::convert::fit_to_model_with;
use crate::weights::encoders::{self, Encoders};
use crate::weights::{load_state_dict, read_safetensors, LoadReport, Shapes, StateDict};

/// The model-shape keys a `load_path`'s config gives (they override the preset's).
pub const ARCH_KEYS: &[&str] = &[
    "vision_encoder_config",
    "language_encoder_config",
    "input_text_embed_size",
    "input_image_embed_size",
    "hidden_size",
    "num_heads",
    "num_top_layer",
    "mlp_ratio",
    "patch_size",
    "mim_decoder_hidden_size",
    "mim_decoder_num_layers",
    "mim_decoder_num_heads",
    "vocab_size",
];

/// Downstream heads: rebuilt fresh when fine-tuning (upstream builds them after loading).
const DOWNSTREAM_HEADS: &[&str] = &["vqa_head.", "cls_head.", "irtr_head."];

/// A checkpoint's weights and its own config, from a model folder (`model.safetensors` +
/// `config.json`, as `convert` and the trainer write them) or a `.ckpt` / state dict.
pub struct Source {
    pub weights: StateDict,
    pub config: Option<Value>,
}

pub fn read_source(path: &Path) -> Result<Source> {
    if path.is_dir() {
        let cfg = path.join("config.json");
        Ok(Source { weights: read_safetensors(&path.join("model.safetensors"))?, config: if cfg.is_file() { Some(read_json(&cfg)?) } else { None } })
    } else if path.is_file() {
        let (weights, config) = read_checkpoint(path)?;
        Ok(Source { weights, config })
    } else {
        Err(Error::Config(format!("`load_path` {}: no such file or folder", path.display())))
    }
}

fn shapes_of(sd: &StateDict) -> Shapes {
    sd.iter().map(|(k, v)| (k.clone(), v.size())).collect()
}

/// The resolved config of a new run, and the `load_path` weights it starts from (or, with
/// `load_path` empty, the pre-trained encoders `vit` and `tokenizer` name).
pub struct Resolved {
    pub config: M3aeConfig,
    pub source: Option<Source>,
    pub encoders: Option<Encoders>,
}

/// Layers the config for `task` and resolves its encoders (CLIP shape from `load_path`'s
/// weights, else from the CLIP file `vit` names or its preset; RoBERTa config by
/// [`text::resolve`]). A fresh model's encoders are read here ([`encoders::from_config`]).
pub fn resolve(task: &Task, config_file: Option<&Path>, overrides: &[(String, Value)]) -> Result<Resolved> {
    let mut json = task.preset();
    let layer = |json: &mut Value, over: &Value, keys: Option<&[&str]>| {
        for (k, v) in over.as_object().into_iter().flatten() {
            if keys.is_none_or(|ks| ks.contains(&k.as_str())) {
                json[k.as_str()] = v.clone();
            }
        }
    };
    let file = config_file.map(read_json).transpose()?;
    if let (Some(f), Some(path)) = (&file, config_file) {
        check(f, &path.display().to_string())?;
    }
    // load_path may come from --config or --set
    let mut probe = json.clone();
    if let Some(f) = &file {
        layer(&mut probe, f, None);
    }
    for (k, v) in overrides {
        if k == "load_path" {
            probe["load_path"] = v.clone();
        }
    }
    let load_path = probe.get("load_path").and_then(Value::as_str).unwrap_or("").to_string();
    let source = if load_path.is_empty() { None } else { Some(read_source(Path::new(&load_path))?) };
    if let Some(src) = &source {
        let arch = match &src.config {
            Some(c) => c.clone(),
            None => from_weights::derive(&shapes_of(&src.weights), Path::new(&load_path))?.config,
        };
        layer(&mut json, &arch, Some(ARCH_KEYS));
    }
    if let Some(f) = &file {
        layer(&mut json, f, None);
    }
    let mut config = build_config(Some(json), &format!("the `{}` preset", task.name), overrides, None)?;
    let encoders = match &source {
        Some(src) => {
            let shapes = shapes_of(&src.weights);
            from_weights::vision_config(&mut config, &shapes, Path::new(&load_path))?;
            text::resolve(&mut config, Some(&shapes), Path::new(&load_path))?;
            None
        }
        None => encoders::from_config(&mut config)?,
    };
    check_runnable(&config, task)?;
    Ok(Resolved { config, source, encoders })
}

/// Refuses configs a run cannot work with, naming the key.
pub fn check_runnable(c: &M3aeConfig, task: &Task) -> Result<()> {
    let bad = |key: &str, why: String| Err(Error::Config(format!("`{key}`: {why}")));
    if c.per_gpu_batchsize == 0 {
        return bad("per_gpu_batchsize", "must be set (upstream's default 0 is a placeholder)".into());
    }
    let l = c.loss_names;
    let on = match task.kind {
        TaskKind::Pretrain => l.mlm > 0.0 || l.mim > 0.0 || l.itm > 0.0,
        TaskKind::Vqa => l.vqa > 0.0,
        TaskKind::Cls => l.cls > 0.0,
        TaskKind::Irtr => l.irtr > 0.0,
    };
    if !on {
        return bad("loss_names", format!("the `{}` task's objectives are all 0", task.name));
    }
    if task.kind == TaskKind::Pretrain && l.itm > 0.0 && c.draw_false_image == 0 {
        return bad("draw_false_image", "ITM needs one false image per sample".into());
    }
    if task.kind == TaskKind::Irtr && c.draw_false_text == 0 {
        return bad("draw_false_text", "IRTR training needs false texts".into());
    }
    if c.max_steps.is_none() && c.max_epoch == 0 {
        return bad("max_epoch", "0 with max_steps unset: nothing to train".into());
    }
    Ok(())
}

/// A model on `device`, and what its load did.
pub struct Built {
    pub vs: nn::VarStore,
    pub model: M3aeTransformerSs,
    pub report: LoadReport,
}

/// Builds the model `config` describes: from `source` (fitted as upstream loads it, the
/// downstream heads fresh unless `keep_heads`, as `test_only` keeps them), or freshly
/// initialised with the config's seed.
pub fn build_model(config: &M3aeConfig, source: Option<(Source, &Path)>, keep_heads: bool, device: Device) -> Result<Built> {
    tch::manual_seed(config.seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = M3aeTransformerSs::new(&vs.root(), config)?;
    let mut report = LoadReport::default();
    if let Some((src, path)) = source {
        let mut sd = src.weights;
        if !keep_heads {
            sd.retain(|k, _| !DOWNSTREAM_HEADS.iter().any(|h| k.starts_with(h)));
        }
        let (mut sd, fitted) = fit_to_model_with(config, sd, path, true)?;
        // heads the checkpoint lacks keep the initialisation just drawn
        let vars = vs.variables();
        for k in &fitted.missing {
            if let Some(v) = vars.get(k) {
                sd.entry(k.clone()).or_insert_with(|| v.detach().copy());
            }
        }
        load_state_dict(&vs, &sd, path)?;
        report = fitted;
        if !report.missing.is_empty() {
            log::info!("{}: heads the checkpoint lacks start fresh: {}", path.display(), report.missing.join(", "));
        }
    }
    vs.set_device(device);
    Ok(Built { vs, model, report })
}

/// A checkpoint (model folder or `.ckpt`) loaded whole, as `m3ae test` and inference load
/// it: its own config (else `fallback_config`'s), then `overrides`; the encoders' configs
/// from its weights; every head it holds kept.
pub fn load_for_eval(path: &Path, fallback_config: Option<&Path>, overrides: &[(String, Value)], device: Device) -> Result<(M3aeConfig, Built)> {
    let src = read_source(path)?;
    let base = match (&src.config, fallback_config) {
        (Some(c), _) => c.clone(),
        (None, Some(file)) => read_json(file)?,
        (None, None) => return Err(Error::Checkpoint { path: path.into(), reason: "no config.json beside the weights".into() }),
    };
    let mut config = build_config(Some(base), &path.display().to_string(), overrides, None)?;
    let shapes = shapes_of(&src.weights);
    from_weights::vision_config(&mut config, &shapes, path)?;
    text::resolve(&mut config, Some(&shapes), path)?;
    let built = build_model(&config, Some((src, path)), true, device)?;
    Ok((config, built))
}

/// The input pipeline of one split.
pub struct SplitData {
    pub data: Arc<DatasetList>,
    pub transforms: Vec<Transform>,
    pub loader: LoaderConfig,
}

/// Everything the loaders share.
pub struct Pipeline {
    pub tokenizer: Arc<TextTokenizer>,
    pub config: M3aeConfig,
}

impl Pipeline {
    pub fn new(config: &M3aeConfig) -> Result<Pipeline> {
        let path = Path::new(&config.tokenizer);
        if !path.exists() {
            return Err(Error::Config(format!(
                "`tokenizer` `{}` is not a folder holding tokenizer.json (or vocab.json + merges.txt): download it (e.g. roberta-base from Hugging Face) and --set tokenizer=PATH",
                config.tokenizer
            )));
        }
        let tokenizer = TextTokenizer::load(path, config.max_text_len as usize)?;
        Ok(Pipeline { tokenizer: Arc::new(tokenizer), config: config.clone() })
    }

    pub fn collator(&self) -> Collator {
        let tok = &self.tokenizer;
        let masker = MlmMasker { probability: self.config.mlm_prob, mode: MaskingMode::for_config(self.config.whole_word_masking), mask_id: tok.mask_id(), vocab_size: tok.vocab_size() as i64 };
        Collator { masker, vqa_label_size: self.config.vqa_label_size.max(0) as usize }
    }

    /// The datasets of `split` (`train`, `val`, `test`), checked against the label sizes.
    pub fn split(&self, split: &str, training: bool) -> Result<SplitData> {
        let c = &self.config;
        let mut sets = Vec::new();
        for path in Task::split_files(c, split)? {
            let ds = Dataset::open(&path, &c.label_column_name)?;
            match ds.kind {
                DatasetKind::Vqa => ds.check_labels(c.vqa_label_size, "vqa_label_size")?,
                DatasetKind::Cls => ds.check_labels(c.cls_label_size(), &format!("melinda_label_size.{}", c.label_column_name))?,
                _ => {}
            }
            sets.push(ds);
        }
        let keys = if training { &c.train_transform_keys } else { &c.val_transform_keys };
        let transforms = keys
            .iter()
            .map(|k| {
                let kind = TransformKind::parse(k)?;
                Ok(Transform { kind: if training { kind } else { kind.for_split("val") }, size: c.image_size as u32 })
            })
            .collect::<Result<Vec<_>>>()?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // 0: the batches are built in the training thread, as torch's DataLoader does
        let workers = c.num_workers.min(cores);
        if training && workers != c.num_workers {
            // the data does not depend on it: every random draw is keyed by sample
            log::info!("num_workers {}: loading in {workers} background thread(s) ({cores} cores)", c.num_workers);
        }
        let loader = LoaderConfig {
            batch_size: c.per_gpu_batchsize,
            shuffle: training,
            seed: c.seed,
            workers,
            prefetch: 2 * workers.max(1),
            draw_false_image: c.draw_false_image,
            draw_false_text: c.draw_false_text,
            drop_last: false,
            unreadable: match (c.strict_images, training) {
                (true, _) => Unreadable::Fail,
                (false, true) => Unreadable::Replace,
                (false, false) => Unreadable::Skip,
            },
        };
        Ok(SplitData { data: Arc::new(DatasetList::new(sets)), transforms, loader })
    }
}
