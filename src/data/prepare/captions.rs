//! Upstream's `make_arrow` (ROCO, MedICaT, `irtr_roco`) and the image grouping that
//! `make_arrow_melinda` shares with it.
//!
//! Samples are keyed by their image path: an image's texts are concatenated in the order the
//! samples come (train, then val, then test), it takes the split of its *last* sample, and it
//! keeps the position of its *first*. Images that do not exist are left out (and listed here).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Ctx, Dropped, FileSummary, PerSplit, PrepareReport};
use crate::data::arrow_write::{CaptionRow, Flavor, TableWriter};
use crate::data::dataset::SPLITS;
use crate::Result;

/// One of upstream's `{"img_path": …, "texts": […]}` samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionSample {
    /// The image path as upstream forms it (`data/…`).
    pub img_path: String,
    /// Texts, already normalised and filtered.
    pub texts: Vec<String>,
}

/// One image after grouping: its path, final split and samples in order.
pub struct Group<S> {
    /// Upstream's path string (the `image_id`).
    pub img_path: String,
    /// The split of its last sample.
    pub split: usize,
    /// Its samples, train first.
    pub samples: Vec<S>,
}

/// Groups samples by image path as upstream's `defaultdict`s do (first position, last split).
pub fn group<S>(data: PerSplit<Vec<S>>, key: impl Fn(&S) -> &str) -> Vec<Group<S>> {
    let mut groups: Vec<Group<S>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (split, samples) in data.into_iter().enumerate() {
        for s in samples {
            let k = key(&s).to_string();
            let i = *index.entry(k.clone()).or_insert_with(|| {
                groups.push(Group { img_path: k, split, samples: Vec::new() });
                groups.len() - 1
            });
            groups[i].split = split;
            groups[i].samples.push(s);
        }
    }
    groups
}

/// The groups whose image exists, per split (with their files), and the missing paths per split.
pub type Located<S> = (PerSplit<Vec<(Group<S>, PathBuf)>>, PerSplit<Vec<String>>);

/// Splits groups into found (with the image file) and missing, per final split.
pub fn locate<S>(ctx: &Ctx, groups: Vec<Group<S>>, source: &Path) -> Result<Located<S>> {
    let mut found: PerSplit<Vec<(Group<S>, PathBuf)>> = Default::default();
    let mut missing: PerSplit<Vec<String>> = Default::default();
    for g in groups {
        let file = ctx.image_file(&g.img_path, source)?;
        if file.exists() {
            found[g.split].push((g, file));
        } else {
            missing[g.split].push(g.img_path);
        }
    }
    Ok((found, missing))
}

/// `make_arrow(data, dataset_name, …)`: writes `<dataset>_<split>.arrow` for the three splits.
pub fn make_arrow(ctx: &Ctx, dataset: &str, data: PerSplit<Vec<CaptionSample>>, dropped: PerSplit<Dropped>, source: &Path, report: &mut PrepareReport) -> Result<()> {
    let groups = group(data, |s| s.img_path.as_str());
    let (found, missing) = locate(ctx, groups, source)?;
    for (split, ((rows, missing), dropped)) in found.into_iter().zip(missing).zip(dropped).enumerate() {
        let path = ctx.out(&format!("{dataset}_{}.arrow", SPLITS[split]));
        let (files, groups): (Vec<PathBuf>, Vec<Group<CaptionSample>>) = rows.into_iter().map(|(g, f)| (f, g)).unzip();
        let captions: Vec<Vec<String>> = groups.iter().map(|g| g.samples.iter().flat_map(|s| s.texts.iter().cloned()).collect()).collect();
        let texts = captions.iter().map(Vec::len).sum();
        let mut writer = TableWriter::captions(&path, files.len(), Flavor::PANDAS3)?;
        ctx.write_in_batches(
            &files,
            &format!("{dataset}_{}", SPLITS[split]),
            |i, image| CaptionRow { image, captions: captions[i].clone(), image_id: groups[i].img_path.clone(), split: SPLITS[split].to_string() },
            |rows| writer.write_captions(rows),
        )?;
        writer.finish()?;
        report.files.push(FileSummary { path, rows: files.len(), texts, missing, dropped });
    }
    Ok(())
}
