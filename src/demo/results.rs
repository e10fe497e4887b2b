//! The study's numbers, read back from the runs: each fine-tuned model's test metrics
//! (`test_metrics.json`, written by `m3ae test`) and each pre-training run's final
//! validation losses and loss curves (`metrics.jsonl`), aggregated over seeds.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::plan::{Job, JobKind, Variant};
use super::stats::{paired_interval, Interval};
use crate::error::{Error, Result};
use crate::report::plot::read_metrics;

/// A table cell: the mean over seeds and its spread (sample standard deviation; 0 for one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub mean: f64,
    pub spread: f64,
    /// The per-seed values, in seed order.
    pub values: Vec<f64>,
}

impl Cell {
    /// The mean and sample standard deviation of `values` (None when empty).
    pub fn of(values: Vec<f64>) -> Option<Cell> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let spread = if values.len() > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        Some(Cell { mean, spread, values })
    }
}

/// One column of the table: a metric name and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header in the table.
    pub header: &'static str,
    /// The task whose test metrics hold it, or `pretrain`.
    pub source: &'static str,
    /// The metric's logged name.
    pub metric: &'static str,
    /// Shown as a percentage.
    pub percent: bool,
}

/// The table's columns: VQA overall/closed/open, both retrieval directions at 1/5/10, and
/// the final pre-training validation accuracies (MLM, ITM) and losses.
pub const COLUMNS: [Column; 14] = [
    Column { header: "VQA", source: "vqa_vqa_rad", metric: "vqa/test/score_epoch", percent: true },
    Column { header: "VQA closed", source: "vqa_vqa_rad", metric: "vqa/test/close_score_epoch", percent: true },
    Column { header: "VQA open", source: "vqa_vqa_rad", metric: "vqa/test/open_score_epoch", percent: true },
    Column { header: "IR R@1", source: "irtr_roco", metric: "test/recalls/ir_r1", percent: true },
    Column { header: "IR R@5", source: "irtr_roco", metric: "test/recalls/ir_r5", percent: true },
    Column { header: "IR R@10", source: "irtr_roco", metric: "test/recalls/ir_r10", percent: true },
    Column { header: "TR R@1", source: "irtr_roco", metric: "test/recalls/tr_r1", percent: true },
    Column { header: "TR R@5", source: "irtr_roco", metric: "test/recalls/tr_r5", percent: true },
    Column { header: "TR R@10", source: "irtr_roco", metric: "test/recalls/tr_r10", percent: true },
    Column { header: "MLM acc", source: "pretrain", metric: "mlm/val/accuracy_epoch", percent: true },
    Column { header: "MLM loss", source: "pretrain", metric: "mlm/val/loss_epoch", percent: false },
    Column { header: "MIM loss", source: "pretrain", metric: "mim/val/loss_epoch", percent: false },
    Column { header: "ITM acc", source: "pretrain", metric: "itm/val/accuracy_epoch", percent: true },
    Column { header: "ITM loss", source: "pretrain", metric: "itm/val/loss_epoch", percent: false },
];

/// One variant's row: a cell per column that applies to it (a variant without MIM has no
/// MIM loss; the no-pre-training baseline has no pre-training losses).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    pub cells: BTreeMap<String, Cell>,
}

/// A pre-training run's loss curves, for the figure.
#[derive(Debug, Clone, Serialize)]
pub struct Curves {
    pub variant: String,
    pub seed: u64,
    /// `*/train/loss` by name: (step, value).
    pub losses: BTreeMap<String, Vec<(f64, f64)>>,
}

/// A paired-by-seed difference `a − b` of one fine-tuning metric.
#[derive(Debug, Clone, Serialize)]
pub struct Contrast {
    pub a: String,
    pub b: String,
    pub column: String,
    /// The seeds both variants have.
    pub seeds: Vec<u64>,
    /// None with fewer than two common seeds.
    pub interval: Option<Interval>,
}

