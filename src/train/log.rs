//! What a run reports: `metrics.jsonl` (one JSON object per line: `step`, `epoch`, then
//! upstream's metric names), the progress bar, the training throughput, and the line a
//! finished run ends with.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::metrics::Named;
use super::trainer::{FitSummary, Outcome};
use crate::error::{Error, Result};

/// The run's `metrics.jsonl`, appended line by line.
pub struct MetricsLog {
    path: PathBuf,
    /// None on the ranks other than 0 of a multi-process run: only rank 0 writes.
    file: Option<File>,
}

impl MetricsLog {
    /// Opens `path` for appending. `keep_through` (a resume) first drops the lines of steps
    /// after it: the killed run logged them after its last checkpoint, and the resumed run
    /// logs them again.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<MetricsLog> {
        if let (Some(step), true) = (keep_through, path.is_file()) {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
                .collect();
            std::fs::write(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).map_err(|e| Error::io(path, e))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog { path: path.into(), file: Some(file) })
    }

    /// A log that writes nothing (a rank other than 0).
    pub fn discard(path: &Path) -> MetricsLog {
        MetricsLog { path: path.into(), file: None }
    }

    /// Writes one line: `{"step": …, "epoch": …, name: value, …}`; a NaN is `null`.
    pub fn write(&mut self, step: u64, epoch: u64, values: &Named) -> Result<()> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let mut line = format!("{{\"step\": {step}, \"epoch\": {epoch}");
        for (k, v) in values {
            let key = serde_json::to_string(k).unwrap_or_default();
            let value = if v.is_finite() { serde_json::to_string(v).unwrap_or_else(|_| "null".into()) } else { "null".into() };
            line += &format!(", {key}: {value}");
        }
        line += "}\n";
        file.write_all(line.as_bytes()).and_then(|_| file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// The training progress bar: steps, loss, lr, samples/s, ETA.
pub fn progress(max_steps: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::new(max_steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} step {pos}/{len} {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(start);
    bar
}

/// Training samples per second since the last log line, with the time spent outside training
/// (validation, the checkpoints it writes) left out: the samples/s logged after a validation is
/// the training's own.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    since: Instant,
    samples: usize,
    excluded: Duration,
}

impl Throughput {
    /// Counting from `now`.
    pub fn start(now: Instant) -> Self {
        Throughput { since: now, samples: 0, excluded: Duration::ZERO }
    }

    /// `n` more training samples.
    pub fn add(&mut self, n: usize) {
        self.samples += n;
    }

    /// Leaves out `span`, time not spent training.
    pub fn exclude(&mut self, span: Duration) {
        self.excluded += span;
    }

    /// Samples per second of training time, at `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        let training = now.saturating_duration_since(self.since).saturating_sub(self.excluded);
        self.samples as f64 / training.as_secs_f64().max(1e-9)
    }
}

/// The line a run's end prints: how it ended, at which step, and the best `val/the_metric`
/// (plain numbers, never `Some(…)`).
pub fn end_line(summary: &FitSummary) -> String {
    let s = &summary.state;
    let how = match summary.outcome {
        Outcome::Finished => "finished",
        Outcome::EarlyStopped => "stopped early",
        Outcome::Interrupted => "interrupted (checkpoints/last saved; --resume continues)",
    };
    let best = match (s.best_metric, s.best_step) {
        (Some(m), Some(at)) => format!("best val/the_metric {m:.6} at step {at}"),
        _ => "no finite val/the_metric yet".to_string(),
    };
    format!("{how} at step {} of {} (epoch {}); {best}", s.step, s.max_steps, s.epoch)
}
