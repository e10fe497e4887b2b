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
struct Taps {
    /// `(first input index, tap count)` per output position.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output position, zero-padded.
    weights: Vec<i32>,
    /// Taps allotted per output position.
    ksize: usize,
}

impl Taps {
    /// Taps mapping input span `[in0, in1)` of an axis of length `in_size` onto `out_size` pixels.
    fn new(in_size: usize, in0: f64, in1: f64, out_size: usize) -> Taps {
        let scale = (in1 - in0) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
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
            let row = &mut weights[xx * ksize..xx * ksize + count];
            for (dst, &w) in row.iter_mut().zip(&k) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
            }
            bounds.push((xmin, count));
        }
        Taps { bounds, weights, ksize }
    }

    /// The `(first index, weights)` of output position `i`.
    fn at(&self, i: usize) -> (usize, &[i32]) {
        let (start, count) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + count])
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

/// One weighted sum of four interleaved channels, started at Pillow's rounding offset.
fn accumulate<'a>(pixels: impl Iterator<Item = (&'a [u8], i32)>) -> [u8; 4] {
    let mut acc = [1i32 << (PRECISION_BITS - 1); 4];
    for (px, w) in pixels {
        for c in 0..4 {
            acc[c] += i32::from(px[c]) * w;
        }
    }
    acc.map(clip8)
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

/// Resamples the whole of `img` (already premultiplied) to `width × height`.
fn resample(img: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horiz = Taps::new(in_w, 0.0, in_w as f64, out_w);
    let vert = Taps::new(in_h, 0.0, in_h as f64, out_h);
    let src = img.as_raw();

    // Horizontal pass over only the rows the vertical pass reads: [first_row, last_row).
    let (first_row, last_row) = match (vert.bounds.first(), vert.bounds.last()) {
        (Some(&(first, _)), Some(&(start, count))) => (first, start + count),
        _ => (0, 0),
    };
    let (mid, mid_w, row_offset) = if out_w != in_w {
        let rows = last_row - first_row;
        let mut mid = vec![0u8; out_w * rows * 4];
        for y in 0..rows {
            let line = &src[(y + first_row) * in_w * 4..(y + first_row + 1) * in_w * 4];
            for x in 0..out_w {
                let (start, w) = horiz.at(x);
                let px = (0..w.len()).map(|i| (&line[(start + i) * 4..(start + i) * 4 + 4], w[i]));
                mid[(y * out_w + x) * 4..(y * out_w + x) * 4 + 4].copy_from_slice(&accumulate(px));
            }
        }
        (mid, out_w, first_row)
    } else {
        (src.clone(), in_w, 0)
    };
    if out_h == in_h {
        return RgbaImage::from_raw(width, height, mid).unwrap_or_else(|| RgbaImage::new(width, height));
    }
    // [out_h, out_w, 4]
    let mut out = vec![0u8; out_w * out_h * 4];
    for y in 0..out_h {
        let (start, w) = vert.at(y);
        let start = start - row_offset;
        for x in 0..mid_w {
            let px = (0..w.len())
                .map(|i| (&mid[((start + i) * mid_w + x) * 4..((start + i) * mid_w + x) * 4 + 4], w[i]));
            out[(y * out_w + x) * 4..(y * out_w + x) * 4 + 4].copy_from_slice(&accumulate(px));
        }
    }
    RgbaImage::from_raw(width, height, out).unwrap_or_else(|| RgbaImage::new(width, height))
}

/// `Image.resize((width, height), BICUBIC)` on an RGBA image, bit-exact with Pillow.
/// Returns a copy when the size is unchanged, as Pillow does.
pub fn resize_bicubic(img: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    let mut pre = img.clone();
    premultiply(&mut pre);
    let mut out = resample(&pre, width, height);
    unpremultiply(&mut out);
    out
}

/// `Image.crop((left, top, left + width, top + height))` for a box inside the image.
pub fn crop(img: &RgbaImage, left: u32, top: u32, width: u32, height: u32) -> RgbaImage {
    image::imageops::crop_imm(img, left, top, width, height).to_image()
}
