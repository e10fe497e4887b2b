//! Strict loading, written once for every path that fills a model (a state dict into a
//! VarStore, a safetensors file straight into a VarStore, a checkpoint fitted by `convert`):
//! every model parameter present with its shape; float data of another width is cast, as
//! upstream's `load_state_dict` copies it into the fp32 model; integer or bool data where a
//! float parameter is expected is an error naming the key.
use std::collections::BTreeMap;
use std::path::Path;

use tch::Kind;

use super::dtype::is_float;
use super::LoadReport;
use crate::error::{Error, Result};

/// What the model expects of one parameter or buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub shape: Vec<i64>,
    pub kind: Kind,
}

/// Every parameter and buffer of a model, by upstream key.
pub type ModelSpec = BTreeMap<String, ParamSpec>;

/// How a source tensor fits its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Exact,
    /// Float data of another width (f16, bf16, f64): copied with a cast.
    Cast,
}

/// A checkpoint tensor whose shape differs from the model's, naming both sides and the config
/// key that sets it.
pub fn shape_error(path: &Path, key: &str, expected: &[i64], found: &[i64]) -> Error {
    let config_key = crate::config::from_weights::config_key_for(key);
    Error::ShapeMismatch { path: path.into(), key: key.into(), expected: expected.to_vec(), found: found.to_vec(), config_key }
}

/// Checks one source tensor (`shape`, `kind`) against what the model expects for `key`.
pub fn check(key: &str, want: &ParamSpec, shape: &[i64], kind: Kind, source: &Path) -> Result<Fit> {
    if shape != want.shape.as_slice() {
        return Err(shape_error(source, key, &want.shape, shape));
    }
    if kind == want.kind {
        return Ok(Fit::Exact);
    }
    if is_float(kind) && is_float(want.kind) {
        return Ok(Fit::Cast);
    }
    Err(Error::DtypeMismatch { path: source.into(), key: key.into(), expected: format!("{:?}", want.kind), found: format!("{kind:?}") })
}

/// Tracks one load: which model keys were filled or cast, then the closing report.
#[derive(Default)]
pub struct Tally {
    report: LoadReport,
}

impl Tally {
    pub fn missing(&mut self, key: &str) {
        self.report.missing.push(key.into());
    }

    pub fn filled(&mut self, key: &str, fit: Fit) {
        if fit == Fit::Cast {
            self.report.cast.push(key.into());
        }
    }

    /// The report, with the source keys the model does not have as `unexpected`; an error
    /// naming the first missing keys when any parameter was not filled.
    pub fn finish<'a>(mut self, source_keys: impl Iterator<Item = &'a String>, model_has: impl Fn(&str) -> bool, source: &Path) -> Result<LoadReport> {
        let r = &mut self.report;
        r.missing.sort();
        r.cast.sort();
        r.unexpected = source_keys.filter(|k| !model_has(k)).cloned().collect();
        r.unexpected.sort();
        if !r.missing.is_empty() {
            return Err(Error::MissingKeys { path: source.into(), count: r.missing.len(), first: r.missing.iter().take(5).cloned().collect() });
        }
        if !r.cast.is_empty() {
            log::info!("{}: {} tensor(s) cast to the model's dtype: {}", source.display(), r.cast.len(), r.cast.join(", "));
        }
        Ok(self.report)
    }
}
