//! Placing findings in a scene: sizes, free spots (no overlap, off the heart, nothing under an
//! effusion), and scenes drawn from the prior.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::scene::{Anatomy, Finding, Intensity, Jitter, Kind, Scene, Side, Size, Zone};

/// Radius of a round finding of `kind` and `size` (fraction of the image side). The classes
/// are far apart so that they stay distinct at 64 px.
pub fn radius(kind: Kind, size: Size) -> f32 {
    let base = match size {
        Size::Small => 0.036,
        Size::Medium => 0.054,
        Size::Large => 0.076,
    };
    match kind {
        Kind::Mass => base * 1.3,
        // half length of the fractured segment
        Kind::Fracture => base * 1.5,
        // fluid height as a fraction of the lung field's height
        Kind::Effusion => match size {
            Size::Small => 0.22,
            Size::Medium => 0.38,
            Size::Large => 0.55,
        },
        _ => base,
    }
}

/// What to place: a kind with optional fixed attributes (unset ones are drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Kind.
    pub kind: Kind,
    /// Fixed side, or drawn.
    pub side: Option<Side>,
    /// Fixed size, or drawn.
    pub size: Option<Size>,
    /// Fixed zone, or drawn.
    pub zone: Option<Zone>,
}

impl Wanted {
    /// A finding of `kind` with every attribute drawn.
    pub fn any(kind: Kind) -> Wanted {
        Wanted { kind, side: None, size: None, zone: None }
    }
}

/// Most tries to place one finding clear of the others.
const PLACE_TRIES: usize = 40;

/// Places a finding in `scene` (clear of the others: no overlap, nothing in the base of a
/// lung holding an effusion); `false` when no free spot was found.
pub fn place(scene: &mut Scene, want: Wanted, rng: &mut ChaCha8Rng) -> bool {
    for _ in 0..PLACE_TRIES {
        let side = want.side.unwrap_or_else(|| Side::ALL[rng.gen_range(0..2)]);
        let size = want.size.unwrap_or_else(|| Size::ALL[rng.gen_range(0..3)]);
        let zone = if want.kind.has_zone() { want.zone.unwrap_or_else(|| Zone::ALL[rng.gen_range(0..3)]) } else { Zone::Lower };
        let intensity = if rng.gen_bool(0.5) { Intensity::Faint } else { Intensity::Dense };
        let angle = rng.gen_range(0.0..std::f32::consts::PI);
        let field = scene.field(side);
        let r = radius(want.kind, size) * scene.jitter.scale;
        let candidate = if want.kind == Kind::Effusion {
            Finding { kind: want.kind, side, size, zone, intensity, x: field.cx, y: field.cy + 0.8 * field.ry, radius: r, angle }
        } else {
            let (top, bottom) = scene.zone_band(side, zone);
            let margin = if want.kind == Kind::Fracture { 0.3 * r } else { r };
            let y = rng.gen_range(top + 0.2 * (bottom - top)..bottom - 0.2 * (bottom - top));
            // the field is an ellipse: its half width at this height, less the finding's radius
            let t = ((y - field.cy) / field.ry).clamp(-1.0, 1.0);
            let half = (field.rx * (1.0 - t * t).sqrt() - margin).max(0.0);
            // keep off the midline structures: the medial 15% of the field
            let (lo, hi) = (-half, half * 0.85);
            if hi <= lo {
                continue;
            }
            let u = rng.gen_range(lo..hi);
            let sign = if side == Side::Right { -1.0 } else { 1.0 };
            // u > 0 is medial; x grows away from the midline on the patient's right
            let x = field.cx - sign * u;
            Finding { kind: want.kind, side, size, zone, intensity, x, y, radius: r, angle }
        };
        let on_heart = scene.heart().is_some_and(|h| {
            want.kind != Kind::Effusion && ((candidate.x - h.cx) / (h.rx + r)).powi(2) + ((candidate.y - h.cy) / (h.ry + r)).powi(2) < 1.0
        });
        if !on_heart && scene.findings.iter().all(|f| clear(f, &candidate)) {
            scene.findings.push(candidate);
            return true;
        }
    }
    false
}

/// Whether two findings are far enough apart to be seen and counted separately.
fn clear(a: &Finding, b: &Finding) -> bool {
    match (a.kind, b.kind) {
        (Kind::Effusion, Kind::Effusion) => a.side != b.side,
        (Kind::Effusion, _) => !hidden(b, a),
        (_, Kind::Effusion) => !hidden(a, b),
        _ => {
            let d = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
            d > a.radius + b.radius + 0.03
        }
    }
}

/// Whether `effusion` would cover `f`: the base of its lung, and the middle zone under a large one.
fn hidden(f: &Finding, effusion: &Finding) -> bool {
    f.side == effusion.side && (f.zone == Zone::Lower || (f.zone == Zone::Middle && effusion.size == Size::Large))
}

/// A scene from the prior: 0–3 findings (15/40/30/15%), kinds, sides, sizes, zones and
/// intensities uniform over what the anatomy allows.
pub fn draw_scene(rng: &mut ChaCha8Rng) -> Scene {
    let anatomy = Anatomy::ALL[rng.gen_range(0..2)];
    let mut scene = Scene { anatomy, jitter: Jitter::draw(rng), findings: Vec::new() };
    let p: f32 = rng.gen();
    let n = if p < 0.15 { 0 } else if p < 0.55 { 1 } else if p < 0.85 { 2 } else { 3 };
    let kinds = anatomy.kinds();
    for _ in 0..n {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        // a finding with no free spot is left out; the caption describes what was placed
        place(&mut scene, Wanted::any(kind), rng);
    }
    scene
}
