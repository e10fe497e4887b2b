//! The VQA answer vocabulary: label id → answer text (upstream's `label2ans`, which
//! `prepro/make_arrow.py` builds and the Arrow files only hold row by row).
//!
//! On disk it is `answers.json`, a JSON list whose index is the label (`null` for a label the
//! data never shows). Fine-tuning copies it into each checkpoint folder, so `m3ae predict`
//! names its answers. Where it comes from, first found:
//! 1. `{data_root}/{dataset}_answers.json` of the run's VQA dataset (`m3ae data prepare`
//!    writes one beside each VQA set);
//! 2. `{data_root}/answers.json` (the demo's generated data ships one);
//! 3. the VQA Arrow files' `answers` and `answer_labels` columns (train first, then val and
//!    test), which upstream writes side by side for every question.
use std::path::{Path, PathBuf};

use crate::config::M3aeConfig;
use crate::data::arrow::ArrowFile;
use crate::data::dataset::{DatasetKind, SPLITS};
use crate::error::{Error, Result};

/// The vocabulary's file name, in a data folder and in a model folder.
pub const ANSWERS_FILE: &str = "answers.json";

/// Label id → answer text; `None` for a label whose answer is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerVocab {
    /// Index = label.
    pub answers: Vec<Option<String>>,
}

impl AnswerVocab {
    /// The answer of `label`, when known.
    pub fn get(&self, label: i64) -> Option<&str> {
        usize::try_from(label).ok().and_then(|i| self.answers.get(i)).and_then(|a| a.as_deref())
    }

    /// Reads an `answers.json`: a JSON list of strings (or `null`), index = label.
    pub fn read(path: &Path) -> Result<AnswerVocab> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let answers: Vec<Option<String>> = serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })?;
        Ok(AnswerVocab { answers })
    }

    /// Writes it as `answers.json` at `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::config::keys::write_json(path, &self.answers)
    }

    /// Label → answer read off upstream VQA Arrow files, in order: the first answer seen for
    /// a label wins; two different answers for one label is an error naming the file and row.
    /// `None` when no file has both columns.
    pub fn from_arrow_files(files: &[PathBuf]) -> Result<Option<AnswerVocab>> {
        let mut answers: Vec<Option<String>> = Vec::new();
        let mut any = false;
        for path in files {
            let table = ArrowFile::open(path)?;
            if table.data_type("answers").is_err() || table.data_type("answer_labels").is_err() {
                log::info!("{}: no `answers` + `answer_labels` columns to read the answer vocabulary from", path.display());
                continue;
            }
            any = true;
            let texts = table.string_list_lists("answers")?;
            let labels = table.number_list_lists("answer_labels")?;
            for (row, (texts, labels)) in texts.iter().zip(&labels).enumerate() {
                for (q, (texts, labels)) in texts.iter().zip(labels).enumerate() {
                    if texts.len() != labels.len() {
                        return Err(table.error("answers", format!("row {row}, question {q}: {} answers for {} labels", texts.len(), labels.len())));
                    }
                    for (text, &label) in texts.iter().zip(labels) {
                        if label.fract() != 0.0 || !(0.0..1e7).contains(&label) {
                            return Err(table.error("answer_labels", format!("row {row}, question {q}: label {label} is not a label id")));
                        }
                        let i = label as usize;
                        if answers.len() <= i {
                            answers.resize(i + 1, None);
                        }
                        match &answers[i] {
                            None => answers[i] = Some(text.clone()),
                            Some(seen) if seen != text => {
                                return Err(table.error("answers", format!("row {row}, question {q}: label {i} is `{text}` here but `{seen}` earlier")));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        Ok(any.then_some(AnswerVocab { answers }))
    }

    /// The vocabulary of a VQA run's data (see the module doc); `None` when the config is not
    /// VQA or neither source exists.
    pub fn for_config(config: &M3aeConfig) -> Result<Option<AnswerVocab>> {
        if config.loss_names.vqa <= 0.0 {
            return Ok(None);
        }
        for d in &config.datasets {
            let prepared = Path::new(&config.data_root).join(format!("{d}_{ANSWERS_FILE}"));
            if DatasetKind::of_stem(&format!("{d}_train")) == Some(DatasetKind::Vqa) && prepared.is_file() {
                return Self::read(&prepared).map(Some);
            }
        }
        let shipped = Path::new(&config.data_root).join(ANSWERS_FILE);
        if shipped.is_file() {
            return Self::read(&shipped).map(Some);
        }
        let mut files = Vec::new();
        for split in SPLITS {
            for d in &config.datasets {
                let path = Path::new(&config.data_root).join(format!("{d}_{split}.arrow"));
                if DatasetKind::of_stem(&format!("{d}_{split}")) == Some(DatasetKind::Vqa) && path.is_file() {
                    files.push(path);
                }
            }
        }
        Self::from_arrow_files(&files)
    }
}

/// Puts the run's answer vocabulary at `checkpoints_dir/answers.json`, from where every
/// checkpoint saved afterwards copies it ([`crate::train::state::save`]); removes a stale one
/// when the run has none. Called once when a run starts.
pub fn stage_for_checkpoints(config: &M3aeConfig, checkpoints_dir: &Path) -> Result<()> {
    let path = checkpoints_dir.join(ANSWERS_FILE);
    match AnswerVocab::for_config(config)? {
        Some(vocab) => {
            std::fs::create_dir_all(checkpoints_dir).map_err(|e| Error::io(checkpoints_dir, e))?;
            let unknown = vocab.answers.iter().filter(|a| a.is_none()).count();
            log::info!("answer vocabulary: {} labels ({unknown} never seen in the data), saved with each checkpoint", vocab.answers.len());
            vocab.write(&path)
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        },
    }
}
