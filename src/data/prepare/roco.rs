//! ROCO: upstream's `prepro_roco` (pre-training: MedICaT's ROCO reference texts, then the
//! captions) and `prepro_irtr_roco` (retrieval: the captions, shuffled, val and test capped).
use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::captions::{make_arrow, CaptionSample};
use super::python::{collapse_ws, lines, path_join, read_text, strip, stripped_lines, word_count};
use super::pyrandom::PyRandom;
use super::{Ctx, Dropped, PerSplit, PrepareReport};
use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// Upstream's `min_length`: texts of fewer words are dropped.
pub const MIN_LENGTH: usize = 3;
/// `irtr_roco` keeps at most this many val and test annotations.
pub const IRTR_CAP: usize = 2000;

const ROCO_ROOT: &str = "data/pretrain_data/roco";
const MEDICAT_ROCO_FILES: &str = "data/pretrain_data/medicat/net/nfs2.corp/allennlp/sanjays/roco_files";

fn image_root(split: &str) -> String {
    format!("{ROCO_ROOT}/{split}/radiology/images/")
}

/// `[re.sub(r"\s+", " ", text.strip()) …]` (without the strip for `irtr_roco`) then the
/// `min_length` filter; counts what the filter drops.
pub fn clean(texts: impl IntoIterator<Item = String>, strip_first: bool, dropped: &mut Dropped) -> Vec<String> {
    texts
        .into_iter()
        .map(|t| collapse_ws(if strip_first { strip(&t) } else { &t }))
        .filter(|t| {
            let keep = word_count(t) >= MIN_LENGTH;
            dropped.short_texts += usize::from(!keep);
            keep
        })
        .collect()
}

/// The lines of a JSONL file as upstream reads them (`read().strip().split("\n")`, then
/// `json.loads` each), with their line numbers.
pub fn jsonl(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = read_text(path)?;
    stripped_lines(&text)
        .map(|(n, l)| serde_json::from_str(l).map(|v| (n, v)).map_err(|e| Error::prepare(path, n, format!("invalid JSON: {e}"))))
        .collect()
}

/// A JSON object's field, or an error naming it.
pub fn field<'a>(v: &'a Value, key: &str, path: &Path, line: usize) -> Result<&'a Value> {
    v.as_object().ok_or_else(|| Error::prepare(path, line, "not a JSON object"))?.get(key).ok_or_else(|| Error::prepare(path, line, format!("field `{key}` is missing")))
}

/// A string field.
pub fn str_field<'a>(v: &'a Value, key: &str, path: &Path, line: usize) -> Result<&'a str> {
    field(v, key, path, line)?.as_str().ok_or_else(|| Error::prepare(path, line, format!("field `{key}` is not a string")))
}

/// A list of strings at `key` when present, not null and non-empty (upstream's guard), else none.
pub fn optional_texts(v: &Value, key: &str, path: &Path, line: usize) -> Result<Vec<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string).ok_or_else(|| Error::prepare(path, line, format!("`{key}` holds a non-string: {t}"))))
            .collect(),
        Some(other) => Err(Error::prepare(path, line, format!("`{key}` is not a list of strings: {other}"))),
    }
}

/// `dlinks.txt` of every split: `<pdf id>_<figure file>` → ROCO id, as upstream keys it
/// (`line.split('\t')[1].split(' ')[2]`'s last path part before its first `.`).
fn medicat2roco(ctx: &Ctx) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for split in SPLITS {
        let path = ctx.raw(&format!("{ROCO_ROOT}/{split}/radiology/dlinks.txt"));
        let text = read_text(&path)?;
        for (n, line) in lines(&text) {
            let parts: Vec<&str> = strip(line).split('\t').collect();
            let url = parts.get(1).and_then(|p| p.split(' ').nth(2)).ok_or_else(|| {
                Error::prepare(&path, n, "expected `ROCO id<TAB> <cmd> <url> …<TAB>figure`: no third space-separated word in the second field")
            })?;
            let pdf = url.rsplit('/').next().unwrap_or(url).split('.').next().unwrap_or("");
            let figure = parts[parts.len() - 1];
            map.insert(format!("{pdf}_{figure}"), parts[0].to_string());
        }
    }
    Ok(map)
}

