//! What a run reports: `metrics.jsonl` (one JSON object per line: `step`, `epoch`, then
//! upstream's metric names) and the progress bar.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::metrics::Named;
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
