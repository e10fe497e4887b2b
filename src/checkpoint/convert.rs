//! Upstream checkpoint → model weights, as upstream's `M3AETransformerSS.__init__` loads them:
//! the positional embedding adapted to the target grid, the MIM decoder's sin-cos table
//! regenerated, keys the model does not have dropped (and reported), anything missing refused.
use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, IndexOp, Tensor};

use super::torch_file::TorchFile;
use super::value::Value;
use crate::config::M3aeConfig;
use crate::error::{Error, Result};
use crate::model::masking::sincos_2d;
use crate::model::M3aeTransformerSs;
use crate::weights::{encoder_configs_from_state_dict, LoadReport, StateDict};

/// The CLIP patch-position table upstream's `adapt_position_encoding` resizes.
pub const POS_EMBED_KEY: &str = "vision_encoder.visual.positional_embedding";
/// The MIM decoder's fixed sin-cos table, rebuilt for the target grid.
pub const DECODER_POS_KEY: &str = "mim_head.decoder_pos_embed";
/// Fine-tuning heads: when a checkpoint lacks them they start fresh (upstream builds them after
/// loading a pre-training checkpoint) and are reported as missing.
const DOWNSTREAM_HEADS: &[&str] = &["vqa_head.", "cls_head.", "irtr_head."];

/// A model ready to load: its config, its weights keyed as the model names them, and what
/// loading changed.
pub struct ModelWeights {
    pub config: M3aeConfig,
    pub state_dict: StateDict,
    pub report: LoadReport,
}

/// The state dict and (when present) the `hyper_parameters.config` of a checkpoint file: a
/// Lightning checkpoint, a `{"state_dict"|"model": …}` wrapper, or a bare state dict.
pub fn read_checkpoint(path: &Path) -> Result<(StateDict, Option<serde_json::Value>)> {
    let file = TorchFile::open(path)?;
    let root = &file.root;
    for key in ["state_dict", "model"] {
        if let Some(sd) = root.get(key) {
            let config = match root.get("hyper_parameters").and_then(|h| h.get("config")) {
                Some(c) => Some(c.to_json().ok_or_else(|| file.error("`hyper_parameters.config` is not plain data".into()))?),
                None => None,
            };
            return Ok((file.read_tensors(sd, key)?, config));
        }
    }
    match root.dict_items() {
        Some(items) if !items.is_empty() && items.iter().all(|(_, v)| matches!(v, Value::Tensor(_))) => Ok((file.read_tensors(root, "state dict")?, None)),
        Some(items) => {
            let keys: Vec<String> = items.iter().take(8).map(|(k, _)| k.to_json().map_or_else(|| k.kind_name(), |j| j.to_string())).collect();
            Err(file.error(format!("no `state_dict` (nor `model`) entry and not a bare state dict; top-level keys: [{}]", keys.join(", "))))
        }
        None => Err(file.error(format!("the pickled object is a {}, not a checkpoint dict", root.kind_name()))),
    }
}

/// The config `base` (a checkpoint's or a folder's) with `key=value` overrides (dotted keys
/// reach into nested objects) and the image size applied; defaults where `base` is `None`.
pub fn build_config(base: Option<serde_json::Value>, overrides: &[(String, serde_json::Value)], image_size: Option<i64>) -> Result<M3aeConfig> {
    let mut json = match base {
        Some(j) => j,
        None => serde_json::to_value(M3aeConfig::default()).map_err(|e| Error::Config(e.to_string()))?,
    };
    let image = image_size.map(|s| ("image_size".to_string(), serde_json::Value::from(s)));
    for (key, value) in overrides.iter().cloned().chain(image) {
        let mut slot = &mut json;
        for part in key.split('.') {
            let obj = slot.as_object_mut().ok_or_else(|| Error::Config(format!("override `{key}`: `{part}` is not inside an object")))?;
            slot = obj.entry(part).or_insert(serde_json::Value::Null);
        }
        *slot = value;
    }
    let config: M3aeConfig = serde_json::from_value(json).map_err(|e| Error::Config(format!("checkpoint config: {e}")))?;
    config.validate()?;
    Ok(config)
}

