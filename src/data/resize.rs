//! Pixel-exact port of Pillow's `Image.resize(..., BICUBIC)` and `Image.crop` for RGBA images.
//!
//! Pillow resamples RGBA through premultiplied alpha (`RGBA → RGBa → resize → RGBA`), runs a
//! separable filter (horizontal pass, then vertical) whose support widens by the downscale
//! factor (antialiasing), and keeps 8-bit fixed-point coefficients with rounding and clipping to
//! `u8` between the passes. Every step below follows `libImaging/Resample.c` and `Convert.c`.
use image::RgbaImage;

/// Fixed-point precision of the 8-bit coefficients (`PRECISION_BITS` in Pillow).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Support (half-width) of the bicubic kernel before scaling.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys' cubic convolution kernel with a = −0.5, as Pillow's `bicubic_filter`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter taps of one resampling pass: for each output position, the first input
/// index and its integer weights (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
/// Only the output positions of a window are kept, so memory follows the window, not the
/// (possibly huge) full output side.
struct Taps {
    /// First output position held.
    first: usize,
    /// `(first input index, tap count)` per held output position.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output position, zero-padded.
    weights: Vec<i32>,
    /// Taps allotted per output position.
    ksize: usize,
}

impl Taps {
    /// Taps mapping input span `[in0, in1)` of an axis of length `in_size` onto `out_size`
    /// pixels, for output positions `held`.
    fn new(in_size: usize, in0: f64, in1: f64, out_size: usize, held: std::ops::Range<usize>) -> Taps {
        let scale = (in1 - in0) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let first = held.start;
        let mut bounds = Vec::with_capacity(held.len());
        let mut weights = vec![0i32; held.len() * ksize];
        let mut k = vec![0f64; ksize];
        for xx in held {
            let center = in0 + (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's `(int)` truncates toward zero; negative starts are clamped to 0 right after.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(count) {
                *w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
                total += *w;
            }
            let row = &mut weights[(xx - first) * ksize..(xx - first) * ksize + count];
            for (dst, &w) in row.iter_mut().zip(&k) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
            }
            bounds.push((xmin, count));
        }
        Taps { first, bounds, weights, ksize }
    }

    /// The `(first index, weights)` of output position `i` (a held one).
    fn at(&self, i: usize) -> (usize, &[i32]) {
        let k = i - self.first;
        let (start, count) = self.bounds[k];
        (start, &self.weights[k * self.ksize..k * self.ksize + count])
    }
}

/// Pillow's `clip8`: round-half-up fixed-point accumulator to `u8`.
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Pillow's `RGBA → RGBa`: multiply colour by alpha with `MULDIV255` rounding.
fn premultiply(img: &mut RgbaImage) {
    for px in img.pixels_mut() {
        let a = u32::from(px[3]);
        for c in 0..3 {
            let t = u32::from(px[c]) * a + 128;
            px[c] = (((t >> 8) + t) >> 8) as u8;
        }
    }
}

/// Pillow's `RGBa → RGBA`: divide colour by alpha, truncating and clipping; 0 and 255 pass.
fn unpremultiply(img: &mut RgbaImage) {
    for px in img.pixels_mut() {
        let a = u32::from(px[3]);
        if a != 0 && a != 255 {
            for c in 0..3 {
                px[c] = (255 * u32::from(px[c]) / a).min(255) as u8;
            }
        }
    }
}

/// A sub-rectangle of the resized image: `(left, top, width, height)` in output pixels.
pub type Window = (u32, u32, u32, u32);

