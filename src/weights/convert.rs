//! Upstream checkpoint (or converted folder) → model weights, as upstream's
//! `M3AETransformerSS.__init__` loads them:
//! the positional embedding adapted to the target grid, the MIM decoder's sin-cos table
//! regenerated, keys the model does not have dropped (and reported), anything missing refused.
use std::path::{Path, PathBuf};

use tch::{Device, IndexOp, Tensor};

use crate::checkpoint::read_checkpoint;
use crate::config::keys::{build_config, read_json};
use crate::config::{from_weights, text, M3aeConfig};
use crate::error::{Error, Result};
use crate::model::heads::fresh_downstream_heads;
use crate::model::masking::sincos_2d;
use crate::model::M3aeTransformerSs;
use super::strict::{self, Fit, Tally};
use super::{read_safetensors, LoadReport, Shapes, StateDict};

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

/// Where a conversion's config comes from, besides the checkpoint itself.
#[derive(Debug, Clone, Default)]
pub struct ConfigOptions {
    /// `--config FILE`: upstream's config dict as JSON, the base config for any input (it
    /// replaces the checkpoint's own).
    pub config_file: Option<PathBuf>,
    /// `--set KEY=JSON`, applied last.
    pub overrides: Vec<(String, serde_json::Value)>,
    /// `--image-size`: the target grid the position table is adapted to.
    pub image_size: Option<i64>,
}

/// The config a checkpoint is loaded with: `--config` FILE, else the checkpoint's own, else
/// one read off its weights ([`from_weights::derive`], the defaults it kept logged); then
/// `--set` and the image size; the CLIP shape from the weights and the RoBERTa config from
/// where upstream reads it ([`text::resolve`]).
pub fn resolve_config(shapes: &Shapes, own: Option<serde_json::Value>, opts: &ConfigOptions, source: &Path) -> Result<M3aeConfig> {
    let mut unresolved = Vec::new();
    let (base, origin) = match (&opts.config_file, own) {
        (Some(file), own) => {
            if own.is_some() {
                log::info!("{}: its own config is replaced by {}", source.display(), file.display());
            }
            (read_json(file)?, file.display().to_string())
        }
        (None, Some(own)) => (own, format!("{} (its config)", source.display())),
        (None, None) => {
            let d = from_weights::derive(shapes, source)?;
            let read: Vec<String> = d.read.iter().map(|(k, v)| format!("{k}={v}")).collect();
            log::info!("{}: no config in the checkpoint; read from its weights: {}", source.display(), read.join(", "));
            log::info!("{}: upstream's defaults kept (not in the weights): {}", source.display(), d.defaults.join(", "));
            unresolved = d.unresolved;
            (d.config, format!("{} (config read from its weights)", source.display()))
        }
    };
    let mut config = build_config(Some(base), &origin, &opts.overrides, opts.image_size).map_err(|e| match e {
        // the weights could not settle a key, and --set did not either: say which
        Error::Config(msg) if !unresolved.is_empty() => Error::Config(format!("{msg}; {}: {}", source.display(), unresolved.join("; "))),
        e => e,
    })?;
    from_weights::vision_config(&mut config, shapes, source)?;
    let clip_patch = config.vision()?.patch_size;
    if clip_patch != config.patch_size {
        return Err(Error::Config(format!(
            "{}: `patch_size` is {} but the CLIP weights have patches of {clip_patch} (vision_encoder.visual.conv1.weight): set patch_size={clip_patch}",
            source.display(),
            config.patch_size
        )));
    }
    text::resolve(&mut config, Some(shapes), source)?;
    Ok(config)
}

/// Fits `sd` to the model `config` describes, as upstream's loading path does, and checks it
/// strictly against the model's keys, shapes and dtypes (learnt without initialising a model):
/// the position table adapted to the grid, the MIM decoder's table regenerated, float
/// tensors of another width cast, fine-tuning heads the checkpoint lacks started fresh (as
/// `strict=False` leaves them upstream), keys the model lacks dropped; all reported.
pub fn fit_to_model(config: &M3aeConfig, sd: StateDict, source: &Path) -> Result<(StateDict, LoadReport)> {
    fit_to_model_with(config, sd, source, false)
}

