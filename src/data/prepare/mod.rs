//! `m3ae data prepare`: upstream's raw dataset releases to the Arrow files its
//! `prepro/prepro_{pretraining,finetuning}_data.py` write, row for row.
//!
//! Each dataset family has its reader ([`roco`]: ROCO pre-training and `irtr_roco`;
//! [`medicat`]; [`vqa_sources`]: VQA-RAD, SLAKE, VQA-Med 2019; [`melinda`]), which turns the
//! raw files into upstream's in-memory samples, and one of upstream's `make_arrow*` writers
//! ([`captions`], [`vqa`], [`melinda`]) groups them by image and writes them. Python's
//! behaviour that the output depends on is in [`python`] (string semantics), [`pyrandom`]
//! (the Mersenne Twister behind the shuffled splits) and [`glossary`] (answer normalisation).
//!
//! Beyond upstream: missing images are counted and listed instead of dropped silently, every
//! output file gets a summary, bad input is an error naming the file and line, images are read
//! in parallel a batch at a time, files are written atomically, and existing output is refused
//! without `force`.
pub mod captions;
pub mod csv;
pub mod glossary;
pub mod medicat;
pub mod melinda;
pub mod python;
pub mod pyrandom;
pub mod roco;
pub mod vqa;
pub mod vqa_sources;

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// The datasets upstream's prepro writes, in the order `all` prepares them.
pub const DATASETS: [&str; 7] = ["roco", "medicat", "vqa_vqa_rad", "vqa_slack", "vqa_medvqa_2019", "cls_melinda", "irtr_roco"];

/// Where upstream's prepro runs: every path it writes starts with this folder, which is
/// `--raw-root` here.
pub const UPSTREAM_ROOT: &str = "data/";

/// What to prepare and where.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The folder upstream calls `data/`.
    pub raw_root: PathBuf,
    /// Output folder of the Arrow files.
    pub out: PathBuf,
    /// Overwrite existing output files.
    pub force: bool,
    /// Images read (in parallel) before a record batch is written: bounds the memory.
    pub batch_images: usize,
    /// Show progress bars.
    pub progress: bool,
}

/// Per-split counts of what the readers dropped, before grouping by image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Texts under upstream's `min_length` words.
    pub short_texts: usize,
    /// Caption lines without exactly one tab (upstream skips them).
    pub skipped_lines: usize,
    /// SLAKE questions whose `q_lang` is not `en`.
    pub non_english: usize,
}

/// The summary of one written Arrow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Rows written (images found).
    pub rows: usize,
    /// Texts (captions or questions) in those rows.
    pub texts: usize,
    /// Images the annotations name for this split that do not exist (upstream's path strings).
    pub missing: Vec<String>,
    /// What the reader dropped for this split.
    pub dropped: Dropped,
}

/// What `prepare` wrote.
#[derive(Debug, Clone, Default)]
pub struct PrepareReport {
    /// One per Arrow file, in writing order.
    pub files: Vec<FileSummary>,
    /// `<dataset>_answers.json` files (upstream's `label2ans`), with their size.
    pub answers: Vec<(PathBuf, usize)>,
}

/// The datasets named on the command line, `all` expanded, in [`DATASETS`] order.
pub fn parse_datasets(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Err(Error::Config(format!("name at least one dataset: {} or all", DATASETS.join(", "))));
    }
    for n in names {
        if n != "all" && !DATASETS.contains(&n.as_str()) {
            return Err(Error::Config(format!("unknown dataset `{n}`; known: {}, all", DATASETS.join(", "))));
        }
    }
    Ok(DATASETS.iter().copied().filter(|d| names.iter().any(|n| n == "all" || n == d)).collect())
}

/// The files `dataset` writes into `out`.
pub fn outputs(dataset: &str, out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = SPLITS.iter().map(|s| out.join(format!("{dataset}_{s}.arrow"))).collect();
    if dataset.starts_with("vqa_") {
        files.push(out.join(vqa::answers_file_name(dataset)));
    }
    files
}

/// The list of an Arrow file's missing images: `<dataset>_<split>.missing.txt`, one path a line.
pub fn missing_list(arrow: &Path) -> PathBuf {
    arrow.with_extension("missing.txt")
}