/// Resamples `img` (already premultiplied) to `width × height` and returns only `window` of it.
/// Output pixels are independent, so each equals Pillow's full resize at that position.
fn resample(img: &RgbaImage, width: u32, height: u32, window: Window) -> RgbaImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (x0, y0, cw, ch) = (window.0 as usize, window.1 as usize, window.2 as usize, window.3 as usize);
    if cw == 0 || ch == 0 {
        return RgbaImage::new(window.2, window.3);
    }
    let src = img.as_raw();
    let need_vertical = height as usize != in_h;
    let vert = need_vertical.then(|| Taps::new(in_h, 0.0, in_h as f64, height as usize, y0..y0 + ch));
    // Input rows feeding the window: [first_row, last_row).
    let (first_row, last_row) = match &vert {
        Some(v) => (v.at(y0).0, (y0..y0 + ch).map(|y| v.at(y).0 + v.at(y).1.len()).max().unwrap_or(0)),
        None => (y0, y0 + ch),
    };
    let rows = last_row.saturating_sub(first_row);
    // Horizontal pass: [rows, cw, 4].
    let mut mid = vec![0u8; rows * cw * 4];
    if width as usize != in_w {
        let horiz = Taps::new(in_w, 0.0, in_w as f64, width as usize, x0..x0 + cw);
        for (r, out_line) in mid.chunks_exact_mut(cw * 4).enumerate() {
            let line = &src[(first_row + r) * in_w * 4..(first_row + r + 1) * in_w * 4];
            for (ox, out_px) in out_line.chunks_exact_mut(4).enumerate() {
                let (start, weights) = horiz.at(x0 + ox);
                let mut acc = [1i32 << (PRECISION_BITS - 1); 4];
                for (px, &k) in line[start * 4..].chunks_exact(4).zip(weights) {
                    for c in 0..4 {
                        acc[c] += i32::from(px[c]) * k;
                    }
                }
                for c in 0..4 {
                    out_px[c] = clip8(acc[c]);
                }
            }
        }
    } else {
        for (r, out_line) in mid.chunks_exact_mut(cw * 4).enumerate() {
            let start = ((first_row + r) * in_w + x0) * 4;
            out_line.copy_from_slice(&src[start..start + cw * 4]);
        }
    }
    let Some(vert) = vert else {
        return RgbaImage::from_raw(cw as u32, ch as u32, mid).unwrap_or_else(|| RgbaImage::new(cw as u32, ch as u32));
    };
    // Vertical pass: [ch, cw, 4], accumulating whole rows.
    let mut out = vec![0u8; ch * cw * 4];
    let mut acc = vec![0i32; cw * 4];
    for (oy, out_line) in out.chunks_exact_mut(cw * 4).enumerate() {
        let (start, weights) = vert.at(y0 + oy);
        acc.fill(1 << (PRECISION_BITS - 1));
        for (k, &w) in weights.iter().enumerate() {
            let row = &mid[(start - first_row + k) * cw * 4..(start - first_row + k + 1) * cw * 4];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out_line.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbaImage::from_raw(cw as u32, ch as u32, out).unwrap_or_else(|| RgbaImage::new(cw as u32, ch as u32))
}

/// `Image.resize((width, height), BICUBIC)` on an RGBA image, bit-exact with Pillow.
/// Returns a copy when the size is unchanged, as Pillow does.
pub fn resize_bicubic(img: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    resize_bicubic_window(img, width, height, (0, 0, width, height))
}

/// `Image.resize((width, height), BICUBIC).crop(window)`, computing only the window's pixels.
/// `window` must lie inside `width × height`.
pub fn resize_bicubic_window(img: &RgbaImage, width: u32, height: u32, window: Window) -> RgbaImage {
    if img.dimensions() == (width, height) {
        return crop(img, window.0, window.1, window.2, window.3);
    }
    // Premultiplying is the identity on opaque images; skip both passes then.
    if img.pixels().all(|p| p[3] == 255) {
        return resample(img, width, height, window);
    }
    let mut pre = img.clone();
    premultiply(&mut pre);
    let mut out = resample(&pre, width, height, window);
    unpremultiply(&mut out);
    out
}

/// `Image.crop((left, top, left + width, top + height))` for a box inside the image.
pub fn crop(img: &RgbaImage, left: u32, top: u32, width: u32, height: u32) -> RgbaImage {
    image::imageops::crop_imm(img, left, top, width, height).to_image()
}
