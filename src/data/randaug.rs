//! Upstream's `RandAugment(n, m)` (`m3ae/transforms/randaug.py`) on opaque RGB(A) images.
//!
//! Each call draws `n` operations with replacement from upstream's 14-entry list and applies
//! each at magnitude `m / 30` of its range. The operations follow Pillow's definitions
//! (`ImageOps`, `ImageEnhance`, nearest-neighbour `Image.transform`/`rotate` with black fill);
//! alpha is left untouched.
use image::{Rgba, RgbaImage};
use rand::Rng;

/// One of upstream's augmentation operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AutoContrast,
    Equalize,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateXAbs,
    TranslateYAbs,
}

/// Upstream's `augment_list()`: operation and its (min, max) magnitude range.
const AUGMENT_LIST: [(Op, f64, f64); 14] = [
    (Op::AutoContrast, 0.0, 1.0),
    (Op::Equalize, 0.0, 1.0),
    (Op::Rotate, 0.0, 30.0),
    (Op::Posterize, 0.0, 4.0),
    (Op::Solarize, 0.0, 256.0),
    (Op::SolarizeAdd, 0.0, 110.0),
    (Op::Color, 0.1, 1.9),
    (Op::Contrast, 0.1, 1.9),
    (Op::Brightness, 0.1, 1.9),
    (Op::Sharpness, 0.1, 1.9),
    (Op::ShearX, 0.0, 0.3),
    (Op::ShearY, 0.0, 0.3),
    (Op::TranslateXAbs, 0.0, 100.0),
    (Op::TranslateYAbs, 0.0, 100.0),
];

/// RandAugment with `n` operations per image at magnitude `m` (out of 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandAugment {
    /// Operations applied per image.
    pub n: usize,
    /// Magnitude, 0..=30.
    pub m: u32,
}

impl RandAugment {
    /// Upstream's setting, `RandAugment(2, 9)`.
    pub const UPSTREAM: RandAugment = RandAugment { n: 2, m: 9 };

    /// Applies `n` randomly drawn operations in sequence.
    pub fn apply(&self, img: &RgbaImage, rng: &mut impl Rng) -> RgbaImage {
        let mut out = img.clone();
        for _ in 0..self.n {
            let (op, lo, hi) = AUGMENT_LIST[rng.gen_range(0..AUGMENT_LIST.len())];
            let v = f64::from(self.m) / 30.0 * (hi - lo) + lo;
            out = apply_op(op, &out, v, rng);
        }
        out
    }
}

fn apply_op(op: Op, img: &RgbaImage, v: f64, rng: &mut impl Rng) -> RgbaImage {
    let mut signed = |v: f64| if rng.gen::<f64>() > 0.5 { -v } else { v };
    match op {
        Op::AutoContrast => map_channels(img, autocontrast_luts(img)),
        Op::Equalize => map_channels(img, equalize_luts(img)),
        Op::Rotate => rotate(img, signed(v)),
        Op::Posterize => {
            let bits = (v as u32).max(1);
            let mask = !((1u32 << (8 - bits)) - 1) as u8;
            map_all(img, |p| p & mask)
        }
        Op::Solarize => map_all(img, |p| if f64::from(p) < v { p } else { 255 - p }),
        Op::SolarizeAdd => {
            let add = v as i32;
            map_all(img, |p| {
                let q = (i32::from(p) + add).clamp(0, 255) as u8;
                if q < 128 { q } else { 255 - q }
            })
        }
        Op::Color => blend(&grey(img), img, v),
        Op::Contrast => {
            let g = grey(img);
            let mean = g.pixels().map(|p| f64::from(p[0])).sum::<f64>() / g.pixels().len().max(1) as f64;
            let m = (mean + 0.5) as u8;
            blend(&RgbaImage::from_pixel(img.width(), img.height(), Rgba([m, m, m, 255])), img, v)
        }
        Op::Brightness => blend(&RgbaImage::from_pixel(img.width(), img.height(), Rgba([0, 0, 0, 255])), img, v),
        Op::Sharpness => blend(&smooth(img), img, v),
        Op::ShearX => affine(img, [1.0, signed(v), 0.0, 0.0, 1.0, 0.0]),
        Op::ShearY => affine(img, [1.0, 0.0, 0.0, signed(v), 1.0, 0.0]),
        Op::TranslateXAbs => affine(img, [1.0, 0.0, signed(v), 0.0, 1.0, 0.0]),
        Op::TranslateYAbs => affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, signed(v)]),
    }
}

