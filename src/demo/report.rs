//! The report folder: `report.md`, `results.json`, `losses.png`, `metrics.png` (and the
//! model figures the study adds).
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::checks::Check;
use super::plan::{Job, StudySpec};
use super::results::{contrast_table, markdown_table, StudyResults};
use crate::error::{Error, Result};

/// What the report says about the run besides the numbers.
#[derive(Debug, Clone, Serialize)]
pub struct ReportContext {
    /// UTC date and time the report was written.
    pub date: String,
    /// CPU model and core count.
    pub machine: String,
    /// A paragraph on the data (the generator's summary, or the user's data root).
    pub dataset: Value,
    /// Parameter count of the pre-trained model, and the architecture keys.
    pub model: Value,
    /// Steps and batch per phase.
    pub schedule: Value,
    pub seeds: Vec<u64>,
    /// Wall-clock seconds of the study (this invocation).
    pub wall_seconds: f64,
}

/// The machine, as the report names it.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} core(s), {}", std::env::consts::OS)
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Writes `results.json` and `report.md` into the study folder; returns their paths.
pub fn write(spec: &StudySpec, jobs: &[Job], results: &StudyResults, checks: &[Check], ctx: &ReportContext, figures: &[PathBuf]) -> Result<(PathBuf, PathBuf)> {
    let commands: Vec<String> = jobs.iter().map(|j| format!("m3ae {}", j.args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "))).collect();
    let json_path = spec.out.join("results.json");
    let doc = serde_json::json!({
        "context": ctx,
        "variants": results.rows.iter().map(|r| &r.variant).collect::<Vec<_>>(),
        "tasks": spec.tasks,
        "rows": results.rows,
        "pretraining_curves": results.curves,
        "contrasts": results.contrasts,
        "chance": results.baselines,
        "checks": checks,
        "paper_finding": super::checks::PAPER_FINDING,
        "commands": commands,
    });
    crate::config::keys::write_json(&json_path, &doc)?;
    let md_path = spec.out.join("report.md");
    let mut md = String::new();
    md.push_str("# M3AE ablation study\n\n");
    md.push_str(&format!("{} on {}; {:.0} s for this invocation (jobs done by an earlier one are not counted).\n\n", ctx.date, ctx.machine, ctx.wall_seconds));
    md.push_str("Each cell is the mean ± sample standard deviation over the seeds ");
    md.push_str(&format!("{:?}. Fine-tuned models are evaluated by `m3ae test` on the test split with their best checkpoint (by `val/the_metric`); the pre-training losses are each run's last validation (`*/val/loss_epoch`).\n\n", ctx.seeds));
    md.push_str(&markdown_table(results));
    md.push_str("\nChance levels: retrieval R@k is k/N over N test images (the same for every variant when the scores carry no image–text interaction); VQA closed questions are yes/no, balanced by the generator.\n");
    md.push_str("\n## Against the study's targets\n\nEach pre-training objective against its baseline on the val split (mean over seeds), retrieval against chance, and transfer (the contrast below whose interval sits highest). Stated whatever they show.\n\n");
    md.push_str(&super::checks::markdown(checks));
    md.push_str(&format!("\nFor comparison, not as a target: {}\n", super::checks::PAPER_FINDING));
    md.push_str("\n## Differences between variants\n\nEach cell is the mean over seeds of the per-seed difference (same seed, so the same data order and fine-tuning draws) and its 95% Student-t interval (mean ± t(0.975, n−1)·sd/√n), in points for percentages; **bold**: the interval excludes 0 (the contrast is resolved at this number of seeds).\n\n");
    md.push_str(&contrast_table(results));
    md.push_str("\n## Figures\n\n");
    for f in figures {
        if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
            md.push_str(&format!("![{name}]({name})\n\n"));
        }
    }
    md.push_str(&format!("## Data\n\n```json\n{}\n```\n\n", pretty(&ctx.dataset)));
    md.push_str(&format!("## Model\n\n```json\n{}\n```\n\n", pretty(&ctx.model)));
    md.push_str(&format!("## Schedule\n\n```json\n{}\n```\n\n", pretty(&ctx.schedule)));
    md.push_str("## Commands\n\nEvery job, in the order they were planned (each pre-training run before the fine-tuning runs that start from it):\n\n```sh\n");
    for c in &commands {
        md.push_str(c);
        md.push('\n');
    }
    md.push_str("```\n");
    std::fs::write(&md_path, md).map_err(|e| Error::io(&md_path, e))?;
    Ok((json_path, md_path))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `a` quoted for a POSIX shell when it needs it.
fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The parameter count of a model folder's weights.
pub fn parameter_count(model_dir: &Path) -> Result<i64> {
    let sd = crate::weights::read_safetensors(&model_dir.join("model.safetensors"))?;
    Ok(sd.values().map(|t| t.numel() as i64).sum())
}
