//! A decoded `torch.save` file and the state dicts inside it.
use std::path::Path;

use super::tensor::TensorReader;
use super::value::Value;
use super::zip_archive::TorchArchive;
use crate::error::{Error, Result};
use crate::weights::StateDict;

/// A `torch.save` archive with its `data.pkl` decoded (tensors not yet read).
pub struct TorchFile {
    pub archive: TorchArchive,
    pub root: Value,
}

impl TorchFile {
    /// Opens `path` and decodes `data.pkl`.
    pub fn open(path: &Path) -> Result<Self> {
        let archive = TorchArchive::open(path)?;
        let root = archive.unpickle("data.pkl")?;
        Ok(TorchFile { archive, root })
    }

    /// An error about this file.
    pub fn error(&self, reason: String) -> Error {
        Error::Checkpoint { path: self.archive.path().into(), reason }
    }

    /// Reads a `{name: tensor}` dict (`what` names it in errors) into a state dict.
    pub fn read_tensors(&self, dict: &Value, what: &str) -> Result<StateDict> {
        let items = dict.dict_items().ok_or_else(|| self.error(format!("`{what}` is a {}, not a dict", dict.kind_name())))?;
        let mut reader = TensorReader::new(&self.archive);
        let mut out = StateDict::new();
        for (k, v) in items {
            let Value::Str(name) = k else { return Err(self.error(format!("`{what}` has a non-string key ({})", k.kind_name()))) };
            let Value::Tensor(t) = v else { return Err(self.error(format!("`{what}.{name}` is a {}, not a tensor", v.kind_name()))) };
            out.insert(name.clone(), reader.read(t)?);
        }
        Ok(out)
    }
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