/// Applies one lookup table per colour channel.
fn map_channels(img: &RgbaImage, luts: [[u8; 256]; 3]) -> RgbaImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = luts[c][usize::from(p[c])];
        }
    }
    out
}

fn map_all(img: &RgbaImage, f: impl Fn(u8) -> u8) -> RgbaImage {
    let lut: [u8; 256] = std::array::from_fn(|i| f(i as u8));
    map_channels(img, [lut; 3])
}

fn histograms(img: &RgbaImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            h[c][usize::from(p[c])] += 1;
        }
    }
    h
}

/// `ImageOps.autocontrast(img)`: stretch each channel's [min, max] to [0, 255].
fn autocontrast_luts(img: &RgbaImage) -> [[u8; 256]; 3] {
    histograms(img).map(|h| {
        let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
        let hi = h.iter().rposition(|&n| n > 0).unwrap_or(255);
        if hi <= lo {
            return std::array::from_fn(|i| i as u8);
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        std::array::from_fn(|i| (i as f64 * scale + offset).clamp(0.0, 255.0) as u8)
    })
}

/// `ImageOps.equalize(img)`: per-channel histogram equalization with Pillow's step rule.
fn equalize_luts(img: &RgbaImage) -> [[u8; 256]; 3] {
    histograms(img).map(|h| {
        let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
        let step = match used.last() {
            Some(&last) if used.len() > 1 => (used.iter().sum::<u64>() - last) / 255,
            _ => 0,
        };
        if step == 0 {
            return std::array::from_fn(|i| i as u8);
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[i];
            v
        })
    })
}

/// Pillow's `convert("L")` (ITU-R 601-2 luma, fixed point) replicated to RGB.
fn grey(img: &RgbaImage) -> RgbaImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let l = ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8;
        p[0] = l;
        p[1] = l;
        p[2] = l;
    }
    out
}

/// `Image.blend(degenerate, img, factor)` as `ImageEnhance` uses it, clipped to u8.
fn blend(degenerate: &RgbaImage, img: &RgbaImage, factor: f64) -> RgbaImage {
    let factor = factor as f32;
    let mut out = img.clone();
    for (o, d) in out.pixels_mut().zip(degenerate.pixels()) {
        for c in 0..3 {
            let (a, b) = (f32::from(d[c]), f32::from(o[c]));
            o[c] = (a + factor * (b - a)).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `ImageFilter.SMOOTH` (3×3 kernel 1/13 with centre 5); border pixels are kept.
fn smooth(img: &RgbaImage) -> RgbaImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let weight = if dx == 1 && dy == 1 { 5 } else { 1 };
                        sum += weight * u32::from(img.get_pixel(x + dx - 1, y + dy - 1)[c]);
                    }
                }
                out.get_pixel_mut(x, y)[c] = ((f64::from(sum) / 13.0) + 0.5).min(255.0) as u8;
            }
        }
    }
    out
}

/// `img.rotate(degrees)`: counter-clockwise about the centre, same size, nearest, black fill.
fn rotate(img: &RgbaImage, degrees: f64) -> RgbaImage {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let angle = -(degrees.rem_euclid(360.0)).to_radians();
    let (cos, sin) = (angle.cos(), angle.sin());
    let (cx, cy) = (w / 2.0, h / 2.0);
    let c = cos * -cx + sin * -cy + cx;
    let f = -sin * -cx + cos * -cy + cy;
    affine(img, [cos, sin, c, -sin, cos, f])
}

/// `Image.transform(size, AFFINE, (a, b, c, d, e, f), NEAREST)`: output pixel (x, y) samples
/// input (a·x + b·y + c, d·x + e·y + f) at pixel centres; outside is black.
fn affine(img: &RgbaImage, [a, b, c, d, e, f]: [f64; 6]) -> RgbaImage {
    let (w, h) = img.dimensions();
    RgbaImage::from_fn(w, h, |x, y| {
        let (xo, yo) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
        let (xi, yi) = (a * xo + b * yo + c, d * xo + e * yo + f);
        if xi < 0.0 || yi < 0.0 || xi >= f64::from(w) || yi >= f64::from(h) {
            Rgba([0, 0, 0, 255])
        } else {
            *img.get_pixel(xi as u32, yi as u32)
        }
    })
}
