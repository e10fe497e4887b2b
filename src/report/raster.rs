//! Image grids for the model figures: square panels in rows, a title on top, a label above
//! each row and a caption under each panel (plotters, the bundled font).
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tch::{Kind, Tensor};

use super::plot::{plot_err, register_font};
use crate::data::transforms::Normalization;
use crate::error::{Error, Result};

/// Side of one panel, in pixels.
pub const CELL: u32 = 160;
/// Space between panels and around the grid.
pub const PAD: u32 = 8;
/// The title band at the top.
pub const HEADER: u32 = 40;
/// The band above each row holding its label.
pub const ROW_LABEL: u32 = 22;
/// The band under each panel holding its caption.
pub const CAPTION: u32 = 20;

/// A figure written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// The PNG file.
    pub path: PathBuf,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

/// The pixel size of a grid of `rows` × `cols` panels:
/// (cols·(CELL + PAD) + PAD, HEADER + rows·(ROW_LABEL + CELL + CAPTION + PAD)).
pub fn grid_size(rows: usize, cols: usize) -> (u32, u32) {
    (cols as u32 * (CELL + PAD) + PAD, HEADER + rows as u32 * (ROW_LABEL + CELL + CAPTION + PAD))
}

/// One panel: CELL × CELL RGB pixels, row-major, and its caption.
pub struct Panel {
    /// CELL × CELL × 3 bytes.
    pub rgb: Vec<u8>,
    /// Drawn under the panel.
    pub caption: String,
}

/// One row of panels under a label.
pub struct Row {
    /// Drawn above the row.
    pub label: String,
    /// Left to right.
    pub panels: Vec<Panel>,
}

/// A normalized image [3, S, S] back to display intensities in [0, 1] (the transform's
/// mean and std undone), on the CPU in float32.
pub fn denormalize(img: &Tensor, norm: Normalization) -> Tensor {
    let mean = Tensor::from_slice(&norm.mean).view([3, 1, 1]);
    let std = Tensor::from_slice(&norm.std).view([3, 1, 1]);
    (img.to_device(tch::Device::Cpu).to_kind(Kind::Float) * std + mean).clamp(0.0, 1.0)
}

/// A [3, H, W] (or [1, H, W]) image in [0, 1] resized (bilinear) to a CELL × CELL panel.
pub fn panel(img: &Tensor, caption: impl Into<String>) -> Result<Panel> {
    let img = img.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let img = if img.size()[0] == 1 { img.expand([3, -1, -1], false) } else { img };
    let c = i64::from(CELL);
    let resized = img.unsqueeze(0).f_upsample_bilinear2d([c, c], false, None, None)?.squeeze_dim(0);
    let bytes = (resized.clamp(0.0, 1.0) * 255.0).round().to_kind(Kind::Uint8).permute([1, 2, 0]).contiguous();
    Ok(Panel { rgb: Vec::<u8>::try_from(bytes.view([-1]))?, caption: caption.into() })
}

/// A heat value in [0, 1] as an RGB colour (black → purple → red → orange → yellow).
fn heat_colour(v: f64) -> [f64; 3] {
    const STOPS: [[f64; 3]; 5] = [[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33], [0.98, 0.55, 0.04], [0.99, 1.0, 0.64]];
    let x = v.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let t = x - i as f64;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - t) + STOPS[i + 1][c] * t)
}

/// `heat` [g, g] (any scale; stretched to [0, 1]) upsampled to the image and blended over
/// its grey version with weight `alpha`: [3, S, S] in [0, 1]. `image` is in [0, 1].
pub fn overlay(image: &Tensor, heat: &Tensor, alpha: f64) -> Result<Tensor> {
    let (_, h, w) = image.size3()?;
    let heat = heat.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let (lo, hi) = (heat.min().double_value(&[]), heat.max().double_value(&[]));
    let heat = (heat - lo) / (hi - lo).max(1e-12);
    let heat = heat.view([1, 1, heat.size()[0], heat.size()[1]]).f_upsample_bilinear2d([h, w], false, None, None)?.view([h, w]);
    let values = Vec::<f32>::try_from(heat.view([-1]))?;
    let mut rgb = vec![0f32; 3 * values.len()];
    for (i, v) in values.iter().enumerate() {
        let c = heat_colour(f64::from(*v));
        for (k, x) in c.iter().enumerate() {
            rgb[k * values.len() + i] = *x as f32;
        }
    }
    let colour = Tensor::from_slice(&rgb).view([3, h, w]);
    let grey = image.mean_dim(0, true, Kind::Float).expand([3, h, w], false);
    Ok(grey * (1.0 - alpha) + colour * alpha)
}

/// Cuts `text` to about `px` pixels of `size`-pt text.
fn fit(text: &str, px: u32, size: u32) -> String {
    let max = ((px as f64 / (size as f64 * 0.5)) as usize).max(4);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// Draws `rows` (each with `cols` panels, fewer leave blanks) under `title` into `path`.
pub fn draw_grid(path: &Path, title: &str, rows: &[Row], cols: usize) -> Result<Figure> {
    if rows.is_empty() || cols == 0 {
        return Err(Error::input("figure", format!("{}: nothing to draw", path.display())));
    }
    register_font();
    let (width, height) = grid_size(rows.len(), cols);
    {
        let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| plot_err(path, e);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let centred = |size: u32| TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        let left = |size: u32| TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw_text(&fit(title, width - 2 * PAD, 16), &centred(16), ((width / 2) as i32, (HEADER / 2) as i32)).map_err(|e| err(&e))?;
        for (r, row) in rows.iter().enumerate() {
            let top = HEADER + r as u32 * (ROW_LABEL + CELL + CAPTION + PAD);
            root.draw_text(&fit(&row.label, width - 2 * PAD, 13), &left(13), (PAD as i32, (top + ROW_LABEL / 2) as i32)).map_err(|e| err(&e))?;
            for (c, p) in row.panels.iter().take(cols).enumerate() {
                let x0 = PAD + c as u32 * (CELL + PAD);
                let y0 = top + ROW_LABEL;
                if p.rgb.len() != (3 * CELL * CELL) as usize {
                    return Err(Error::input("figure panel", format!("{} bytes, expected {}", p.rgb.len(), 3 * CELL * CELL)));
                }
                for (i, px) in p.rgb.chunks_exact(3).enumerate() {
                    let (x, y) = (x0 + i as u32 % CELL, y0 + i as u32 / CELL);
                    root.draw_pixel((x as i32, y as i32), &RGBColor(px[0], px[1], px[2])).map_err(|e| err(&e))?;
                }
                let cx = (x0 + CELL / 2) as i32;
                root.draw_text(&fit(&p.caption, CELL, 12), &centred(12), (cx, (y0 + CELL + CAPTION / 2) as i32)).map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Figure { path: path.into(), width, height })
}