/// Prepares `datasets` (names from [`DATASETS`]); writes each file's [`missing_list`] (and
/// removes a stale one).
pub fn prepare(datasets: &[&str], opts: &PrepareOptions) -> Result<PrepareReport> {
    if !opts.raw_root.is_dir() {
        return Err(Error::io(&opts.raw_root, std::io::Error::new(std::io::ErrorKind::NotFound, "raw root (upstream's `data/` folder) is not a directory")));
    }
    if !opts.force {
        let existing: Vec<String> = datasets.iter().flat_map(|d| outputs(d, &opts.out)).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
        if !existing.is_empty() {
            return Err(Error::Config(format!("output exists (pass --force to overwrite): {}", existing.join(", "))));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let ctx = Ctx { opts };
    let mut report = PrepareReport::default();
    for &d in datasets {
        log::info!("prepare: {d}");
        match d {
            "roco" => roco::prepare_roco(&ctx, &mut report)?,
            "irtr_roco" => roco::prepare_irtr(&ctx, &mut report)?,
            "medicat" => medicat::prepare(&ctx, &mut report)?,
            "vqa_vqa_rad" | "vqa_slack" | "vqa_medvqa_2019" => vqa_sources::prepare(&ctx, d, &mut report)?,
            "cls_melinda" => melinda::prepare(&ctx, &mut report)?,
            other => return Err(Error::Config(format!("unknown dataset `{other}`"))),
        }
    }
    for f in &report.files {
        let list = missing_list(&f.path);
        if f.missing.is_empty() {
            match std::fs::remove_file(&list) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&list, e)),
                _ => {}
            }
        } else {
            std::fs::write(&list, f.missing.join("\n") + "\n").map_err(|e| Error::io(&list, e))?;
        }
    }
    Ok(report)
}

/// What the readers and writers share: the options, path mapping and image reading.
pub struct Ctx<'a> {
    /// The options.
    pub opts: &'a PrepareOptions,
}

impl Ctx<'_> {
    /// A raw file named by upstream's path (`data/…`).
    pub fn raw(&self, upstream: &str) -> PathBuf {
        self.opts.raw_root.join(upstream.strip_prefix(UPSTREAM_ROOT).unwrap_or(upstream))
    }

    /// The file behind an image path string as upstream forms it; an error for a path outside
    /// `data/` (an absolute name in the annotations).
    pub fn image_file(&self, upstream: &str, source: &Path) -> Result<PathBuf> {
        match upstream.strip_prefix(UPSTREAM_ROOT) {
            Some(rest) => Ok(self.opts.raw_root.join(rest)),
            None => Err(Error::prepare(source, 0, format!("image path `{upstream}` is outside upstream's `data/` folder (an absolute image name?)"))),
        }
    }

    /// An output file.
    pub fn out(&self, name: &str) -> PathBuf {
        self.opts.out.join(name)
    }

    /// A progress bar over `n` images (hidden without `progress`).
    pub fn bar(&self, n: usize, what: &str) -> ProgressBar {
        if !self.opts.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(n as u64);
        if let Ok(style) = ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} images ({{per_sec}}, ETA {{eta}})")) {
            bar.set_style(style);
        }
        bar
    }

    /// Reads `files` in parallel, in order.
    pub fn read_images(&self, files: &[PathBuf], bar: &ProgressBar) -> Result<Vec<Vec<u8>>> {
        let out = files
            .par_iter()
            .map(|f| {
                let bytes = std::fs::read(f).map_err(|e| Error::io(f, e));
                bar.inc(1);
                bytes
            })
            .collect();
        out
    }

    /// Builds and writes a file's rows a batch of images at a time: `make(i, image)` builds row
    /// `i` of `files` once its image is read; `write` appends a batch.
    pub fn write_in_batches<R: Send>(
        &self,
        files: &[PathBuf],
        what: &str,
        make: impl Fn(usize, Vec<u8>) -> R,
        mut write: impl FnMut(&[R]) -> Result<()>,
    ) -> Result<()> {
        let bar = self.bar(files.len(), what);
        let step = self.opts.batch_images.max(1);
        for (b, chunk) in files.chunks(step).enumerate() {
            let images = self.read_images(chunk, &bar)?;
            let rows: Vec<R> = images.into_iter().enumerate().map(|(i, im)| make(b * step + i, im)).collect();
            write(&rows)?;
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// `[train, val, test]` of something.
pub type PerSplit<T> = [T; 3];

/// The index of a split name.
pub fn split_index(split: &str) -> usize {
    SPLITS.iter().position(|s| *s == split).unwrap_or(0)
}
