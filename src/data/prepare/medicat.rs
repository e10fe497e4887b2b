//! MedICaT: upstream's `prepro_medicat`. The radiology figures of the release's JSONL, their
//! indices shuffled (`random.seed(42)`, `random.shuffle`); the last 2,000 become val (the first
//! 1,000 of them) and test, the rest train, with Python's slice clamping for smaller releases.
use serde_json::Value;

use super::captions::{make_arrow, CaptionSample};
use super::python::{path_join, slice};
use super::pyrandom::PyRandom;
use super::roco::{clean, field, jsonl, optional_texts, str_field};
use super::{Ctx, Dropped, PerSplit, PrepareReport};
use crate::{Error, Result};

const DATA_ROOT: &str = "data/pretrain_data/medicat";
/// The annotation file, under `pretrain_data/medicat/release/`.
pub const ANNOTATIONS: &str = "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl";

/// Python's truth value of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `prepro_medicat`: `medicat_{train,val,test}.arrow`.
pub fn prepare(ctx: &Ctx, report: &mut PrepareReport) -> Result<()> {
    let mut rng = PyRandom::seed(42);
    let image_root = format!("{DATA_ROOT}/release/figures/");
    let path = ctx.raw(&format!("{DATA_ROOT}/release/{ANNOTATIONS}"));
    let mut samples = Vec::new();
    for (line, sample) in jsonl(&path)? {
        if truthy(field(&sample, "radiology", &path, line)?) {
            samples.push((line, sample));
        }
    }
    let mut indices: Vec<usize> = (0..samples.len()).collect();
    rng.shuffle(&mut indices);
    let splits = [slice(&indices, None, Some(-2000)), slice(&indices, Some(-2000), Some(-1000)), slice(&indices, Some(-1000), None)];
    let mut data: PerSplit<Vec<CaptionSample>> = Default::default();
    let mut dropped: PerSplit<Dropped> = Default::default();
    for (s, split) in splits.iter().enumerate() {
        for &i in split.iter() {
            let (line, sample) = &samples[i];
            let name = format!("{}_{}", str_field(sample, "pdf_hash", &path, *line)?, str_field(sample, "fig_uri", &path, *line)?);
            let img_path = path_join(&image_root, &name);
            let mut texts = Vec::new();
            match sample.get("s2_caption") {
                None => {}
                Some(Value::String(c)) if !c.is_empty() => texts.push(c.clone()),
                Some(Value::String(_)) => {}
                Some(other) => return Err(Error::prepare(&path, *line, format!("`s2_caption` is not a string: {other}"))),
            }
            texts.extend(optional_texts(sample, "s2orc_references", &path, *line)?);
            let texts = clean(texts, true, &mut dropped[s]);
            if !texts.is_empty() {
                data[s].push(CaptionSample { img_path, texts });
            }
        }
    }
    make_arrow(ctx, "medicat", data, dropped, &path, report)
}
