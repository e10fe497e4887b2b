//! Upstream's datasets (`m3ae/datasets/*.py`) over their Arrow files: one sample per
//! (image, caption) or (image, question) pair.
use std::path::Path;

use super::arrow::ArrowFile;
use crate::{Error, Result};

/// The five upstream dataset families, recognised from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// `roco_*`, `medicat_*`: image, caption, image_id, split.
    Pretrain,
    /// `vqa_{vqa_rad,slack,medvqa_2019}_*`: questions with answer labels and scores.
    Vqa,
    /// `cls_melinda_*`: captions with the i_meth / p_meth labels.
    Cls,
    /// `irtr_roco_*`: image-text retrieval, same columns as pre-training.
    Irtr,
}

/// Dataset names (file stems without the split) of each kind, as upstream writes them.
pub const DATASET_NAMES: [(&str, DatasetKind); 7] = [
    ("roco", DatasetKind::Pretrain),
    ("medicat", DatasetKind::Pretrain),
    ("vqa_vqa_rad", DatasetKind::Vqa),
    ("vqa_slack", DatasetKind::Vqa),
    ("vqa_medvqa_2019", DatasetKind::Vqa),
    ("cls_melinda", DatasetKind::Cls),
    ("irtr_roco", DatasetKind::Irtr),
];

/// The splits upstream writes.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

impl DatasetKind {
    /// The kind of a file stem such as `vqa_slack_train`.
    pub fn of_stem(stem: &str) -> Option<DatasetKind> {
        DATASET_NAMES.iter().find_map(|&(name, kind)| {
            let split = stem.strip_prefix(name)?.strip_prefix('_')?;
            SPLITS.contains(&split).then_some(kind)
        })
    }

    /// The text column: `questions` for VQA, `caption` otherwise.
    pub fn text_column(self) -> &'static str {
        if self == DatasetKind::Vqa { "questions" } else { "caption" }
    }
}

/// One VQA question's targets.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaAnswer {
    /// Answer class ids.
    pub labels: Vec<i64>,
    /// Soft score of each label.
    pub scores: Vec<f64>,
    /// 0 closed, 1 open.
    pub answer_type: i64,
}

/// An Arrow dataset file with its sample index.
pub struct Dataset {
    /// Family, from the file name.
    pub kind: DatasetKind,
    /// File stem, e.g. `roco_train`.
    pub name: String,
    /// The table.
    pub table: ArrowFile,
    /// Texts (captions or questions) of each row.
    pub texts: Vec<Vec<String>>,
    /// `(row, text index)` of each sample.
    pub index: Vec<(usize, usize)>,
    /// VQA targets per row and question (VQA only).
    pub vqa: Vec<Vec<VqaAnswer>>,
    /// Class label per row and caption (classification only).
    pub cls_labels: Vec<Vec<i64>>,
}

/// Several datasets read as one, in order (upstream's multitask datamodule concatenates
/// `datasets`, e.g. medicat and roco for pre-training). Sample `i` of the list is sample
/// `i − start` of the dataset it falls in.
pub struct DatasetList {
    pub sets: Vec<Dataset>,
    starts: Vec<usize>,
}

impl DatasetList {
    pub fn new(sets: Vec<Dataset>) -> Self {
        let mut starts = Vec::with_capacity(sets.len());
        let mut n = 0;
        for s in &sets {
            starts.push(n);
            n += s.len();
        }
        DatasetList { sets, starts }
    }

