//! Renders a [`Scene`] to a radiograph-like grey image (an ndarray of tissue values in 0..1)
//! and encodes it as an 8-bit grey PNG.
//!
//! Bone and fluid are bright, air is dark, as on film. Every shape has a soft edge of about one
//! pixel, so the findings survive the resize to 64–96 px the demo trains at.
use std::f32::consts::PI;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::scene::{Anatomy, Finding, Intensity, Kind, Scene, Side};
use crate::{Error, Result};

/// How a shape's coverage `a` (0..1) combines with the pixel `p`.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `p + a·v`
    Add(f32),
    /// `p·(1 − a) + a·v`
    Over(f32),
}

/// A square image of tissue values, drawn in image-fraction coordinates.
struct Canvas {
    px: Array2<f32>,
    n: usize,
    /// Half-width of a soft edge (about 0.7 px).
    edge: f32,
}

/// Coverage of a point at signed distance `sd` from a shape's boundary (negative inside).
fn cover(sd: f32, edge: f32) -> f32 {
    (0.5 - sd / (2.0 * edge)).clamp(0.0, 1.0)
}

impl Canvas {
    fn new(n: usize, background: f32) -> Canvas {
        Canvas { px: Array2::from_elem((n, n), background), n, edge: 0.7 / n as f32 }
    }

    /// Applies `mode` with the coverage `alpha(x, y)` over the box `[x0, x1] × [y0, y1]`.
    fn shade(&mut self, (x0, y0, x1, y1): (f32, f32, f32, f32), alpha: impl Fn(f32, f32) -> f32, mode: Mode) {
        let n = self.n as f32;
        let lo = |v: f32| ((v * n).floor().max(0.0) as usize).min(self.n);
        let hi = |v: f32| ((v * n).ceil().max(0.0) as usize).min(self.n);
        for r in lo(y0)..hi(y1) {
            let y = (r as f32 + 0.5) / n;
            for c in lo(x0)..hi(x1) {
                let x = (c as f32 + 0.5) / n;
                let a = alpha(x, y);
                if a <= 0.0 {
                    continue;
                }
                let p = &mut self.px[[r, c]];
                *p = match mode {
                    Mode::Add(v) => *p + a * v,
                    Mode::Over(v) => *p * (1.0 - a) + a * v,
                };
            }
        }
    }

    /// A soft-edged ellipse, its radius modulated by `wobble(θ)` (`None`: a plain ellipse).
    fn blob(&mut self, (cx, cy, rx, ry): (f32, f32, f32, f32), wobble: Option<&dyn Fn(f32) -> f32>, mode: Mode) {
        let (e, m) = (self.edge, 1.35);
        let bbox = (cx - m * rx - e, cy - m * ry - e, cx + m * rx + e, cy + m * ry + e);
        self.shade(
            bbox,
            |x, y| {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                let d = (u * u + v * v).sqrt();
                let w = wobble.map_or(1.0, |f| f(v.atan2(u)));
                cover((d - w) * rx.min(ry), e)
            },
            mode,
        );
    }

    fn ellipse(&mut self, geometry: (f32, f32, f32, f32), mode: Mode) {
        self.blob(geometry, None, mode);
    }

    /// A band of width `w` along the segment `a`–`b`.
    fn band(&mut self, a: (f32, f32), b: (f32, f32), w: f32, mode: Mode) {
        let e = self.edge;
        let m = w / 2.0 + e;
        let bbox = (a.0.min(b.0) - m, a.1.min(b.1) - m, a.0.max(b.0) + m, a.1.max(b.1) + m);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-12);
        self.shade(
            bbox,
            |x, y| {
                let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
                let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
                cover((px * px + py * py).sqrt() - w / 2.0, e)
            },
            mode,
        );
    }

    /// A polyline of bands through `points`.
    fn path(&mut self, points: &[(f32, f32)], w: f32, mode: Mode) {
        for pair in points.windows(2) {
            self.band(pair[0], pair[1], w, mode);
        }
    }
}

