//! The RoBERTa config. Its head count is not in the weights, so it is taken from where
//! upstream takes it (`RobertaConfig.from_pretrained(config["tokenizer"])`), in this order:
//! 1. `language_encoder_config` in the config;
//! 2. `config.json` in the folder `tokenizer` names (an HF tokenizer or model folder);
//! 3. roberta-base's config, for a roberta-base-shaped text encoder (768 wide, 12 layers), or,
//!    for a fresh model, when `tokenizer` is `roberta-base`.
//!
//! Otherwise it is an error that says how to state it. Nothing is guessed.
use std::path::{Path, PathBuf};

use super::from_weights::text_shape;
use super::{M3aeConfig, TextEncoderConfig};
use crate::error::{Error, Result};
use super::from_weights::Shapes;

/// Where the RoBERTa config came from.
#[derive(Debug, Clone, PartialEq)]
pub enum TextSource {
    /// `language_encoder_config` in the config.
    ConfigKey,
    /// The `config.json` of the `tokenizer` folder.
    TokenizerFolder(PathBuf),
    /// roberta-base's config (roberta-base-shaped weights, or `tokenizer: roberta-base`).
    RobertaBase,
}

/// Reads an HF `config.json` as upstream's `RobertaConfig.from_pretrained` does.
pub fn read_hf_config(path: &Path) -> Result<TextEncoderConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })
}

/// Fills `config.language_encoder_config` by the rule above. `weights` are the shapes of the
/// checkpoint the model will load (`None` for a fresh model); `source` names it in errors.
pub fn resolve(config: &mut M3aeConfig, weights: Option<&Shapes>, source: &Path) -> Result<TextSource> {
    if config.language_encoder_config.is_some() {
        return Ok(TextSource::ConfigKey);
    }
    let folder = Path::new(&config.tokenizer);
    let hf = folder.join("config.json");
    if !config.tokenizer.is_empty() && hf.is_file() {
        config.language_encoder_config = Some(read_hf_config(&hf)?);
        log::info!("RoBERTa config read from {} (the `tokenizer` folder)", hf.display());
        return Ok(TextSource::TokenizerFolder(hf));
    }
    let base = TextEncoderConfig::roberta_base();
    let (roberta_base_shaped, what) = match weights.map(text_shape) {
        Some(Some((width, layers))) => (
            (width, layers) == (base.hidden_size, base.num_hidden_layers),
            format!("the checkpoint's text encoder is {width} wide with {layers} layer(s)"),
        ),
        Some(None) => (false, "the checkpoint has no text encoder weights".to_string()),
        None => (config.tokenizer == "roberta-base", format!("`tokenizer` is `{}`", config.tokenizer)),
    };
    if roberta_base_shaped {
        config.language_encoder_config = Some(base);
        log::info!("RoBERTa config: roberta-base's ({what})");
        return Ok(TextSource::RobertaBase);
    }
    Err(Error::Config(format!(
        "{}: the RoBERTa config (its head count above all) is not in the weights and nothing states it: {what}, \
         not roberta-base's 768 × 12, and `tokenizer` (`{}`) is not a folder holding an HF config.json. State it in one of two ways: \
         `language_encoder_config` in the config (--config FILE, or --set 'language_encoder_config={{\"hidden_size\":…,\"num_attention_heads\":…,…}}'), \
         or `tokenizer` set to the HF tokenizer or model folder whose config.json upstream reads (--set tokenizer=PATH)",
        source.display(),
        config.tokenizer
    )))
}
