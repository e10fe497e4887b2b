//! `m3ae data check`: finds upstream's Arrow files under a data root, checks their schemas and
//! decodes every image in parallel.
use std::fmt::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::dataset::{Dataset, DatasetKind, DATASET_NAMES, SPLITS};
use super::image_io::decode_rgba;
use crate::{Error, Result};

/// MELINDA label column whose range is reported (the paper's).
const CLS_LABEL_COLUMN: &str = "p_meth_label";

/// The outcome of checking one readable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its family.
    pub kind: DatasetKind,
    /// Table rows (one image each).
    pub images: usize,
    /// Samples (image, text) pairs.
    pub samples: usize,
    /// Rows whose image does not decode, with the reason.
    pub unreadable: Vec<(usize, String)>,
    /// Smallest and largest label, where the kind has labels.
    pub label_range: Option<(i64, i64)>,
}

/// The outcome of checking a data root.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Files that passed the schema check.
    pub files: Vec<FileReport>,
    /// Files that failed to open or failed the schema check, with the error.
    pub schema_errors: Vec<(PathBuf, String)>,
}

/// Upstream's Arrow files present under `root`, for every split, restricted to `datasets`
/// (names such as `roco` or `vqa_slack`) when non-empty.
pub fn find_files(root: &Path, datasets: &[String]) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(Error::io(root, std::io::Error::new(std::io::ErrorKind::NotFound, "data root is not a directory")));
    }
    for name in datasets {
        if !DATASET_NAMES.iter().any(|&(known, _)| known == name) {
            let known: Vec<&str> = DATASET_NAMES.iter().map(|&(n, _)| n).collect();
            return Err(Error::Config(format!("unknown dataset `{name}`; known: {}", known.join(", "))));
        }
    }
    let mut files = Vec::new();
    for &(name, _) in &DATASET_NAMES {
        if !datasets.is_empty() && !datasets.iter().any(|d| d == name) {
            continue;
        }
        for split in SPLITS {
            let path = root.join(format!("{name}_{split}.arrow"));
            if path.is_file() {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Images decoded between two releases of the file's pages.
const RELEASE_EVERY: usize = 256;

/// Opens `path` with the schema checks of [`Dataset::open`] and decodes every image.
pub fn check_file(path: &Path) -> Result<FileReport> {
    let dataset = Dataset::open(path, CLS_LABEL_COLUMN)?;
    let rows = dataset.table.num_rows();
    let bar = ProgressBar::new(rows as u64).with_message(path.display().to_string());
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} images ({per_sec})") {
        bar.set_style(style);
    }
    // in chunks, each followed by dropping the file's pages: the RSS stays flat however large the file
    let mut unreadable: Vec<(usize, String)> = Vec::new();
    for start in (0..rows).step_by(RELEASE_EVERY) {
        let chunk: Vec<(usize, String)> = (start..rows.min(start + RELEASE_EVERY))
            .into_par_iter()
            .filter_map(|row| {
                let name = format!("{}, row {row}", path.display());
                let result = dataset.image_bytes(row).and_then(|bytes| decode_rgba(bytes, &name));
                bar.inc(1);
                result.err().map(|e| (row, e.to_string()))
            })
            .collect();
        unreadable.extend(chunk);
        dataset.table.release_pages();
    }
    bar.finish_and_clear();
    unreadable.sort();
    Ok(FileReport {
        path: path.to_path_buf(),
        kind: dataset.kind,
        images: rows,
        samples: dataset.len(),
        unreadable,
        label_range: dataset.label_range(),
    })
}

/// Checks every file [`find_files`] returns; a root without any is an error naming it.
pub fn check(root: &Path, datasets: &[String]) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let files = find_files(root, datasets)?;
    if files.is_empty() {
        let which = if datasets.is_empty() { String::new() } else { format!(" of {}", datasets.join(", ")) };
        return Err(Error::Config(format!("{}: no upstream Arrow files{which} (<dataset>_<split>.arrow, such as roco_train.arrow)", root.display())));
    }
    for path in files {
        match check_file(&path) {
            Ok(file) => report.files.push(file),
            Err(e @ (Error::Dataset { .. } | Error::Io { .. })) => report.schema_errors.push((path, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

impl CheckReport {
    /// False on any schema error, and with `strict` on any unreadable image.
    pub fn passed(&self, strict: bool) -> bool {
        self.schema_errors.is_empty() && !(strict && self.files.iter().any(|f| !f.unreadable.is_empty()))
    }

    /// A text table: one line per file, then the unreadable rows and schema errors.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<28} {:>8} {:>8} {:>10} {:>14}", "file", "images", "samples", "unreadable", "labels");
        for f in &self.files {
            let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let labels = f.label_range.map(|(lo, hi)| format!("{lo}..={hi}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "{name:<28} {:>8} {:>8} {:>10} {labels:>14}", f.images, f.samples, f.unreadable.len());
            for (row, reason) in &f.unreadable {
                let _ = writeln!(out, "  unreadable row {row}: {reason}");
            }
        }
        for (_, error) in &self.schema_errors {
            let _ = writeln!(out, "schema error: {error}");
        }
        out
    }
}