/// The contrasts the study reports: `full` against each ablation, and each pre-trained
/// variant against no pre-training.
pub fn contrast_pairs() -> Vec<(Variant, Variant)> {
    let mut out = vec![(Variant::Full, Variant::NoMim), (Variant::Full, Variant::NoMlm), (Variant::Full, Variant::None)];
    out.extend(Variant::PRETRAINED.iter().map(|&v| (v, Variant::Scratch)));
    out
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct StudyResults {
    pub rows: Vec<Row>,
    pub curves: Vec<Curves>,
    pub contrasts: Vec<Contrast>,
    /// Chance levels and trivial baselines by column header (the table's `chance` row), with
    /// how each was worked out.
    pub baselines: BTreeMap<String, (f64, String)>,
}

/// The metrics `m3ae test` wrote for a fine-tuning run.
fn test_metrics(run_dir: &Path) -> Result<BTreeMap<String, f64>> {
    let path = run_dir.join("test_metrics.json");
    let v = crate::config::keys::read_json(&path)?;
    let m = v.get("metrics").and_then(|m| m.as_object()).ok_or_else(|| Error::Config(format!("{}: no `metrics` object", path.display())))?;
    Ok(m.iter().filter_map(|(k, x)| Some((k.clone(), x.as_f64()?))).collect())
}


/// Reads every finished job's numbers and aggregates them by variant over seeds.
pub fn collect(jobs: &[Job]) -> Result<StudyResults> {
    // (variant, column) -> per-seed values
    let mut values: BTreeMap<(Variant, usize), Vec<(u64, f64)>> = BTreeMap::new();
    let mut curves = Vec::new();
    for job in jobs {
        let (source, found) = match &job.kind {
            JobKind::Pretrain => {
                // one read: the loss curves, and each metric's last value
                let series = read_metrics(&job.run_dir.join("metrics.jsonl"))?;
                let finals = series.iter().filter_map(|(k, p)| Some((k.clone(), p.last()?.1))).collect();
                let losses = series.into_iter().filter(|(k, _)| k.ends_with("/train/loss")).collect();
                curves.push(Curves { variant: job.variant.name().into(), seed: job.seed, losses });
                ("pretrain", finals)
            }
            JobKind::Test { task } => (task.as_str(), test_metrics(&job.run_dir)?),
            JobKind::Finetune { .. } | JobKind::Encoders => continue,
        };
        for (c, col) in COLUMNS.iter().enumerate().filter(|(_, col)| col.source == source) {
            if let Some(&v) = found.get(col.metric) {
                values.entry((job.variant, c)).or_default().push((job.seed, v));
            }
        }
    }
    let mut variants: Vec<Variant> = jobs.iter().filter(|j| j.kind != JobKind::Encoders).map(|j| j.variant).collect();
    variants.sort();
    variants.dedup();
    let rows = variants
        .into_iter()
        .map(|variant| {
            let cells = COLUMNS
                .iter()
                .enumerate()
                .filter_map(|(c, col)| {
                    let mut v = values.get(&(variant, c))?.clone();
                    v.sort_by_key(|(seed, _)| *seed);
                    Some((col.header.to_string(), Cell::of(v.into_iter().map(|(_, x)| x).collect())?))
                })
                .collect();
            Row { variant: variant.name().into(), cells }
        })
        .collect();
    let mut contrasts = Vec::new();
    for (a, b) in contrast_pairs() {
        for (c, col) in COLUMNS.iter().enumerate().filter(|(_, col)| col.source != "pretrain") {
            let (Some(va), Some(vb)) = (values.get(&(a, c)), values.get(&(b, c))) else { continue };
            let common: Vec<(u64, f64, f64)> = va.iter().filter_map(|&(s, x)| vb.iter().find(|(t, _)| *t == s).map(|&(_, y)| (s, x, y))).collect();
            let mut common = common;
            common.sort_by_key(|(s, _, _)| *s);
            let (xs, ys): (Vec<f64>, Vec<f64>) = common.iter().map(|&(_, x, y)| (x, y)).unzip();
            contrasts.push(Contrast {
                a: a.name().into(),
                b: b.name().into(),
                column: col.header.into(),
                seeds: common.iter().map(|c| c.0).collect(),
                interval: paired_interval(&xs, &ys),
            });
        }
    }
    Ok(StudyResults { rows, curves, contrasts, baselines: BTreeMap::new() })
}

/// The table as Markdown: `mean ± spread` per cell, `—` where a metric does not apply.
pub fn markdown_table(results: &StudyResults) -> String {
    let cols: Vec<&Column> = COLUMNS.iter().filter(|c| results.rows.iter().any(|r| r.cells.contains_key(c.header))).collect();
    let mut out = format!("| variant | {} |\n|---|{}\n", cols.iter().map(|c| c.header).collect::<Vec<_>>().join(" | "), "---:|".repeat(cols.len()));
    for row in &results.rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match row.cells.get(c.header) {
                Some(x) if c.percent => format!("{:.1} ± {:.1}", 100.0 * x.mean, 100.0 * x.spread),
                Some(x) => format!("{:.3} ± {:.3}", x.mean, x.spread),
                None => "—".into(),
            })
            .collect();
        out.push_str(&format!("| {} | {} |\n", row.variant, cells.join(" | ")));
    }
    if !results.baselines.is_empty() {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match results.baselines.get(c.header) {
                Some((x, _)) if c.percent => format!("{:.1}", 100.0 * x),
                Some((x, _)) => format!("{x:.3}"),
                None => "—".into(),
            })
            .collect();
        out.push_str(&format!("| *chance* | {} |\n", cells.join(" | ")));
    }
    out
}

/// The contrasts as Markdown: one row per pair, `mean [low, high]` per fine-tuning metric (in
/// points for percentages), **bold** where the 95% interval excludes 0.
pub fn contrast_table(results: &StudyResults) -> String {
    let cols: Vec<&Column> = COLUMNS.iter().filter(|c| results.contrasts.iter().any(|x| x.column == c.header)).collect();
    let mut out = format!("| contrast | {} |\n|---|{}\n", cols.iter().map(|c| c.header).collect::<Vec<_>>().join(" | "), "---:|".repeat(cols.len()));
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for x in &results.contrasts {
        if !pairs.contains(&(x.a.as_str(), x.b.as_str())) {
            pairs.push((&x.a, &x.b));
        }
    }
    for (a, b) in pairs {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                let found = results.contrasts.iter().find(|x| x.a == a && x.b == b && x.column == c.header);
                match found.and_then(|x| x.interval.as_ref()) {
                    Some(i) => {
                        let k = if c.percent { 100.0 } else { 1.0 };
                        let text = format!("{:+.1} [{:+.1}, {:+.1}]", k * i.mean, k * i.low, k * i.high);
                        if i.resolved { format!("**{text}**") } else { text }
                    }
                    None => "—".into(),
                }
            })
            .collect();
        out.push_str(&format!("| {a} − {b} | {} |\n", cells.join(" | ")));
    }
    out
}
