//! `m3ae plot DIR`: a run's `metrics.jsonl` drawn into `DIR/plots/`:
//! `losses.png` (every `*/train/loss`), `lr.png`, and `validation.png` (one panel per
//! validation metric, `val/the_metric` first).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};

/// The bundled font (DejaVu Sans; licence beside it).
const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// One metric's (step, value) points, in file order.
pub type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Reads `metrics.jsonl`: every numeric field but `step` and `epoch`, by name. A line that is
/// not a JSON object with a `step` is an error naming the line.
pub fn read_metrics(path: &Path) -> Result<Series> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Series::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| Error::Config(format!("{}: line {}: {why}", path.display(), n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let step = v.get("step").and_then(serde_json::Value::as_f64).ok_or_else(|| bad("no `step`"))?;
        for (k, x) in v.as_object().into_iter().flatten() {
            if let (false, Some(x)) = (k == "step" || k == "epoch", x.as_f64()) {
                out.entry(k.clone()).or_default().push((step, x));
            }
        }
    }
    Ok(out)
}

pub(super) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: drawing failed: {e}", path.display()))
}

pub(super) fn register_font() {
    // a second registration of the same family is harmless
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
}

/// Draws `series` (by name) on one chart into `path`.
fn line_chart(path: &Path, title: &str, series: &[(&String, &Vec<(f64, f64)>)], log_y: bool) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    draw_panel(&root, title, series, log_y).map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, title: &str, series: &[(&String, &Vec<(f64, f64)>)], log_y: bool) -> std::result::Result<(), String> {
    let pts = series.iter().flat_map(|(_, p)| p.iter()).filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let pad = (y1 - y0) * 0.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("step").label_style(("sans-serif", 12)).draw().map_err(|e| e.to_string())?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|(_, y)| y.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    if series.len() > 1 {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes the run's plots into `DIR/plots/` and returns their paths.
pub fn plot_run(run_dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let series = read_metrics(&run_dir.join("metrics.jsonl"))?;
    let out = run_dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut written = Vec::new();
    let losses: Vec<_> = series.iter().filter(|(k, _)| k.ends_with("/train/loss")).collect();
    if !losses.is_empty() {
        let p = out.join("losses.png");
        line_chart(&p, "training losses", &losses, false)?;
        written.push(p);
    }
    if let Some(lr) = series.get_key_value("lr") {
        let p = out.join("lr.png");
        line_chart(&p, "learning rate (base group)", &[lr], false)?;
        written.push(p);
    }
    let mut val: Vec<_> = series.iter().filter(|(k, _)| k.starts_with("val/") || k.contains("/val/")).collect();
    val.sort_by_key(|(k, _)| (k.as_str() != "val/the_metric", k.to_string()));
    if !val.is_empty() {
        let p = out.join("validation.png");
        let cols = 3usize.min(val.len());
        let rows = val.len().div_ceil(cols);
        {
            let root = BitMapBackend::new(&p, (420 * cols as u32, 300 * rows as u32)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_err(&p, e))?;
            for (area, (name, points)) in root.split_evenly((rows, cols)).iter().zip(&val) {
                draw_panel(area, name, &[(name, points)], false).map_err(|e| plot_err(&p, e))?;
            }
            root.present().map_err(|e| plot_err(&p, e))?;
        }
        written.push(p);
    }
    if written.is_empty() {
        return Err(Error::Config(format!("{}: no losses, lr or validation metrics to draw", run_dir.join("metrics.jsonl").display())));
    }
    Ok(written)
}
