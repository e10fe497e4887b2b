//! The VQA readers: upstream's `prepro_vqa_vqa_rad`, `prepro_vqa_slack` (English questions
//! only) and `prepro_vqa_medvqa2019` (`|`-separated `image|question|answer` lines, question ids
//! counted over the three category files and the splits, every question OPEN).
use std::path::Path;

use serde_json::Value;

use super::python::{path_join, read_text, str_of, stripped_lines};
use super::roco::{field, str_field};
use super::vqa::{make_arrow_vqa, VqaSample};
use super::{Ctx, Dropped, PerSplit, PrepareReport};
use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// The category files of a VQA-Med 2019 split, under `{split}/QA/`, in upstream's order.
pub const MEDVQA_CATEGORIES: [&str; 3] = ["Modality.csv", "Organ.csv", "Plane.csv"];

/// Prepares one of `vqa_vqa_rad`, `vqa_slack`, `vqa_medvqa_2019`.
pub fn prepare(ctx: &Ctx, dataset: &str, report: &mut PrepareReport) -> Result<()> {
    let mut data: PerSplit<Vec<VqaSample>> = Default::default();
    let mut dropped: PerSplit<Dropped> = Default::default();
    match dataset {
        "vqa_vqa_rad" => {
            let root = "data/finetune_data/vqa_rad/";
            for (s, split) in SPLITS.iter().enumerate() {
                let path = ctx.raw(&format!("{root}/{split}set.json"));
                data[s] = json_samples(&path, &format!("{root}/images"), "image_name", &mut dropped[s], false)?;
            }
        }
        "vqa_slack" => {
            let root = "data/finetune_data/slack/";
            for (s, file) in ["train.json", "validate.json", "test.json"].iter().enumerate() {
                let path = ctx.raw(&format!("{root}/{file}"));
                data[s] = json_samples(&path, &format!("{root}/imgs"), "img_name", &mut dropped[s], true)?;
            }
        }
        "vqa_medvqa_2019" => {
            let mut offset = 0i64;
            for (s, split) in SPLITS.iter().enumerate() {
                data[s] = medvqa_samples(ctx, split, offset)?;
                offset += data[s].len() as i64;
            }
        }
        other => return Err(Error::Config(format!("`{other}` is not a VQA dataset"))),
    }
    make_arrow_vqa(ctx, dataset, data, dropped, report)
}

/// A JSON list of question objects (VQA-RAD, SLAKE); SLAKE's non-English ones skipped.
fn json_samples(path: &Path, image_root: &str, image_key: &str, dropped: &mut Dropped, english_only: bool) -> Result<Vec<VqaSample>> {
    let text = read_text(path)?;
    let items: Value = serde_json::from_str(&text).map_err(|e| Error::prepare(path, e.line(), format!("invalid JSON: {e}")))?;
    let items = items.as_array().ok_or_else(|| Error::prepare(path, 0, "not a JSON list of questions"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = i + 1;
        let item_error = |reason: String| Error::prepare(path, 0, format!("question {at} of the list: {reason}"));
        let wrap = |e: Error| match e {
            Error::Prepare { reason, .. } => item_error(reason),
            e => e,
        };
        if english_only && field(item, "q_lang", path, at).map_err(wrap)? != &Value::String("en".into()) {
            dropped.non_english += 1;
            continue;
        }
        let image = str_field(item, image_key, path, at).map_err(wrap)?;
        let qid = field(item, "qid", path, at).map_err(wrap)?;
        let qid = qid.as_i64().ok_or_else(|| item_error(format!("qid {qid} is not an integer")))?;
        let answer = str_of(field(item, "answer", path, at).map_err(wrap)?).map_err(|r| item_error(format!("answer: {r}")))?;
        out.push(VqaSample {
            img_path: path_join(image_root, image),
            qid,
            question: str_field(item, "question", path, at).map_err(wrap)?.to_string(),
            answer,
            answer_type: str_field(item, "answer_type", path, at).map_err(wrap)?.to_string(),
            source: path.to_path_buf(),
            at,
        });
    }
    Ok(out)
}

/// A VQA-Med 2019 split: its three category files' lines, numbered from `offset`.
fn medvqa_samples(ctx: &Ctx, split: &str, offset: i64) -> Result<Vec<VqaSample>> {
    let image_root = format!("data/finetune_data/medvqa_2019/{split}/images");
    let mut out = Vec::new();
    for file in MEDVQA_CATEGORIES {
        let path = ctx.raw(&format!("data/finetune_data/medvqa_2019//{split}/QA/{file}"));
        let text = read_text(&path)?;
        for (at, line) in stripped_lines(&text) {
            let parts: Vec<&str> = line.split('|').collect();
            if parts.len() < 3 {
                return Err(Error::prepare(&path, at, "expected `image|question|answer`"));
            }
            out.push(VqaSample {
                img_path: path_join(&image_root, &format!("{}.jpg", parts[0])),
                qid: offset + out.len() as i64,
                question: parts[1].to_string(),
                answer: parts[2].to_string(),
                answer_type: "OPEN".into(),
                source: path.clone(),
                at,
            });
        }
    }
    Ok(out)
}
