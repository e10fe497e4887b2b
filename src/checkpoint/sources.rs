//! Upstream's initialisation sources (`load_path` empty): OpenAI CLIP weights as
//! `clip_model.build_model` reads them, and a Hugging Face RoBERTa folder as
//! `RobertaModel.from_pretrained` does (`weights::fresh` assembles the fresh model).
use std::path::Path;

use super::tensor::TensorReader;
use super::torch_file::read_checkpoint;
use super::value::Value;
use super::TorchFile;
use crate::config::{text, TextEncoderConfig};
use crate::error::{Error, Result};
use crate::weights::convert::adapt_position_embedding;
use crate::weights::{read_safetensors, StateDict};

/// CLIP keys the vision encoder has besides `visual.*` (the unused text tower's embeddings).
const CLIP_SHARED: &[&str] = &["token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias"];

/// Collects the tensors of a TorchScript module tree (`__torch__.*` objects whose `BUILD`
/// state is an attribute dict) under dotted attribute paths, as `module.state_dict()` names them.
fn script_tensors(reader: &mut TensorReader, v: &Value, prefix: &str, out: &mut StateDict) -> Result<()> {
    let Value::Object(o) = v else { return Ok(()) };
    let Some(Value::Dict(attrs)) = &o.state else { return Ok(()) };
    for (k, x) in attrs {
        let Value::Str(name) = k else { continue };
        match x {
            Value::Tensor(t) => {
                out.insert(format!("{prefix}{name}"), reader.read(t)?);
            }
            Value::Object(_) => script_tensors(reader, x, &format!("{prefix}{name}."), out)?,
            _ => {}
        }
    }
    Ok(())
}

/// The state dict of a CLIP file: a TorchScript archive (`ViT-B-16.pt`) or a plain state dict.
fn clip_state_dict(path: &Path) -> Result<StateDict> {
    let file = TorchFile::open(path)?;
    if file.archive.has_record("constants.pkl") {
        let mut sd = StateDict::new();
        script_tensors(&mut TensorReader::new(&file.archive), &file.root, "", &mut sd)?;
        return Ok(sd);
    }
    drop(file);
    Ok(read_checkpoint(path)?.0)
}

/// OpenAI CLIP weights → `vision_encoder.*`, as `build_model(name, resolution_after)`: the
/// visual tower minus its last block and `proj` (upstream builds `layers - 1` blocks and no
/// projection), the text-tower embeddings M3AE keeps, and the patch-position table adapted to
/// `image_size`. Returns the weights and the CLIP keys left out.
pub fn read_clip(path: &Path, image_size: i64) -> Result<(StateDict, Vec<String>, bool)> {
    let mut sd = clip_state_dict(path)?;
    let missing = |key: &str| Error::MissingTensor { path: path.into(), key: key.into() };
    let patch = *sd.get("visual.conv1.weight").ok_or_else(|| missing("visual.conv1.weight"))?.size().last().unwrap_or(&0);
    if patch <= 0 || image_size % patch != 0 {
        return Err(Error::Config(format!("image_size {image_size} is not a multiple of the CLIP patch size {patch} ({})", path.display())));
    }
    let blocks = sd.keys().filter(|k| k.starts_with("visual.") && k.ends_with(".attn.in_proj_weight")).count();
    let last_block = format!("visual.transformer.resblocks.{}.", blocks.saturating_sub(1));
    let pos = sd.get("visual.positional_embedding").ok_or_else(|| missing("visual.positional_embedding"))?;
    let adapted = adapt_position_embedding(pos, image_size / patch, path)?;
    let was_adapted = adapted.is_some();
    if let Some(p) = adapted {
        sd.insert("visual.positional_embedding".into(), p);
    }
    let keep = |k: &str| (k.starts_with("visual.") && k != "visual.proj" && !k.starts_with(&last_block)) || CLIP_SHARED.contains(&k);
    let dropped = sd.keys().filter(|k| !keep(k)).cloned().collect();
    let out = sd.into_iter().filter(|(k, _)| keep(k)).map(|(k, v)| (format!("vision_encoder.{k}"), v)).collect();
    Ok((out, dropped, was_adapted))
}

/// A Hugging Face RoBERTa folder (`config.json` + `model.safetensors` or `pytorch_model.bin`)
/// → `language_encoder.*` and its config. Keys may carry `roberta.` or no prefix; heads other
/// than the pooler (`lm_head.*`) and the `position_ids` buffer are left out and returned.
pub fn read_roberta(dir: &Path) -> Result<(StateDict, TextEncoderConfig, Vec<String>)> {
    let config = text::read_hf_config(&dir.join("config.json"))?;
    let st = dir.join("model.safetensors");
    let sd = if st.exists() { read_safetensors(&st)? } else { read_checkpoint(&dir.join("pytorch_model.bin"))?.0 };
    let (mut out, mut dropped) = (StateDict::new(), Vec::new());
    for (k, v) in sd {
        let bare = k.strip_prefix("roberta.").unwrap_or(&k);
        let part_of_model = ["embeddings.", "encoder.", "pooler."].iter().any(|p| bare.starts_with(p)) && bare != "embeddings.position_ids";
        if part_of_model {
            out.insert(format!("language_encoder.{bare}"), v);
        } else {
            dropped.push(k);
        }
    }
    Ok((out, config, dropped))
}
