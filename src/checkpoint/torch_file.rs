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
