//! The pre-trained encoders a fresh model starts from, in the formats upstream reads them:
//! an OpenAI-CLIP state dict (`vit` names the file: `clip_model.build_model` loads it) and a
//! Hugging Face RoBERTa folder (`tokenizer` names it: `RobertaModel.from_pretrained` loads it).
//! [`write_clip`] and [`write_roberta`] save stage 0's towers in those formats;
//! [`from_config`] and [`load`] read them back when `load_path` is empty.
use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

use super::strict::{self, ParamSpec};
use super::{write_safetensors, StateDict};
use crate::checkpoint::export::{write_checkpoint_as, Layout};
use crate::checkpoint::sources::{read_clip, read_roberta};
use crate::config::{from_weights, text, M3aeConfig};
use crate::error::{Error, Result};

const VISION: &str = "vision_encoder.";
const TEXT: &str = "language_encoder.";

/// The weight files an HF model folder may hold (`from_pretrained`'s order).
const HF_WEIGHTS: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// Writes the vision tower `sd` (M3AE keys, `vision_encoder.…`: the `layers − 1` blocks M3AE
/// builds) as an OpenAI CLIP state dict (`torch.save(model.state_dict())`): keys without the
/// prefix; one more block after them, the one upstream's loader drops, written as the identity
/// (zero output projections of attention and MLP, so a CLIP that runs every block computes what
/// the tower computes); and `extra` (`visual.proj`, `text_projection`, `logit_scale`).
pub fn write_clip(path: &Path, sd: &StateDict, extra: &[(&str, &Tensor)]) -> Result<()> {
    let mut out = StateDict::new();
    for (k, v) in sd {
        let bare = k.strip_prefix(VISION).ok_or_else(|| Error::input(k.as_str(), format!("not a `{VISION}` key: cannot write it into {}", path.display())))?;
        out.insert(bare.to_string(), v.detach().copy());
    }
    let blocks = out.keys().filter(|k| k.starts_with("visual.transformer.resblocks.") && k.ends_with(".attn.in_proj_weight")).count();
    let template = format!("visual.transformer.resblocks.{}.", blocks.checked_sub(1).ok_or_else(|| Error::input("vision tower", "has no transformer block"))?);
    let identity: Vec<(String, Tensor)> = out
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&template).map(|rest| (rest, v)))
        .map(|(rest, v)| {
            let value = if rest.starts_with("ln_") && rest.ends_with(".weight") { v.ones_like() } else { v.zeros_like() };
            (format!("visual.transformer.resblocks.{blocks}.{rest}"), value)
        })
        .collect();
    out.extend(identity);
    for (k, v) in extra {
        out.insert((*k).to_string(), v.detach().copy());
    }
    write_checkpoint_as(path, &out, Layout::Bare)
}

/// Writes the text tower `sd` (`language_encoder.…`) as a Hugging Face `RobertaModel` folder:
/// `model.safetensors` (keys without the prefix), and `config.json` plus the tokenizer files
/// copied from `tokenizer_dir` (the folder the tower was trained with), so the folder is both
/// a `tokenizer` and the RoBERTa weights.
pub fn write_roberta(dir: &Path, sd: &StateDict, tokenizer_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let entries = std::fs::read_dir(tokenizer_dir).map_err(|e| Error::io(tokenizer_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(tokenizer_dir, e))?;
        let name = entry.file_name();
        let is_weights = HF_WEIGHTS.iter().any(|w| name == *w);
        if entry.path().is_file() && !is_weights {
            std::fs::copy(entry.path(), dir.join(&name)).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    if !dir.join("config.json").is_file() {
        return Err(Error::Config(format!("{}: no config.json to copy (the RoBERTa config the tower was built from)", tokenizer_dir.display())));
    }
    let mut named = Vec::new();
    for (k, v) in sd {
        let bare = k.strip_prefix(TEXT).ok_or_else(|| Error::input(k.as_str(), format!("not a `{TEXT}` key: cannot write it into {}", dir.display())))?;
        named.push((bare.to_string(), v));
    }
    write_safetensors(&dir.join("model.safetensors"), named.iter().map(|(k, v)| (k.as_str(), *v)))
}

/// Pre-trained encoder weights for a fresh model, and where they came from.
pub struct Encoders {
    pub weights: StateDict,
    /// The files read (the CLIP file, the RoBERTa folder).
    pub sources: Vec<PathBuf>,
    /// Keys of the sources no encoder uses (CLIP's last block and projections, HF heads).
    pub dropped: Vec<String>,
}

/// What a fresh model (empty `load_path`) starts from, as upstream's `__init__` builds it:
/// CLIP from `vit` when it names a file (a name such as `ViT-B/16` is a download upstream
/// makes and the port does not: the encoder then keeps its initialisation), RoBERTa from the
/// `tokenizer` folder when it holds weights (`model.safetensors` or `pytorch_model.bin`).
/// Resolves the encoder configs in `config` (the CLIP shape from the file, the RoBERTa config
/// from the folder, as [`text::resolve`] reads it). `None` when neither source exists.
pub fn from_config(config: &mut M3aeConfig) -> Result<Option<Encoders>> {
    let mut enc = Encoders { weights: StateDict::new(), sources: Vec::new(), dropped: Vec::new() };
    let folder = PathBuf::from(&config.tokenizer);
    if !config.tokenizer.is_empty() && HF_WEIGHTS.iter().any(|w| folder.join(w).is_file()) {
        let (sd, text_cfg, dropped) = read_roberta(&folder)?;
        if config.language_encoder_config.is_none() {
            config.language_encoder_config = Some(text_cfg);
        }
        enc.weights.extend(sd);
        enc.dropped.extend(dropped);
        enc.sources.push(folder);
    } else {
        text::resolve(config, None, Path::new("the fresh model"))?;
    }
    let vit = PathBuf::from(&config.vit);
    if !config.vit.is_empty() && vit.is_file() {
        let (sd, dropped, _) = read_clip(&vit, config.image_size)?;
        let shapes = sd.iter().map(|(k, v)| (k.clone(), v.size())).collect();
        from_weights::vision_config(config, &shapes, &vit)?;
        enc.weights.extend(sd);
        enc.dropped.extend(dropped);
        enc.sources.push(vit);
    } else {
        config.vision_encoder_config = Some(config.vision()?);
    }
    Ok((!enc.sources.is_empty()).then_some(enc))
}

/// Copies `enc` into the encoder variables of `vs` (every key must name a variable of the
/// shape the config built; the rest of the model keeps its initialisation). Returns the
/// number of tensors loaded.
pub fn load(vs: &nn::VarStore, enc: &Encoders) -> Result<usize> {
    let vars = vs.variables();
    let source = enc.sources.first().map(PathBuf::as_path).unwrap_or(Path::new("encoders"));
    tch::no_grad(|| {
        for (k, t) in &enc.weights {
            let var = vars.get(k).ok_or_else(|| Error::Checkpoint { path: source.into(), reason: format!("key `{k}`: the model built from the config has no such parameter") })?;
            strict::check(k, &ParamSpec { shape: var.size(), kind: var.kind() }, &t.size(), t.kind(), source)?;
            var.shallow_clone().f_copy_(t)?;
        }
        Ok(enc.weights.len())
    })
}
