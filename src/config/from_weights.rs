//! What a checkpoint's tensor shapes say about its config: the CLIP shape (as
//! `clip_model.build_model` reads it), and, for a checkpoint that carries no config, every
//! shape key the weights hold. Keys the weights do not hold keep upstream's defaults only where
//! the weights cannot contradict them, and are listed.
use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use super::{M3aeConfig, VisionEncoderConfig};
use crate::error::{Error, Result};

/// Tensor name -> shape: what a config is read from when a checkpoint does not state it.
pub type Shapes = std::collections::BTreeMap<String, Vec<i64>>;

fn need<'a>(shapes: &'a Shapes, key: &str, source: &Path) -> Result<&'a [i64]> {
    shapes.get(key).map(Vec::as_slice).ok_or_else(|| Error::MissingTensor { path: source.into(), key: key.into() })
}

/// `dim` of `key`'s shape, or an error naming the key.
fn dim(shapes: &Shapes, key: &str, dim: usize, source: &Path) -> Result<i64> {
    let shape = need(shapes, key, source)?;
    shape.get(dim).copied().ok_or_else(|| Error::Checkpoint { path: source.into(), reason: format!("tensor `{key}` has shape {shape:?}, too few dimensions") })
}

/// How many distinct `{prefix}{i}.` indices the keys hold.
fn count_indexed(shapes: &Shapes, prefix: &str) -> usize {
    shapes.keys().filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).collect::<BTreeSet<_>>().len()
}

/// Fills `vision_encoder_config` from the CLIP weights when the config does not state it:
/// width, blocks (+1: upstream builds `layers − 1`), patch, and the unused text tower's sizes.
pub fn vision_config(config: &mut M3aeConfig, shapes: &Shapes, source: &Path) -> Result<()> {
    if config.vision_encoder_config.is_some() {
        return Ok(());
    }
    let conv = "vision_encoder.visual.conv1.weight";
    config.vision_encoder_config = Some(VisionEncoderConfig {
        width: dim(shapes, conv, 0, source)?,
        layers: count_indexed(shapes, "vision_encoder.visual.transformer.resblocks.") + 1,
        patch_size: dim(shapes, conv, 3, source)?,
        context_length: dim(shapes, "vision_encoder.positional_embedding", 0, source)?,
        vocab_size: dim(shapes, "vision_encoder.token_embedding.weight", 0, source)?,
        transformer_width: dim(shapes, "vision_encoder.ln_final.weight", 0, source)?,
    });
    Ok(())
}

/// The text encoder's (width, layers), when the weights hold one.
pub fn text_shape(shapes: &Shapes) -> Option<(i64, usize)> {
    let width = *shapes.get("language_encoder.embeddings.word_embeddings.weight")?.get(1)?;
    Some((width, count_indexed(shapes, "language_encoder.encoder.layer.")))
}

/// A config read off a checkpoint's weights.
#[derive(Debug, Clone)]
pub struct DerivedConfig {
    /// Upstream's config dict with the keys below set.
    pub config: Value,
    /// The keys read from the weights, with their values.
    pub read: Vec<(String, Value)>,
    /// Keys the weights do not hold that keep upstream's default.
    pub defaults: Vec<String>,
    /// What the weights cannot settle and upstream's defaults contradict, each naming the key
    /// to set: an error unless `--set` or `--config` settles it.
    pub unresolved: Vec<String>,
}