/// Standard normal draws (Box–Muller).
fn gauss(rng: &mut ChaCha8Rng) -> f32 {
    let u: f32 = rng.gen_range(f32::EPSILON..1.0);
    let v: f32 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

/// Renders `scene` at `n`×`n` pixels: tissue values, clamped to 0..1.
pub fn render(scene: &Scene, n: usize) -> Array2<f32> {
    let mut canvas = Canvas::new(n, 0.04);
    match scene.anatomy {
        Anatomy::Chest => chest(&mut canvas, scene),
        Anatomy::Skull => skull(&mut canvas, scene),
    }
    // fluid first: a finding drawn later stays visible over it
    let (fluid, rest): (Vec<&Finding>, Vec<&Finding>) = scene.findings.iter().partition(|f| f.kind == Kind::Effusion);
    for f in fluid.into_iter().chain(rest) {
        finding(&mut canvas, scene, f);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(scene.jitter.noise_seed);
    texture(&mut canvas, scene, &mut rng);
    canvas.px
}

/// Body outline, lungs, mediastinum, heart, ribs and clavicles.
fn chest(c: &mut Canvas, scene: &Scene) {
    let j = &scene.jitter;
    let (mx, s) = (0.5 + j.dx, j.scale);
    let y = |v: f32| v * s + j.dy + (1.0 - s) * 0.5;
    c.ellipse((mx, y(0.66), 0.44 * s, 0.56 * s), Mode::Over(0.40));
    c.ellipse((mx, y(0.05), 0.1 * s, 0.12 * s), Mode::Over(0.40));
    for sign in [-1.0f32, 1.0] {
        c.ellipse((mx + sign * 0.27 * s, y(0.2), 0.19 * s, 0.09 * s), Mode::Over(0.42));
    }
    for side in Side::ALL {
        let f = scene.field(side);
        c.ellipse((f.cx, f.cy, f.rx, f.ry), Mode::Over(0.12));
    }
    // mediastinum and spine
    c.band((mx, y(0.0)), (mx, y(1.05)), 0.1 * s, Mode::Over(0.5));
    for k in 0..18 {
        let vy = y(0.1 + 0.052 * k as f32);
        c.band((mx - 0.03 * s, vy), (mx + 0.03 * s, vy), 0.006, Mode::Add(-0.06));
    }
    // heart, to the patient's left (image right)
    if let Some(h) = scene.heart() {
        c.ellipse((h.cx, h.cy, h.rx, h.ry), Mode::Over(0.47));
    }
    // posterior ribs: arcs from the spine, rising then falling laterally
    for sign in [-1.0f32, 1.0] {
        for k in 0..9 {
            let y0 = y(0.17 + 0.062 * k as f32);
            let pts: Vec<(f32, f32)> = (0..=10)
                .map(|i| {
                    let t = i as f32 / 10.0;
                    (mx + sign * (0.05 + 0.33 * t) * s, y0 - 0.035 * s * (PI * t).sin() + 0.07 * s * t * t)
                })
                .collect();
            c.path(&pts, 0.016 * s, Mode::Add(0.09));
        }
        // clavicle
        c.band((mx + sign * 0.05 * s, y(0.2)), (mx + sign * 0.3 * s, y(0.14)), 0.024 * s, Mode::Add(0.16));
    }
}

/// Soft tissue, cranial vault, orbits, nasal cavity and jaw.
fn skull(c: &mut Canvas, scene: &Scene) {
    let j = &scene.jitter;
    let (mx, s) = (0.5 + j.dx, j.scale);
    let y = |v: f32| v * s + j.dy + (1.0 - s) * 0.5;
    c.ellipse((mx, y(0.5), 0.41 * s, 0.49 * s), Mode::Over(0.28));
    // mandible: a bright U under the face, teeth faintly above it
    c.ellipse((mx, y(0.76), 0.25 * s, 0.19 * s), Mode::Over(0.55));
    c.ellipse((mx, y(0.72), 0.215 * s, 0.17 * s), Mode::Over(0.3));
    c.band((mx - 0.1 * s, y(0.79)), (mx + 0.1 * s, y(0.79)), 0.025 * s, Mode::Add(0.12));
    // vault: a bright ring of bone around the brain
    c.ellipse((mx, y(0.4), 0.36 * s, 0.37 * s), Mode::Over(0.8));
    c.ellipse((mx, y(0.4), 0.32 * s, 0.33 * s), Mode::Over(0.34));
    for sign in [-1.0f32, 1.0] {
        c.ellipse((mx + sign * 0.12 * s, y(0.63), 0.07 * s, 0.06 * s), Mode::Over(0.55));
        c.ellipse((mx + sign * 0.12 * s, y(0.63), 0.055 * s, 0.045 * s), Mode::Over(0.2));
    }
    c.ellipse((mx, y(0.72), 0.03 * s, 0.05 * s), Mode::Over(0.12));
}

/// Contrast of a finding: faint or dense.
fn contrast(f: &Finding) -> f32 {
    match f.intensity {
        Intensity::Faint => 0.22,
        Intensity::Dense => 0.4,
    }
}

fn finding(c: &mut Canvas, scene: &Scene, f: &Finding) {
    let k = contrast(f);
    let (x, y, r) = (f.x, f.y, f.radius);
    match f.kind {
        Kind::Nodule => c.ellipse((x, y, r, r), Mode::Add(k)),
        Kind::Mass => {
            let a = f.angle;
            let lobes = |t: f32| 1.0 + 0.17 * (3.0 * t + a).sin() + 0.09 * (5.0 * t + 2.0 * a).sin();
            c.blob((x, y, r, r), Some(&lobes), Mode::Add(k));
        }
        Kind::Cyst => {
            let rim = 0.022f32.max(2.0 / c.n as f32);
            c.ellipse((x, y, r, r), Mode::Add(k));
            c.ellipse((x, y, r - rim, r - rim), Mode::Over(0.03));
        }
        Kind::Effusion => effusion(c, scene, f, k),
        Kind::Fracture => fracture(c, scene, f, k),
    }
}

/// Fluid at the base of a lung field, up to a meniscus that rises laterally.
fn effusion(c: &mut Canvas, scene: &Scene, f: &Finding, k: f32) {
    let field = scene.field(f.side);
    let level = field.cy + field.ry - 2.0 * f.radius * field.ry;
    let outward = if f.side == Side::Right { -1.0 } else { 1.0 };
    let (e, fl) = (c.edge, field);
    let bbox = (fl.cx - fl.rx, level - 0.1, fl.cx + fl.rx, fl.cy + fl.ry + e);
    c.shade(
        bbox,
        |x, y| {
            let (u, v) = ((x - fl.cx) / fl.rx, (y - fl.cy) / fl.ry);
            let inside = cover(((u * u + v * v).sqrt() - 1.0) * fl.rx.min(fl.ry), e);
            let lateral = (outward * u).max(0.0);
            let surface = level - 0.1 * fl.ry * lateral * lateral;
            inside * cover(surface - y, 2.0 * e)
        },
        Mode::Over(0.2 + k),
    );
}

/// A crack with a step across bone: a rib fragment in the chest, the vault in the skull.
fn fracture(c: &mut Canvas, scene: &Scene, f: &Finding, k: f32) {
    let j = &scene.jitter;
    let (mut x, mut y, mut a) = (f.x, f.y, f.angle * 0.4 - 0.2);
    if scene.anatomy == Anatomy::Skull {
        // onto the vault ring, along the ray from the skull's centre
        let (cx, cy) = (0.5 + j.dx, 0.4 * j.scale + j.dy + (1.0 - j.scale) * 0.5);
        let t = (y - cy).atan2(x - cx);
        x = cx + 0.34 * j.scale * t.cos();
        y = cy + 0.35 * j.scale * t.sin();
        a = t + PI / 2.0;
    }
    let (dx, dy) = (a.cos(), a.sin());
    let (nx, ny) = (-dy, dx);
    let (l, gap, step) = (f.radius, 0.012, 0.012);
    if scene.anatomy == Anatomy::Chest {
        // two bright rib fragments, the second stepped off the first
        let (bone, w) = (Mode::Add(0.2 + k * 0.5), 0.034 * j.scale);
        c.band((x - l * dx, y - l * dy), (x - gap * dx, y - gap * dy), w, bone);
        let (sx, sy) = (step * nx, step * ny);
        c.band((x + gap * dx + sx, y + gap * dy + sy), (x + l * dx + sx, y + l * dy + sy), w, bone);
    }
    // the crack itself: dark, across the fragment, kinked
    let dark = Mode::Over(0.12 - 0.3 * (k - 0.22));
    let across = if scene.anatomy == Anatomy::Chest { 0.7 * l } else { l };
    c.path(
        &[(x - across * nx - 0.008 * dx, y - across * ny - 0.008 * dy), (x, y), (x + across * nx + 0.008 * dx, y + across * ny + 0.008 * dy)],
        0.02,
        dark,
    );
}

/// Film grain, smooth density variation and exposure, then clamping to 0..1.
fn texture(c: &mut Canvas, scene: &Scene, rng: &mut ChaCha8Rng) {
    let n = c.n as f32;
    let blobs: Vec<(f32, f32, f32, f32)> =
        (0..6).map(|_| (rng.gen(), rng.gen(), rng.gen_range(0.08..0.25), rng.gen_range(-0.035..0.035))).collect();
    let tilt: f32 = rng.gen_range(-0.03..0.03);
    let exposure = scene.jitter.exposure;
    // each Gaussian blob is separable: a(x) · b(y), one table per axis
    let axis = |centre: f32, w: f32| -> Vec<f32> {
        (0..c.n).map(|i| (-((i as f32 + 0.5) / n - centre).powi(2) / (2.0 * w * w)).exp()).collect()
    };
    let tables: Vec<(f32, Vec<f32>, Vec<f32>)> = blobs.iter().map(|&(bx, by, w, a)| (a, axis(bx, w), axis(by, w))).collect();
    for ((r, col), p) in c.px.indexed_iter_mut() {
        let y = (r as f32 + 0.5) / n;
        let smooth: f32 = tables.iter().map(|(a, tx, ty)| a * tx[col] * ty[r]).sum();
        *p = (*p + exposure + smooth + tilt * (y - 0.5) + 0.018 * gauss(rng)).clamp(0.0, 1.0);
    }
}

/// 8-bit grey values of an image in 0..1.
pub fn to_u8(img: &Array2<f32>) -> Vec<u8> {
    img.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// Encodes `img` (0..1) as an 8-bit grey PNG (fixed settings, so the bytes are reproducible).
pub fn encode_png(img: &Array2<f32>) -> Result<Vec<u8>> {
    let (h, w) = img.dim();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&to_u8(img), w as u32, h as u32, ExtendedColorType::L8)
        .map_err(|e| Error::Image { name: "synthetic PNG".into(), reason: e.to_string() })?;
    Ok(out)
}