    /// Samples in all datasets.
    pub fn len(&self) -> usize {
        self.sets.iter().map(Dataset::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset holding sample `i`, and the sample's index in it.
    pub fn locate(&self, i: usize) -> (&Dataset, usize) {
        let k = self.starts.partition_point(|&s| s <= i).saturating_sub(1);
        (&self.sets[k], i - self.starts[k])
    }
}

impl From<Dataset> for DatasetList {
    fn from(d: Dataset) -> Self {
        DatasetList::new(vec![d])
    }
}

impl From<Dataset> for std::sync::Arc<DatasetList> {
    fn from(d: Dataset) -> Self {
        std::sync::Arc::new(d.into())
    }
}

/// Converts a float read from Arrow to an integer label, refusing fractions.
fn label(file: &ArrowFile, column: &str, row: usize, v: f64) -> Result<i64> {
    if v.fract() != 0.0 || v < 0.0 {
        return Err(file.error(column, format!("row {row}: label {v} is not a non-negative integer")));
    }
    Ok(v as i64)
}

impl Dataset {
    /// Opens an upstream Arrow file; `label_column` picks MELINDA's label (`p_meth_label` in
    /// the paper). The kind comes from the file name.
    pub fn open(path: &Path, label_column: &str) -> Result<Dataset> {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let kind = DatasetKind::of_stem(&name).ok_or_else(|| Error::Dataset {
            path: path.to_path_buf(),
            column: "*".into(),
            reason: "file name is not one of upstream's `<dataset>_<split>.arrow`".into(),
        })?;
        let table = ArrowFile::open(path)?;
        table.check_binary("image")?;
        for column in ["image_id", "split"] {
            table.data_type(column)?;
        }
        let texts = table.string_lists(kind.text_column())?;
        let rows_of = |n: usize, column: &str| -> Result<()> {
            if n != table.num_rows() {
                return Err(table.error(column, format!("{n} rows, table has {}", table.num_rows())));
            }
            Ok(())
        };
        rows_of(texts.len(), kind.text_column())?;
        let vqa = if kind == DatasetKind::Vqa { read_vqa(&table, &texts)? } else { Vec::new() };
        let cls_labels = if kind == DatasetKind::Cls {
            for column in ["i_meth", "p_meth", "i_meth_label", "p_meth_label"] {
                table.data_type(column)?;
            }
            let lists = table.number_lists(label_column)?;
            rows_of(lists.len(), label_column)?;
            let mut labels = Vec::with_capacity(lists.len());
            for (row, (values, caps)) in lists.iter().zip(&texts).enumerate() {
                if values.len() != caps.len() {
                    return Err(table.error(label_column, format!("row {row}: {} labels for {} captions", values.len(), caps.len())));
                }
                labels.push(values.iter().map(|&v| label(&table, label_column, row, v)).collect::<Result<Vec<_>>>()?);
            }
            labels
        } else {
            Vec::new()
        };
        let index = texts.iter().enumerate().flat_map(|(row, t)| (0..t.len()).map(move |j| (row, j))).collect();
        Ok(Dataset { kind, name, table, texts, index, vqa, cls_labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The text of sample `i`.
    pub fn text(&self, i: usize) -> &str {
        let (row, j) = self.index[i];
        &self.texts[row][j]
    }

    /// The encoded image of table row `row`.
    pub fn image_bytes(&self, row: usize) -> Result<&[u8]> {
        self.table.binary("image", row)
    }

    /// Checks every label against `size` classes (`key` names the config key that sets it):
    /// VQA answer labels, or class labels. An error names the file, the row and the label.
    pub fn check_labels(&self, size: i64, key: &str) -> Result<()> {
        let rows: Vec<(usize, i64)> = match self.kind {
            DatasetKind::Vqa => self.vqa.iter().enumerate().flat_map(|(r, qs)| qs.iter().flat_map(move |a| a.labels.iter().map(move |&l| (r, l)))).collect(),
            DatasetKind::Cls => self.cls_labels.iter().enumerate().flat_map(|(r, ls)| ls.iter().map(move |&l| (r, l))).collect(),
            _ => return Ok(()),
        };
        match rows.into_iter().find(|&(_, l)| l < 0 || l >= size) {
            Some((row, label)) => Err(self.table.error(
                if self.kind == DatasetKind::Vqa { "answer_labels" } else { "label" },
                format!("row {row}: label {label} is outside the {size} classes of `{key}`"),
            )),
            None => Ok(()),
        }
    }

    /// Smallest and largest label: answer labels for VQA, class labels for classification.
    pub fn label_range(&self) -> Option<(i64, i64)> {
        let labels: Vec<i64> = match self.kind {
            DatasetKind::Vqa => self.vqa.iter().flatten().flat_map(|a| a.labels.iter().copied()).collect(),
            DatasetKind::Cls => self.cls_labels.iter().flatten().copied().collect(),
            _ => return None,
        };
        Some((*labels.iter().min()?, *labels.iter().max()?))
    }
}

/// VQA targets, checked against the questions: one entry per question in every column.
fn read_vqa(table: &ArrowFile, questions: &[Vec<String>]) -> Result<Vec<Vec<VqaAnswer>>> {
    table.data_type("answers")?;
    table.data_type("question_id")?;
    let labels = table.number_list_lists("answer_labels")?;
    let scores = table.number_list_lists("answer_scores")?;
    let types = table.number_lists("answer_type")?;
    let mut out = Vec::with_capacity(questions.len());
    for (row, qs) in questions.iter().enumerate() {
        let n = qs.len();
        let (l, s, t) = (&labels[row], &scores[row], &types[row]);
        for (column, len) in [("answer_labels", l.len()), ("answer_scores", s.len()), ("answer_type", t.len())] {
            if len != n {
                return Err(table.error(column, format!("row {row}: {len} entries for {n} questions")));
            }
        }
        let mut answers = Vec::with_capacity(n);
        for q in 0..n {
            if l[q].len() != s[q].len() {
                return Err(table.error("answer_scores", format!("row {row}, question {q}: {} scores for {} labels", s[q].len(), l[q].len())));
            }
            answers.push(VqaAnswer {
                labels: l[q].iter().map(|&v| label(table, "answer_labels", row, v)).collect::<Result<_>>()?,
                scores: s[q].clone(),
                answer_type: label(table, "answer_type", row, t[q])?,
            });
        }
        out.push(answers);
    }
    Ok(out)
}