/// The config of a checkpoint that carries none, from its shapes: `patch_size`, `image_size`
/// (the position table), `hidden_size`, `input_{text,image}_embed_size`, `num_top_layer`,
/// `mlp_ratio`, which heads exist (`loss_names`), `vocab_size`, the label sizes and the MIM
/// decoder sizes. `num_heads` and `mim_decoder_num_heads` keep upstream's defaults; where they
/// do not divide their widths (or the class count matches no MELINDA column), `unresolved`
/// says which key to set.
pub fn derive(shapes: &Shapes, source: &Path) -> Result<DerivedConfig> {
    let defaults_cfg = M3aeConfig::default();
    let mut read: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| read.push((k.to_string(), v));
    let pos = "vision_encoder.visual.positional_embedding";
    let patch = dim(shapes, "vision_encoder.visual.conv1.weight", 3, source)?;
    let rows = dim(shapes, pos, 0, source)?;
    let grid = ((rows - 1).max(0) as f64).sqrt().round() as i64;
    if grid <= 0 || grid * grid != rows - 1 {
        return Err(Error::Checkpoint { path: source.into(), reason: format!("`{pos}` has {rows} rows: not a class row plus a square grid") });
    }
    put("patch_size", patch.into());
    put("image_size", (grid * patch).into());
    let lang = "multi_modal_language_proj.weight";
    let hidden = dim(shapes, lang, 0, source)?;
    put("hidden_size", hidden.into());
    put("input_text_embed_size", dim(shapes, lang, 1, source)?.into());
    put("input_image_embed_size", dim(shapes, "multi_modal_vision_proj.weight", 1, source)?.into());
    let layers = count_indexed(shapes, "multi_modal_vision_layers.");
    put("num_top_layer", layers.into());
    let inter = dim(shapes, "multi_modal_vision_layers.0.intermediate.dense.weight", 0, source)?;
    if inter % hidden != 0 {
        return Err(Error::Config(format!("{}: fusion FFN width {inter} is not a multiple of hidden_size {hidden}: no `mlp_ratio` fits", source.display())));
    }
    put("mlp_ratio", (inter / hidden).into());
    let has = |head: &str| shapes.keys().any(|k| k.starts_with(&format!("{head}.")));
    // itm_head also exists for IRTR alone (upstream builds it, frozen, whenever irtr > 0)
    let heads = json!({
        "mlm": i64::from(has("mlm_head")), "mim": i64::from(has("mim_head")),
        "itm": i64::from(has("itm_head") && !has("irtr_head")), "vqa": i64::from(has("vqa_head")),
        "cls": i64::from(has("cls_head")), "irtr": i64::from(has("irtr_head")),
    });
    put("loss_names", heads);
    let mut defaults = vec!["num_heads".to_string()];
    if has("mlm_head") {
        put("vocab_size", dim(shapes, "mlm_head.bias", 0, source)?.into());
    }
    if has("vqa_head") {
        put("vqa_label_size", dim(shapes, "vqa_head.3.weight", 0, source)?.into());
    }
    let mut unresolved = Vec::new();
    if has("cls_head") {
        let n = dim(shapes, "cls_head.3.weight", 0, source)?;
        let columns: Vec<&String> = defaults_cfg.melinda_label_size.iter().filter(|(_, &v)| v == n).map(|(k, _)| k).collect();
        match columns[..] {
            [column] => put("label_column_name", column.clone().into()),
            _ => unresolved.push(format!(
                "cls_head has {n} classes, which {} of upstream's melinda_label_size columns {:?}: set `label_column_name` (and `melinda_label_size`)",
                if columns.is_empty() { "match none" } else { "match several" },
                defaults_cfg.melinda_label_size
            )),
        }
    }
    if has("mim_head") {
        let dd = dim(shapes, "mim_head.decoder_embed.weight", 0, source)?;
        put("mim_decoder_hidden_size", dd.into());
        put("mim_decoder_num_layers", count_indexed(shapes, "mim_head.decoder.resblocks.").into());
        if dd % defaults_cfg.mim_decoder_num_heads != 0 {
            unresolved.push(format!(
                "the MIM decoder is {dd} wide, which upstream's default mim_decoder_num_heads {} does not divide: set `mim_decoder_num_heads`",
                defaults_cfg.mim_decoder_num_heads
            ));
        }
        defaults.extend(["mim_decoder_num_heads", "mim_layer", "norm_pix_loss", "mim_prob"].map(String::from));
    }
    if hidden % defaults_cfg.num_heads != 0 {
        unresolved.push(format!(
            "the fusion layers are {hidden} wide, which upstream's default num_heads {} does not divide: set `num_heads`",
            defaults_cfg.num_heads
        ));
    }
    defaults.push("drop_rate".into());
    let mut config = serde_json::to_value(&defaults_cfg).map_err(|e| Error::Config(e.to_string()))?;
    for (k, v) in &read {
        config[k.as_str()] = v.clone();
    }
    Ok(DerivedConfig { config, read, defaults, unresolved })
}

/// The config key that sets a parameter's shape: the hint of a shape error.
pub fn config_key_for(param: &str) -> &'static str {
    let p = param;
    match () {
        _ if p == "vision_encoder.visual.positional_embedding" || p == "mim_head.decoder_pos_embed" => "image_size",
        _ if p == "vision_encoder.visual.conv1.weight" || p.starts_with("mim_head.decoder_pred") => "patch_size",
        _ if p.starts_with("vision_encoder.") => "vision_encoder_config",
        _ if p.starts_with("language_encoder.") => "language_encoder_config",
        _ if p == "mlm_head.bias" || p == "mlm_head.decoder.weight" => "vocab_size",
        _ if p.starts_with("mim_head.") => "mim_decoder_hidden_size",
        _ if p.starts_with("vqa_head.3.") => "vqa_label_size",
        _ if p.starts_with("cls_head.3.") => "label_column_name` / `melinda_label_size",
        _ if p == "multi_modal_language_proj.weight" => "input_text_embed_size` / `hidden_size",
        _ if p == "multi_modal_vision_proj.weight" => "input_image_embed_size` / `hidden_size",
        _ if p.contains(".intermediate.") || (p.ends_with(".output.dense.weight") && !p.contains("attention.output")) => "mlp_ratio",
        _ => "hidden_size",
    }
}