/// `adapt_position_encoding`: resizes the patch rows of a [1+g0², W] (or [1, 1+g0², W]) table
/// to `grid`×`grid` by bicubic interpolation (align_corners false), keeping the class row.
/// `None` when the grid already matches.
pub fn adapt_position_embedding(pos: &Tensor, grid: i64, source: &Path) -> Result<Option<Tensor>> {
    let batched = pos.dim() == 3;
    let p = if batched { pos.shallow_clone() } else { pos.f_unsqueeze(0)? }; // [1, 1+g0², W]
    let size = p.size();
    let bad = |why: String| Error::Checkpoint { path: source.into(), reason: format!("`{POS_EMBED_KEY}` {:?}: {why}", pos.size()) };
    let [1, n, w] = size[..] else { return Err(bad("expected [1+g², W] or [1, 1+g², W]".into())) };
    let g0 = (((n - 1).max(0) as f64).sqrt().round()) as i64;
    if g0 * g0 != n - 1 || g0 == 0 {
        return Err(bad(format!("{} patch rows do not form a square grid", n - 1)));
    }
    if g0 == grid {
        return Ok(None);
    }
    let patches = p.i((0, 1.., ..)).f_reshape([g0, g0, w])?.f_permute([2, 0, 1])?.f_unsqueeze(0)?; // [1, W, g0, g0]
    let resized = patches.f_upsample_bicubic2d([grid, grid], false, None, None)?; // [1, W, g, g]
    let rows = resized.f_squeeze_dim(0)?.f_permute([1, 2, 0])?.f_reshape([grid * grid, w])?; // [g², W]
    let out = Tensor::f_cat(&[p.i((0, 0..1, ..)), rows], 0)?; // [1+g², W]
    Ok(Some(if batched { out.f_unsqueeze(0)? } else { out }))
}

/// Every variable of the model `config` builds: name → (shape, kind, initial value on the CPU).
fn model_variables(config: &M3aeConfig) -> Result<BTreeMap<String, Tensor>> {
    let vs = nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), config)?;
    Ok(vs.variables().into_iter().map(|(k, v)| (k, v.detach())).collect())
}

/// Fits `sd` to the model `config` describes, as upstream's loading path does, and checks it:
/// every model key present (fine-tuning heads aside) with its shape and dtype, else an error
/// naming the key. Keys the model lacks are dropped and reported as unexpected.
pub fn fit_to_model(config: &mut M3aeConfig, mut sd: StateDict, source: &Path) -> Result<(StateDict, LoadReport)> {
    if encoder_configs_from_state_dict(config, &sd, source).is_err() {
        // not this model's weights: build the configured encoders and report what is missing
        config.vision_encoder_config = Some(config.vision()?);
        config.language_encoder_config = Some(config.text());
    }
    let mut report = LoadReport::default();
    let grid = config.grid();
    if let Some(pos) = sd.get(POS_EMBED_KEY) {
        if let Some(adapted) = adapt_position_embedding(pos, grid, source)? {
            sd.insert(POS_EMBED_KEY.into(), adapted);
            report.adapted.push(POS_EMBED_KEY.into());
        }
    }
    if let Some(table) = sd.get(DECODER_POS_KEY) {
        let dim = *table.size().last().unwrap_or(&0);
        if table.size() != [1, grid * grid + 1, dim] {
            if dim <= 0 || dim % 4 != 0 {
                return Err(Error::ShapeMismatch { path: source.into(), key: DECODER_POS_KEY.into(), expected: vec![1, grid * grid + 1, dim], found: table.size() });
            }
            sd.insert(DECODER_POS_KEY.into(), sincos_2d(dim, grid, Device::Cpu).f_unsqueeze(0)?.f_to_kind(table.kind())?); // [1, 1+g², D]
            report.regenerated.push(DECODER_POS_KEY.into());
        }
    }
    let model = model_variables(config)?;
    report.unexpected = sd.keys().filter(|k| !model.contains_key(*k)).cloned().collect();
    for k in &report.unexpected {
        sd.remove(k);
    }
    let mut fresh = Vec::new();
    for (name, init) in &model {
        if !sd.contains_key(name) && DOWNSTREAM_HEADS.iter().any(|h| name.starts_with(h)) {
            // a fine-tuning head the checkpoint lacks starts fresh, as upstream builds it:
            // irtr_head from itm_head.fc's second row, the others from their init
            let from_itm = name.strip_prefix("irtr_head.").and_then(|p| sd.get(&format!("itm_head.fc.{p}")));
            fresh.push((name.clone(), from_itm.map_or_else(|| init.shallow_clone(), |t| t.narrow(0, 1, 1))));
        }
    }
    report.missing = fresh.iter().map(|(k, _)| k.clone()).collect();
    sd.extend(fresh);
    let absent: Vec<String> = model.keys().filter(|k| !sd.contains_key(*k)).cloned().collect();
    if !absent.is_empty() {
        return Err(Error::MissingKeys { path: source.into(), count: absent.len(), first: absent.into_iter().take(5).collect() });
    }
    for (name, init) in &model {
        let t = &sd[name];
        if t.size() != init.size() {
            return Err(Error::ShapeMismatch { path: source.into(), key: name.clone(), expected: init.size(), found: t.size() });
        }
        if t.kind() != init.kind() {
            return Err(Error::DtypeMismatch { path: source.into(), key: name.clone(), expected: format!("{:?}", init.kind()), found: format!("{:?}", t.kind()) });
        }
    }
    Ok((sd, report))
}

