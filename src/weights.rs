//! Checkpoint I/O: safetensors files keyed by upstream's state_dict names, loaded strictly
//! (every parameter present, same shape, same dtype).
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;
use tch::{nn, Kind, Tensor};

use crate::config::{M3aeConfig, TextEncoderConfig, VisionEncoderConfig};
use crate::model::M3aeTransformerSs;
use crate::error::{Error, Result};

/// A state_dict: upstream key -> tensor.
pub type StateDict = BTreeMap<String, Tensor>;

/// Keys upstream checkpoints carry that no module reads (transformers 4.6 saved this buffer).
pub const KNOWN_UNUSED: &[&str] = &["language_encoder.embeddings.position_ids"];

/// What a load did, as upstream's `load_state_dict(strict=False)` would report it.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub adapted: Vec<String>,
    pub regenerated: Vec<String>,
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Reads every tensor of a safetensors file onto the CPU, one copy per tensor, with the
/// header validated first (names the file and tensor on any inconsistency).
pub fn read_safetensors(path: &Path) -> Result<StateDict> {
    crate::checkpoint::safetensors_map::SafetensorsFile::open(path)?.read_all()
}

/// Writes tensors (contiguous, CPU) to a safetensors file.
pub fn write_safetensors<'a>(path: &Path, tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<()> {
    let mut owned: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = Vec::new();
    for (name, t) in tensors {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let dtype = dtype_of(t.kind()).ok_or_else(|| Error::input(name, format!("cannot store dtype {:?}", t.kind())))?;
        let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        owned.push((name.to_string(), data, dtype, t.size().iter().map(|&d| d as usize).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, dt, s)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), d).map_err(|e| Error::input(n, e.to_string()))?)))
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, &None, path).map_err(|e| Error::Safetensors { path: path.into(), reason: e.to_string() })
}

/// Copies `sd` into every variable of `vs`, by name. Fails on the first shape or dtype
/// mismatch (naming key, expected and found), and on any missing parameter.
pub fn load_state_dict(vs: &nn::VarStore, sd: &StateDict, source: &Path) -> Result<LoadReport> {
    let vars = vs.variables();
    let mut report = LoadReport::default();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let Some(t) = sd.get(name) else {
                report.missing.push(name.clone());
                continue;
            };
            if t.size() != var.size() {
                return Err(Error::ShapeMismatch { path: source.into(), key: name.clone(), expected: var.size(), found: t.size() });
            }
            if t.kind() != var.kind() {
                return Err(Error::DtypeMismatch { path: source.into(), key: name.clone(), expected: format!("{:?}", var.kind()), found: format!("{:?}", t.kind()) });
            }
            var.shallow_clone().copy_(t);
        }
        Ok(())
    })?;
    report.missing.sort();
    report.unexpected = sd.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
    if !report.missing.is_empty() {
        return Err(Error::MissingKeys { path: source.into(), count: report.missing.len(), first: report.missing.iter().take(5).cloned().collect() });
    }
    Ok(report)
}

/// The head count is not in the weights. roberta-base (768 wide) has 12; other widths follow
/// the model's `num_heads`, lowered to the largest divisor of the width. Set
/// `language_encoder_config` to state it explicitly.
pub fn text_heads(hidden: i64, num_heads: i64) -> i64 {
    if hidden == TextEncoderConfig::default().hidden_size {
        return TextEncoderConfig::default().num_attention_heads;
    }
    (1..=num_heads.max(1)).rev().find(|h| hidden % h == 0).unwrap_or(1)
}

/// Tensor name -> shape: what the encoder configs are read from.
pub type Shapes = BTreeMap<String, Vec<i64>>;

/// Fills the encoder configs that upstream reads off the pretrained weights, from a
/// state_dict's shapes, where the config does not set them.
pub fn encoder_configs_from_state_dict(cfg: &mut M3aeConfig, sd: &StateDict, source: &Path) -> Result<()> {
    let shapes: Shapes = sd.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    encoder_configs_from_shapes(cfg, &shapes, source)
}

/// As `encoder_configs_from_state_dict`, from the shapes alone (e.g. a safetensors header).
pub fn encoder_configs_from_shapes(cfg: &mut M3aeConfig, sd: &Shapes, source: &Path) -> Result<()> {
    let need = |key: &str| sd.get(key).cloned().ok_or_else(|| Error::MissingTensor { path: source.into(), key: key.into() });
    if cfg.vision_encoder_config.is_none() {
        // as clip_model.build_model: width, blocks (+1, upstream builds layers - 1), patch, text tower
        let conv = need("vision_encoder.visual.conv1.weight")?;
        let blocks = sd.keys().filter(|k| k.starts_with("vision_encoder.visual.") && k.ends_with(".attn.in_proj_weight")).count();
        cfg.vision_encoder_config = Some(VisionEncoderConfig {
            width: conv[0],
            layers: blocks + 1,
            patch_size: conv[3],
            context_length: need("vision_encoder.positional_embedding")?[0],
            vocab_size: need("vision_encoder.token_embedding.weight")?[0],
            transformer_width: need("vision_encoder.ln_final.weight")?[0],
        });
    }
    if cfg.language_encoder_config.is_none() {
        let base = TextEncoderConfig::default();
        let word = need("language_encoder.embeddings.word_embeddings.weight")?;
        let hidden = word[1];
        let layers = sd.keys().filter(|k| k.starts_with("language_encoder.encoder.layer.") && k.ends_with(".attention.self.query.weight")).count();
        cfg.language_encoder_config = Some(TextEncoderConfig {
            vocab_size: word[0],
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: text_heads(hidden, cfg.num_heads),
            intermediate_size: need("language_encoder.encoder.layer.0.intermediate.dense.weight")?[0],
            max_position_embeddings: need("language_encoder.embeddings.position_embeddings.weight")?[0],
            type_vocab_size: need("language_encoder.embeddings.token_type_embeddings.weight")?[0],
            ..base
        });
    }
    Ok(())
}

/// A model built and loaded from a folder.
pub struct LoadedModel {
    pub vs: nn::VarStore,
    pub model: M3aeTransformerSs,
    pub report: LoadReport,
}

/// Builds the model a folder describes (`config.json`, encoder sizes from the weights where
/// the config leaves them out) and loads `dir/weights_file` into it strictly.
pub fn load_model_folder(dir: &Path, weights_file: &str, device: tch::Device) -> Result<LoadedModel> {
    let mut config = M3aeConfig::from_json_file(&dir.join("config.json"))?;
    let path = dir.join(weights_file);
    // header first: the encoder sizes, then the weights straight into the built model
    let file = crate::checkpoint::safetensors_map::SafetensorsFile::open(&path)?;
    encoder_configs_from_shapes(&mut config, &file.shapes(), &path)?;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let model = M3aeTransformerSs::new(&vs.root(), &config)?;
    let report = file.load_into(&vs)?;
    vs.set_device(device);
    Ok(LoadedModel { vs, model, report })
}
