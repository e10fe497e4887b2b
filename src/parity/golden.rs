//! A golden set on disk: `manifest.json`, `goldens.safetensors` and, for model sets,
//! `config.json` + `state_dict.safetensors` (format: parity/README.md).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::Tensor;

use crate::error::{Error, Result};
use crate::weights::{read_safetensors, LoadReport, StateDict};

#[derive(Debug, Clone, Deserialize)]
pub struct TensorSpec {
    pub shape: Vec<i64>,
    pub dtype: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct GroupSpecJson {
    pub lr: f64,
    pub weight_decay: f64,
}

/// The `adamw` block of a model set's manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct AdamwSpec {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub steps: usize,
    pub groups: BTreeMap<String, GroupSpecJson>,
}

/// `manifest.json`: the fields both kinds of set share, plus each kind's own.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub set: Option<String>,
    pub tensors: BTreeMap<String, TensorSpec>,
    // model sets
    #[serde(default)]
    pub config: Option<String>,
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub adamw: Option<AdamwSpec>,
    #[serde(default)]
    pub upstream_load_report: Option<LoadReport>,
    // preprocessing sets
    #[serde(default)]
    pub texts: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub sizes: Vec<i64>,
}

/// A loaded golden set.
#[derive(Debug)]
pub struct GoldenSet {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub goldens: StateDict,
}

impl GoldenSet {
    pub fn load(dir: &Path) -> Result<Self> {
        let mpath = dir.join("manifest.json");
        if !mpath.exists() && dir.is_dir() {
            // a model folder (model.safetensors + config.json) is the likely mix-up
            let model = dir.join("model.safetensors").exists() || dir.join("config.json").exists();
            let hint = if model { "; this looks like a model folder, and `m3ae parity` takes golden sets (such as parity/tiny-a)" } else { "" };
            return Err(Error::Parity(format!("{}: manifest.json is missing (a golden set holds manifest.json and goldens.safetensors){hint}", dir.display())));
        }
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|source| Error::Json { path: mpath.clone(), source })?;
        let goldens = read_safetensors(&dir.join("goldens.safetensors"))?;
        for (name, spec) in &manifest.tensors {
            let Some(t) = goldens.get(name) else {
                return Err(Error::MissingTensor { path: dir.join("goldens.safetensors"), key: name.clone() });
            };
            if t.size() != spec.shape {
                return Err(Error::Parity(format!("{}: `{name}` has shape {:?}, manifest.json says {:?}", dir.join("goldens.safetensors").display(), t.size(), spec.shape)));
            }
        }
        Ok(GoldenSet { dir: dir.to_path_buf(), manifest, goldens })
    }

    pub fn is_model_set(&self) -> bool {
        self.manifest.config.is_some()
    }

    pub fn name(&self) -> String {
        self.manifest.set.clone().unwrap_or_else(|| self.dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// A golden input tensor (`input.*`), with a clear error when absent.
    pub fn input(&self, name: &str) -> Result<&Tensor> {
        self.goldens.get(name).ok_or_else(|| Error::MissingTensor { path: self.dir.join("goldens.safetensors"), key: name.into() })
    }
}
