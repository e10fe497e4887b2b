//! Config keys: every key a config file or `--set` names must be one of upstream's (or one
//! of the port's two encoder configs); an unknown key is an error that names the closest
//! known key. Upstream keys the port does not read (`log_dir`, `num_gpus`, …) are accepted.
use std::path::Path;

use serde_json::{Map, Value};

use super::{LossNames, M3aeConfig, TextEncoderConfig, VisionEncoderConfig};
use crate::error::{Error, Result};

/// The keys of a struct's serialized form.
fn keys_of(v: impl serde::Serialize) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Every top-level key: upstream's config dict, plus `vision_encoder_config` and
/// `language_encoder_config`.
pub fn known_keys() -> Vec<String> {
    let full = M3aeConfig {
        vision_encoder_config: VisionEncoderConfig::preset("ViT-B/16"),
        language_encoder_config: Some(TextEncoderConfig::default()),
        ..Default::default()
    };
    keys_of(full)
}

/// Levenshtein distance between two keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known key closest to `key`.
pub fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known.iter().min_by_key(|k| distance(key, k)).map(String::as_str)
}

fn unknown(origin: &str, key: &str, known: &[String]) -> Error {
    let hint = closest(key.rsplit('.').next().unwrap_or(key), known).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
    Error::Config(format!("{origin}: unknown key `{key}`{hint}"))
}

/// Checks a dotted key path as `--set` names it: its first part must be a known key, and a
/// part inside `loss_names` or `vision_encoder_config` one of their fields.
/// (`melinda_label_size` is a free map; `language_encoder_config` is an HF config, whose
/// other fields `from_pretrained` ignores too.)
pub fn check_path(key: &str, origin: &str) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let top = known_keys();
    if !top.iter().any(|k| k == parts[0]) {
        return Err(unknown(origin, key, &top));
    }
    let inner = match parts[0] {
        "loss_names" => keys_of(LossNames::default()),
        "vision_encoder_config" => keys_of(VisionEncoderConfig::preset("ViT-B/16")),
        _ => return Ok(()),
    };
    match parts.get(1) {
        Some(p) if !inner.iter().any(|k| k == p) => Err(unknown(origin, key, &inner)),
        _ => Ok(()),
    }
}

/// Checks every key of a config object (and of its `loss_names` and `vision_encoder_config`).
pub fn check(json: &Value, origin: &str) -> Result<()> {
    let obj = json.as_object().ok_or_else(|| Error::Config(format!("{origin}: a config is a JSON object")))?;
    for (k, v) in obj {
        check_path(k, origin)?;
        if let (Some(inner), "loss_names" | "vision_encoder_config") = (v.as_object(), k.as_str()) {
            for sub in inner.keys() {
                check_path(&format!("{k}.{sub}"), origin)?;
            }
        }
    }
    Ok(())
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })
}

/// Writes `value` as pretty-printed JSON with a final newline.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json { path: path.into(), source })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// `key=value` with a JSON value (a bare word that is not JSON is taken as a string). The key
/// must be known.
pub fn parse_override(s: &str) -> Result<(String, Value)> {
    let (k, v) = s.split_once('=').ok_or_else(|| Error::Config(format!("--set `{s}` is not key=value")))?;
    let key = k.trim().to_string();
    check_path(&key, "--set")?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((key, value))
}

/// Sets a dotted key inside a JSON object, creating objects on the way.
fn set_path(json: &mut Value, key: &str, value: Value) -> Result<()> {
    let mut slot = json;
    for part in key.split('.') {
        let obj: &mut Map<String, Value> = slot.as_object_mut().ok_or_else(|| Error::Config(format!("--set `{key}`: `{part}` is not inside an object")))?;
        slot = obj.entry(part).or_insert(Value::Null);
    }
    *slot = value;
    Ok(())
}

/// The config: `base` (a file's, a checkpoint's or one read off weights; upstream's defaults
/// where `None`, and for every key `base` leaves out), its keys checked (`origin` names it in
/// errors), then `overrides` (`--set`, dotted keys reach into objects) and `image_size`.
/// The result is validated.
pub fn build_config(base: Option<Value>, origin: &str, overrides: &[(String, Value)], image_size: Option<i64>) -> Result<M3aeConfig> {
    // upstream's defaults, each key the base states replacing its default whole (a partial
    // `loss_names` is `_loss_names(d)`: the objectives it leaves out are 0)
    let mut json = serde_json::to_value(M3aeConfig::default()).map_err(|e| Error::Config(e.to_string()))?;
    if let Some(base) = base {
        check(&base, origin)?;
        for (k, v) in base.as_object().into_iter().flatten() {
            json[k.as_str()] = v.clone();
        }
    }
    for (key, value) in overrides {
        check_path(key, "--set")?;
        set_path(&mut json, key, value.clone())?;
    }
    if let Some(s) = image_size {
        set_path(&mut json, "image_size", s.into())?;
    }
    let config: M3aeConfig = serde_json::from_value(json).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    config.validate()?;
    Ok(config)
}