/// Every head an objective owns: what training from a checkpoint may start fresh.
const HEADS: &[&str] = &["mlm_head.", "mim_head.", "itm_head.", "vqa_head.", "cls_head.", "irtr_head."];

/// [`fit_to_model`]; with `missing_heads_ok` (training from `load_path`, where upstream loads
/// with `strict=False`), any head the checkpoint lacks is reported in `missing` and left out
/// of the result, for the caller to keep at its initialisation.
pub fn fit_to_model_with(config: &M3aeConfig, mut sd: StateDict, source: &Path, missing_heads_ok: bool) -> Result<(StateDict, LoadReport)> {
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
                return Err(strict::shape_error(source, DECODER_POS_KEY, &[1, grid * grid + 1, dim], &table.size()));
            }
            sd.insert(DECODER_POS_KEY.into(), sincos_2d(dim, grid, Device::Cpu).f_unsqueeze(0)?.f_to_kind(table.kind())?); // [1, 1+g², D]
            report.regenerated.push(DECODER_POS_KEY.into());
        }
    }
    let spec = M3aeTransformerSs::spec(config)?;
    let absent_heads = spec.keys().any(|k| !sd.contains_key(k) && DOWNSTREAM_HEADS.iter().any(|h| k.starts_with(h)));
    if absent_heads {
        for (name, init) in fresh_downstream_heads(config) {
            if sd.contains_key(&name) {
                continue;
            }
            // irtr_head.weight = itm_head.fc.weight[1:] (and the bias), as upstream copies it
            let from_itm = name.strip_prefix("irtr_head.").and_then(|p| sd.get(&format!("itm_head.fc.{p}")));
            let t = match from_itm {
                Some(itm) => itm.f_narrow(0, 1, 1)?.f_to_kind(init.kind())?,
                None => init,
            };
            report.missing.push(name.clone());
            sd.insert(name, t);
        }
    }
    let mut tally = Tally::default();
    let mut out = StateDict::new();
    for (name, want) in &spec {
        let Some(t) = sd.remove(name) else {
            if missing_heads_ok && HEADS.iter().any(|h| name.starts_with(h)) {
                report.missing.push(name.clone());
            } else {
                tally.missing(name);
            }
            continue;
        };
        let fit = strict::check(name, want, &t.size(), t.kind(), source)?;
        tally.filled(name, fit);
        out.insert(name.clone(), if fit == Fit::Cast { t.f_to_kind(want.kind)? } else { t });
    }
    let fitted = tally.finish(out.keys().chain(sd.keys()), |k| spec.contains_key(k), source)?;
    report.unexpected = fitted.unexpected;
    report.cast = fitted.cast;
    report.missing.sort();
    Ok((out, report))
}

/// Loads model weights from a converted folder (`model.safetensors` + `config.json`) or a
/// checkpoint file (`.ckpt`, a state dict, a `{"state_dict"|"model": …}` wrapper), with the
/// config [`resolve_config`] gives, adapted to the target grid.
pub fn load_model_source(path: &Path, opts: &ConfigOptions) -> Result<ModelWeights> {
    let (sd, own) = if path.is_dir() {
        (read_safetensors(&path.join("model.safetensors"))?, Some(read_json(&path.join("config.json"))?))
    } else {
        read_checkpoint(path)?
    };
    let shapes: Shapes = sd.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    let config = resolve_config(&shapes, own, opts, path)?;
    let (state_dict, report) = fit_to_model(&config, sd, path)?;
    Ok(ModelWeights { config, state_dict, report })
}

/// Converts any source [`load_model_source`] accepts into `out_dir`: `model.safetensors`,
/// `config.json` (the resolved config, encoder configs included) and `load_report.json`.
pub fn convert(input: &Path, out_dir: &Path, opts: &ConfigOptions) -> Result<ModelWeights> {
    let weights = load_model_source(input, opts)?;
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
