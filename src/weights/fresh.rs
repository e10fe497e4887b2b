//! A fresh model's weights (upstream's `__init__` with `load_path` empty): the encoders from
//! OpenAI CLIP and HF RoBERTa files where given, everything else from the model's own init.
use std::path::Path;

use tch::{nn, Device};

use super::strict::{self, ParamSpec};
use super::{LoadReport, Shapes, StateDict};
use crate::checkpoint::sources::{read_clip, read_roberta};
use crate::config::{from_weights, text, M3aeConfig};
use crate::error::Result;
use crate::model::M3aeTransformerSs;

/// A fresh model (upstream's `__init__` with `load_path` empty): the encoders from `clip`
/// and `roberta` where given, every other parameter from the model's own initialisation.
/// The RoBERTa config is `roberta`'s, else resolved as [`text::resolve`] does for a fresh
/// model; the CLIP shape is `clip`'s, else the `vit` preset's.
/// The report lists the source keys left out (`unexpected`), the parameters no source
/// provided (`missing`: they keep their init) and the adapted position table.
pub fn init_model(config: &mut M3aeConfig, clip: Option<&Path>, roberta: Option<&Path>) -> Result<(StateDict, LoadReport)> {
    let mut report = LoadReport::default();
    let mut sources = StateDict::new();
    if let Some(dir) = roberta {
        let (sd, text, dropped) = read_roberta(dir)?;
        config.language_encoder_config = Some(text);
        sources.extend(sd);
        report.unexpected.extend(dropped);
    } else {
        text::resolve(config, None, Path::new("the fresh model"))?;
    }
    if let Some(path) = clip {
        let (sd, dropped, adapted) = read_clip(path, config.image_size)?;
        if adapted {
            report.adapted.push("vision_encoder.visual.positional_embedding".into());
        }
        let shapes: Shapes = sd.iter().map(|(k, v)| (k.clone(), v.size())).collect();
        from_weights::vision_config(config, &shapes, path)?;
        sources.extend(sd);
        report.unexpected.extend(dropped);
    } else {
        config.vision_encoder_config = Some(config.vision()?);
    }
    let vs = nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), config)?;
    let source_path = clip.or(roberta).unwrap_or(Path::new("init"));
    let mut out = StateDict::new();
    for (name, var) in vs.variables() {
        match sources.remove(&name) {
            Some(t) => {
                let fit = strict::check(&name, &ParamSpec { shape: var.size(), kind: var.kind() }, &t.size(), t.kind(), source_path)?;
                if fit == strict::Fit::Cast {
                    report.cast.push(name.clone());
                }
                out.insert(name, t.f_to_kind(var.kind())?);
            }
            None => {
                report.missing.push(name.clone());
                out.insert(name, var.detach());
            }
        }
    }
    report.unexpected.extend(sources.into_keys());
    report.missing.sort();
    report.unexpected.sort();
    report.cast.sort();
    Ok((out, report))
}