/// `prepro_roco`: `roco_{train,val,test}.arrow`.
pub fn prepare_roco(ctx: &Ctx, report: &mut PrepareReport) -> Result<()> {
    let mut data: PerSplit<Vec<CaptionSample>> = Default::default();
    let mut dropped: PerSplit<Dropped> = Default::default();
    let ids = medicat2roco(ctx)?;
    for (s, split) in SPLITS.iter().enumerate() {
        let path = ctx.raw(&format!("{MEDICAT_ROCO_FILES}/roco_{split}_references.jsonl"));
        for (line, sample) in jsonl(&path)? {
            let id = str_field(&sample, "roco_image_id", &path, line)?;
            let roco = ids.get(id).ok_or_else(|| Error::prepare(&path, line, format!("roco_image_id `{id}` is in no roco/*/radiology/dlinks.txt")))?;
            let img_path = path_join(&image_root(split), &format!("{roco}.jpg"));
            let texts = clean(optional_texts(&sample, "gorc_references", &path, line)?, true, &mut dropped[s]);
            if !texts.is_empty() {
                data[s].push(CaptionSample { img_path, texts });
            }
        }
    }
    let mut source = ctx.raw(ROCO_ROOT);
    for (s, split) in SPLITS.iter().enumerate() {
        source = ctx.raw(&format!("{ROCO_ROOT}/{split}/radiology/captions.txt"));
        let text = read_text(&source)?;
        for (_, line) in lines(&text) {
            if let Some(sample) = caption_line(line, split, true, &mut dropped[s]) {
                data[s].push(sample);
            }
        }
    }
    make_arrow(ctx, "roco", data, dropped, &source, report)
}

/// One `captions.txt` line (`ROCO id<TAB>caption`), or none when upstream skips it.
fn caption_line(line: &str, split: &str, strip_first: bool, dropped: &mut Dropped) -> Option<CaptionSample> {
    let parts: Vec<&str> = strip(line).split('\t').collect();
    if parts.len() != 2 {
        dropped.skipped_lines += usize::from(!strip(line).is_empty());
        return None;
    }
    let texts = clean([parts[1].to_string()], strip_first, dropped);
    let img_path = path_join(&image_root(split), &format!("{}.jpg", parts[0]));
    (!texts.is_empty()).then_some(CaptionSample { img_path, texts })
}

/// `prepro_irtr_roco`: `irtr_roco_{train,val,test}.arrow`. `random.seed(42)` once, then each
/// split's caption lines shuffled with the generator's state carried on; val and test stop at
/// [`IRTR_CAP`] annotations that pass the length filter.
pub fn prepare_irtr(ctx: &Ctx, report: &mut PrepareReport) -> Result<()> {
    let mut rng = PyRandom::seed(42);
    let mut data: PerSplit<Vec<CaptionSample>> = Default::default();
    let mut dropped: PerSplit<Dropped> = Default::default();
    let mut source = ctx.raw(ROCO_ROOT);
    for (s, split) in SPLITS.iter().enumerate() {
        source = ctx.raw(&format!("{ROCO_ROOT}/{split}/radiology/captions.txt"));
        let text = read_text(&source)?;
        let mut shuffled: Vec<&str> = strip(&text).split('\n').collect();
        rng.shuffle(&mut shuffled);
        for line in shuffled {
            if let Some(sample) = caption_line(line, split, false, &mut dropped[s]) {
                data[s].push(sample);
                if s > 0 && data[s].len() == IRTR_CAP {
                    break;
                }
            }
        }
    }
    make_arrow(ctx, "irtr_roco", data, dropped, &source, report)
}
