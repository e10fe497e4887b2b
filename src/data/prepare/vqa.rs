//! Upstream's `make_arrow_vqa`: the answer vocabulary and the VQA Arrow files.
//!
//! - Every answer is `normalize_word(str(answer).lower())`; `ans2label` numbers the distinct
//!   ones in first-seen order over train, then val, then test (images missing or not).
//! - Questions are keyed by image path, then by `qid`: an image keeps the position of its first
//!   question, a repeated `(image, qid)` keeps its first position, the *last* question text and
//!   the *first* answer (upstream's dict overwrite, then `qa[1]`).
//! - Answer types are `answer_type.strip().lower()`, `closed` (0) or `open` (1).
//! - `label2ans` goes to `<dataset>_answers.json`, which `m3ae predict` names answers with.
use std::collections::HashMap;
use std::path::PathBuf;

use super::captions::{group, locate};
use super::glossary::normalize_word;
use super::python::strip;
use super::{Ctx, Dropped, FileSummary, PerSplit, PrepareReport};
use crate::data::arrow_write::{Flavor, TableWriter, VqaRow};
use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// One of upstream's `{"img_path", "qid", "question", "answer", "answer_type"}` samples, with
/// where it was read (for errors).
#[derive(Debug, Clone)]
pub struct VqaSample {
    /// The image path as upstream forms it (`data/…`).
    pub img_path: String,
    /// Question id.
    pub qid: i64,
    /// The question.
    pub question: String,
    /// `str(answer)`.
    pub answer: String,
    /// The raw answer type (`CLOSED`, ` open`, …).
    pub answer_type: String,
    /// The file it came from.
    pub source: PathBuf,
    /// Its line (text files) or item number (JSON lists, from 1).
    pub at: usize,
}

/// The answer vocabulary file of a VQA dataset.
pub fn answers_file_name(dataset: &str) -> String {
    format!("{dataset}_answers.json")
}

/// `answer_type.strip().lower()` as upstream's 0 (closed) or 1 (open).
fn answer_type(q: &VqaSample) -> Result<i64> {
    match strip(&q.answer_type).to_lowercase().as_str() {
        "closed" => Ok(0),
        "open" => Ok(1),
        _ => Err(Error::prepare(&q.source, q.at, format!("answer_type `{}` is neither closed nor open", q.answer_type))),
    }
}

/// One image's questions: qid → (last question text, first answer's label and type).
struct Image {
    qids: Vec<i64>,
    entries: HashMap<i64, (String, (i64, i64))>,
}

/// `make_arrow_vqa(data, dataset_name, …)`: the three Arrow files and the answers file.
pub fn make_arrow_vqa(ctx: &Ctx, dataset: &str, data: PerSplit<Vec<VqaSample>>, dropped: PerSplit<Dropped>, report: &mut PrepareReport) -> Result<()> {
    let mut label2ans: Vec<String> = Vec::new();
    let mut ans2label: HashMap<String, i64> = HashMap::new();
    let mut labels: PerSplit<Vec<i64>> = Default::default();
    for (s, questions) in data.iter().enumerate() {
        for q in questions {
            let a = normalize_word(&q.answer.to_lowercase());
            let next = label2ans.len() as i64;
            let label = *ans2label.entry(a.clone()).or_insert_with(|| {
                label2ans.push(a);
                next
            });
            labels[s].push(label);
        }
    }
    let sources: Vec<PathBuf> = data.iter().map(|d| d.first().map(|q| q.source.clone()).unwrap_or_default()).collect();
    for (s, (questions, labels)) in data.into_iter().zip(labels).enumerate() {
        let typed: Vec<(VqaSample, i64, i64)> = questions.into_iter().zip(labels).map(|(q, l)| answer_type(&q).map(|t| (q, l, t))).collect::<Result<_>>()?;
        let mut per_split: PerSplit<Vec<(VqaSample, i64, i64)>> = Default::default();
        per_split[s] = typed;
        let groups = group(per_split, |(q, _, _)| q.img_path.as_str());
        let (mut found, missing) = locate(ctx, groups, &sources[s])?;
        let found = std::mem::take(&mut found[s]);
        let missing = missing[s].clone();
        let images: Vec<Image> = found
            .iter()
            .map(|(g, _)| {
                let mut im = Image { qids: Vec::new(), entries: HashMap::new() };
                for (q, label, t) in &g.samples {
                    match im.entries.get_mut(&q.qid) {
                        Some(e) => e.0 = q.question.clone(),
                        None => {
                            im.qids.push(q.qid);
                            im.entries.insert(q.qid, (q.question.clone(), (*label, *t)));
                        }
                    }
                }
                im
            })
            .collect();
        let files: Vec<PathBuf> = found.iter().map(|(_, f)| f.clone()).collect();
        let ids: Vec<String> = found.iter().map(|(g, _)| g.img_path.clone()).collect();
        let path = ctx.out(&format!("{dataset}_{}.arrow", SPLITS[s]));
        let texts = images.iter().map(|im| im.qids.len()).sum();
        let mut writer = TableWriter::vqa(&path, files.len(), Flavor::PANDAS3)?;
        let make = |i: usize, image: Vec<u8>| {
            let im = &images[i];
            let entry = |qid: &i64| &im.entries[qid];
            let first = |qid: &i64| entry(qid).1;
            VqaRow {
                image,
                questions: im.qids.iter().map(|q| entry(q).0.clone()).collect(),
                answers: im.qids.iter().map(|q| vec![label2ans[first(q).0 as usize].clone()]).collect(),
                answer_labels: im.qids.iter().map(|q| vec![first(q).0]).collect(),
                answer_scores: im.qids.iter().map(|_| vec![1.0]).collect(),
                image_id: ids[i].clone(),
                question_id: im.qids.clone(),
                answer_type: im.qids.iter().map(|q| first(q).1).collect(),
                split: SPLITS[s].to_string(),
            }
        };
        ctx.write_in_batches(&files, &format!("{dataset}_{}", SPLITS[s]), make, |rows| writer.write_vqa(rows))?;
        writer.finish()?;
        report.files.push(FileSummary { path, rows: files.len(), texts, missing, dropped: dropped[s].clone() });
    }
    let answers = ctx.out(&answers_file_name(dataset));
    crate::config::keys::write_json(&answers, &label2ans)?;
    report.answers.push((answers, label2ans.len()));
    Ok(())
}
