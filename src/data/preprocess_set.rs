//! Recomputes a preprocessing parity set (`parity/preprocess/` layout, see `parity/FORMAT.md`).
//!
//! The set's `manifest.json` lists `texts`, `images` (files in the set folder), `sizes`, and
//! `tensors` (golden names). The tokenizer is the manifest's `tokenizer` file when present,
//! otherwise the one file in the folder whose name ends in `tokenizer.json`. Token lengths are
//! the `L` of the `tok.<L>.*` names in `tensors`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::Tensor;

use super::tokenizer::TextTokenizer;
use super::transforms::clip_transform;
use crate::{Error, Result};

/// The fields of a preprocessing set's `manifest.json` used here.
#[derive(Debug, Deserialize)]
struct Manifest {
    /// Texts tokenized at every length.
    texts: Vec<String>,
    /// Image file names, relative to the set folder.
    images: Vec<String>,
    /// CLIP transform output sizes.
    sizes: Vec<i64>,
    /// Tokenizer file name, relative to the set folder (optional).
    #[serde(default)]
    tokenizer: Option<String>,
    /// Golden tensor names (values: shape/dtype, unused here).
    tensors: BTreeMap<String, serde_json::Value>,
}

/// Every tensor of the set under its golden name: `clip.<image>.<size>` float32 [3, S, S] and
/// `tok.<L>.{input_ids,attention_mask,special_tokens_mask}` int64 [N, L], `tok.<L>.offsets`
/// int64 [N, L, 2].
pub fn compute(set_dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let manifest_path = set_dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Error::Json { path: manifest_path.clone(), source: e })?;
    let mut out = BTreeMap::new();
    for image in &manifest.images {
        for &size in &manifest.sizes {
            out.insert(format!("clip.{image}.{size}"), clip_transform(&set_dir.join(image), size)?);
        }
    }
    let lengths = token_lengths(&manifest, &manifest_path)?;
    if !lengths.is_empty() {
        let tokenizer_path = find_tokenizer(set_dir, &manifest)?;
        for len in lengths {
            out.extend(tokenize_all(&tokenizer_path, len, &manifest.texts)?);
        }
    }
    Ok(out)
}

/// The distinct `L` of `tok.<L>.*` golden names.
fn token_lengths(manifest: &Manifest, path: &Path) -> Result<BTreeSet<usize>> {
    let mut lengths = BTreeSet::new();
    for name in manifest.tensors.keys() {
        if let Some(rest) = name.strip_prefix("tok.") {
            let len = rest.split('.').next().and_then(|l| l.parse().ok()).ok_or_else(|| Error::Input {
                name: format!("{}: tensors.{name}", path.display()),
                reason: "expected tok.<L>.<field>".into(),
            })?;
            lengths.insert(len);
        }
    }
    Ok(lengths)
}

fn find_tokenizer(set_dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    if let Some(name) = &manifest.tokenizer {
        return Ok(set_dir.join(name));
    }
    let entries = std::fs::read_dir(set_dir).map_err(|e| Error::io(set_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(set_dir, e))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with("tokenizer.json")) {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Tokenizer {
            path: set_dir.to_path_buf(),
            reason: format!("expected one *tokenizer.json file (or a manifest `tokenizer` field), found {}", found.len()),
        }),
    }
}

/// `tok.<L>.*` for all texts.
fn tokenize_all(tokenizer_path: &Path, len: usize, texts: &[String]) -> Result<BTreeMap<String, Tensor>> {
    let tokenizer = TextTokenizer::load(tokenizer_path, len)?;
    let (n, l) = (texts.len() as i64, len as i64);
    let (mut ids, mut mask, mut special, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for text in texts {
        let enc = tokenizer.encode(text)?;
        ids.extend(enc.input_ids);
        mask.extend(enc.attention_mask);
        special.extend(enc.special_tokens_mask);
        offsets.extend(enc.offsets.iter().flat_map(|&(s, e)| [s, e]));
    }
    Ok(BTreeMap::from([
        (format!("tok.{len}.input_ids"), Tensor::from_slice(&ids).view([n, l])),
        (format!("tok.{len}.attention_mask"), Tensor::from_slice(&mask).view([n, l])),
        (format!("tok.{len}.special_tokens_mask"), Tensor::from_slice(&special).view([n, l])),
        (format!("tok.{len}.offsets"), Tensor::from_slice(&offsets).view([n, l, 2])),
    ]))
}
