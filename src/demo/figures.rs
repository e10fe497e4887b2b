//! The study's two charts: `losses.png` (pre-training loss curves per variant, averaged over
//! seeds) and `metrics.png` (a bar chart per metric, variants side by side, ± spread).
use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::results::{StudyResults, COLUMNS};
use crate::error::Result;
use crate::report::plot::{draw_panel, plot_err, register_font};

/// A panel's title and its named lines of (step, value) points.
type Panel = (String, Vec<(String, Vec<(f64, f64)>)>);

/// One panel per objective (`mlm`, `mim`, `itm`), one line per variant: the seeds' mean at
/// each logged step.
pub fn losses(results: &StudyResults, path: &Path) -> Result<()> {
    register_font();
    // objective -> variant -> step -> values over seeds
    let mut by: BTreeMap<String, BTreeMap<String, BTreeMap<i64, Vec<f64>>>> = BTreeMap::new();
    for c in &results.curves {
        for (name, points) in &c.losses {
            let objective = name.trim_end_matches("/train/loss").to_string();
            for &(step, v) in points {
                by.entry(objective.clone()).or_default().entry(c.variant.clone()).or_default().entry(step as i64).or_default().push(v);
            }
        }
    }
    let panels: Vec<Panel> = by
        .into_iter()
        .map(|(objective, variants)| {
            let lines = variants
                .into_iter()
                .map(|(variant, steps)| (variant, steps.into_iter().map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64)).collect()))
                .collect();
            (format!("{objective} pre-training loss (mean over seeds)"), lines)
        })
        .collect();
    let n = panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (520 * n, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    for (area, (title, lines)) in root.split_evenly((1, n as usize)).iter().zip(&panels) {
        let series: Vec<(&String, &Vec<(f64, f64)>)> = lines.iter().map(|(n, p)| (n, p)).collect();
        draw_panel(area, title, &series, false).map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// A bar per variant for each table column that has values, with a ± spread whisker.
pub fn metrics(results: &StudyResults, path: &Path) -> Result<()> {
    register_font();
    let cols: Vec<_> = COLUMNS.iter().filter(|c| results.rows.iter().any(|r| r.cells.contains_key(c.header))).collect();
    let ncols = 3usize.min(cols.len().max(1));
    let nrows = cols.len().div_ceil(ncols).max(1);
    let root = BitMapBackend::new(path, (460 * ncols as u32, 320 * nrows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let variants: Vec<&str> = results.rows.iter().map(|r| r.variant.as_str()).collect();
    for (area, col) in root.split_evenly((nrows, ncols)).iter().zip(&cols) {
        let scale = if col.percent { 100.0 } else { 1.0 };
        let bars: Vec<(usize, f64, f64)> = results.rows.iter().enumerate().filter_map(|(i, r)| r.cells.get(col.header).map(|c| (i, c.mean * scale, c.spread * scale))).collect();
        // an all-zero metric still gets a readable axis
        let top = bars.iter().map(|(_, m, s)| m + s).fold(0.0f64, f64::max).max(if col.percent { 1.0 } else { 1e-3 }) * 1.15;
        let title = if col.percent { format!("{} (%)", col.header) } else { col.header.to_string() };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((0..variants.len().saturating_sub(1)).into_segmented(), 0.0..top)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => variants.get(*i).map(|v| v.to_string()).unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for &(i, mean, spread) in &bars {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), mean)], color.filled())))
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(SegmentValue::CenterOf(i), (mean - spread).max(0.0)), (SegmentValue::CenterOf(i), mean + spread)], BLACK.stroke_width(2))))
                .map_err(|e| plot_err(path, e))?;
        }
    }
    root.present().map_err(|e| plot_err(path, e))
}