/// Loads model weights from a converted folder (`model.safetensors` + `config.json`) or a
/// checkpoint file (`.ckpt`, a state dict, a `{"state_dict"|"model": …}` wrapper), with the
/// config overridden by `overrides` and `image_size`, adapted to the target grid.
pub fn load_model_source(path: &Path, overrides: &[(String, serde_json::Value)], image_size: Option<i64>) -> Result<ModelWeights> {
    let (sd, base) = if path.is_dir() {
        let cfg_path = path.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let json = serde_json::from_str(&text).map_err(|source| Error::Json { path: cfg_path, source })?;
        (crate::weights::read_safetensors(&path.join("model.safetensors"))?, Some(json))
    } else {
        read_checkpoint(path)?
    };
    let mut config = build_config(base, overrides, image_size)?;
    let (state_dict, report) = fit_to_model(&mut config, sd, path)?;
    Ok(ModelWeights { config, state_dict, report })
}

/// Converts any source [`load_model_source`] accepts into `out_dir`: `model.safetensors`,
/// `config.json` and `load_report.json`.
pub fn convert(input: &Path, out_dir: &Path, overrides: &[(String, serde_json::Value)], image_size: Option<i64>) -> Result<ModelWeights> {
    let weights = load_model_source(input, overrides, image_size)?;
    write_model_dir(out_dir, &weights)?;
    Ok(weights)
}

/// Writes a model folder: weights, config and load report.
pub fn write_model_dir(out_dir: &Path, w: &ModelWeights) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    crate::weights::write_safetensors(&out_dir.join("model.safetensors"), w.state_dict.iter().map(|(k, v)| (k.as_str(), v)))?;
    let json = |path: &Path, v: serde_json::Result<String>| -> Result<()> {
        let text = v.map_err(|source| Error::Json { path: path.into(), source })?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    };
    json(&out_dir.join("config.json"), serde_json::to_string_pretty(&w.config))?;
    json(&out_dir.join("load_report.json"), serde_json::to_string_pretty(&w.report))
}

/// `key=value` with a JSON value (a bare word that is not JSON is taken as a string).
pub fn parse_override(s: &str) -> Result<(String, serde_json::Value)> {
    let (k, v) = s.split_once('=').ok_or_else(|| Error::Config(format!("override `{s}` is not key=value")))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.trim().to_string(), value))
}
