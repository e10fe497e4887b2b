//! Model weights: safetensors I/O ([`safetensors`]), the dtype table ([`dtype`]) and strict
//! loading by upstream key ([`strict`]), the one place each of them is written; upstream's
//! loading path for checkpoints and converted folders ([`convert`]); a fresh model's weights
//! ([`fresh`]). `checkpoint/` reads torch pickles and hands its tensors here.
pub mod convert;
pub mod dtype;
pub mod encoders;
pub mod fresh;
pub mod safetensors;
pub mod strict;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Tensor};

use crate::config::{self, M3aeConfig};
use crate::error::Result;
use crate::model::M3aeTransformerSs;
pub use convert::{load_model_source, ConfigOptions, ModelWeights};
pub use safetensors::{read_safetensors, write_safetensors, SafetensorsFile};
pub use strict::{ModelSpec, ParamSpec};

/// A state_dict: upstream key -> tensor.
pub type StateDict = BTreeMap<String, Tensor>;

pub use crate::config::from_weights::Shapes;

/// Keys upstream checkpoints carry that no module reads (transformers 4.6 saved this buffer).
pub const KNOWN_UNUSED: &[&str] = &["language_encoder.embeddings.position_ids"];

/// What a load did, as upstream's `load_state_dict(strict=False)` would report it, plus the
/// tensors this port changed on the way: position tables adapted or regenerated for the
/// target grid, and float tensors cast to the model's dtype.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub adapted: Vec<String>,
    pub regenerated: Vec<String>,
    #[serde(default)]
    pub cast: Vec<String>,
}

/// Copies `sd` into every variable of `vs`, by name, strictly ([`strict::check`]): float
/// tensors of another width are cast and listed in `cast`; anything missing is an error.
pub fn load_state_dict(vs: &nn::VarStore, sd: &StateDict, source: &Path) -> Result<LoadReport> {
    let vars = vs.variables();
    let mut tally = strict::Tally::default();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let Some(t) = sd.get(name) else {
                tally.missing(name);
                continue;
            };
            let fit = strict::check(name, &ParamSpec { shape: var.size(), kind: var.kind() }, &t.size(), t.kind(), source)?;
            var.shallow_clone().f_copy_(t)?;
            tally.filled(name, fit);
        }
        Ok(())
    })?;
    tally.finish(sd.keys(), |k| vars.contains_key(k), source)
}

/// A model built and loaded from a folder.
pub struct LoadedModel {
    pub vs: nn::VarStore,
    pub model: M3aeTransformerSs,
    pub report: LoadReport,
}

/// Builds the model a folder describes and loads `dir/weights_file` into it strictly. The
/// CLIP shape comes from the weights (as `build_model` reads it); the RoBERTa config from
/// where upstream takes it ([`config::text::resolve`]): it is never guessed.
pub fn load_model_folder(dir: &Path, weights_file: &str, device: tch::Device) -> Result<LoadedModel> {
    let cfg_path = dir.join("config.json");
    let mut config = M3aeConfig::from_json_file(&cfg_path)?;
    let path = dir.join(weights_file);
    // header first: the encoder configs, then the weights straight into the built model
    let file = SafetensorsFile::open(&path)?;
    let shapes = file.shapes();
    config::from_weights::vision_config(&mut config, &shapes, &path)?;
    config::text::resolve(&mut config, Some(&shapes), &path)?;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model = M3aeTransformerSs::new(&vs.root(), &config)?;
    let report = file.load_into(&vs)?;
    vs.set_device(device);
    Ok(LoadedModel { vs, model, report })
}
