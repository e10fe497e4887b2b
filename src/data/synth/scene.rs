//! A seeded random radiograph-like scene: the anatomy, its per-image geometry jitter, and the
//! findings (kind, size, side, zone, intensity, position). Everything the renderer draws and
//! every caption or answer is derived from a [`Scene`]; nothing else is random after it.
//!
//! Sides are the patient's, shown as on a frontal (PA) film: the patient's right is on the
//! image's left.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The body part shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anatomy {
    /// A frontal chest film: body outline, two lung fields, ribs, heart, spine.
    Chest,
    /// A frontal skull film: cranial vault, orbits, jaw.
    Skull,
}

/// The kind of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A small round well-defined opacity (chest only).
    Nodule,
    /// A larger lobulated opacity.
    Mass,
    /// A dark round lucency with a bright rim.
    Cyst,
    /// Fluid filling the base of a lung field, with a meniscus (chest only; always lower zone).
    Effusion,
    /// A dark crack across bone (a rib, or the vault).
    Fracture,
}

/// The patient's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Patient's right (image left).
    Right,
    /// Patient's left (image right).
    Left,
}

/// Size class of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Smallest class.
    Small,
    /// Middle class.
    Medium,
    /// Largest class.
    Large,
}

/// Vertical zone of a lung field or of the cranium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zone {
    /// Top third.
    Upper,
    /// Middle third.
    Middle,
    /// Bottom third.
    Lower,
}

/// Contrast class of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intensity {
    /// Low contrast.
    Faint,
    /// High contrast.
    Dense,
}

impl Anatomy {
    /// Both anatomies.
    pub const ALL: [Anatomy; 2] = [Anatomy::Chest, Anatomy::Skull];

    /// The finding kinds this anatomy can show.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Anatomy::Chest => &[Kind::Nodule, Kind::Mass, Kind::Cyst, Kind::Effusion, Kind::Fracture],
            Anatomy::Skull => &[Kind::Mass, Kind::Cyst, Kind::Fracture],
        }
    }

    /// The answer word.
    pub fn word(self) -> &'static str {
        match self {
            Anatomy::Chest => "chest",
            Anatomy::Skull => "skull",
        }
    }
}

impl Kind {
    /// The answer word.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Nodule => "nodule",
            Kind::Mass => "mass",
            Kind::Cyst => "cyst",
            Kind::Effusion => "effusion",
            Kind::Fracture => "fracture",
        }
    }

    /// Whether a zone and a count are meaningful (an effusion always lies at the base, one per side).
    pub fn has_zone(self) -> bool {
        self != Kind::Effusion
    }
}

impl Side {
    /// Both sides.
    pub const ALL: [Side; 2] = [Side::Right, Side::Left];

    /// The answer word.
    pub fn word(self) -> &'static str {
        match self {
            Side::Right => "right",
            Side::Left => "left",
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Right => Side::Left,
            Side::Left => Side::Right,
        }
    }
}

impl Size {
    /// All size classes.
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Large];

    /// The answer word.
    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }
}

impl Zone {
    /// All zones.
    pub const ALL: [Zone; 3] = [Zone::Upper, Zone::Middle, Zone::Lower];

    /// The answer word.
    pub fn word(self) -> &'static str {
        match self {
            Zone::Upper => "upper",
            Zone::Middle => "middle",
            Zone::Lower => "lower",
        }
    }
}

/// One finding, placed (coordinates are fractions of the image side, x right, y down).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What it is.
    pub kind: Kind,
    /// Patient's side.
    pub side: Side,
    /// Size class.
    pub size: Size,
    /// Vertical zone.
    pub zone: Zone,
    /// Contrast class.
    pub intensity: Intensity,
    /// Centre x.
    pub x: f32,
    /// Centre y.
    pub y: f32,
    /// Radius (half length for a fracture, fluid height for an effusion).
    pub radius: f32,
    /// Orientation in radians (fractures, lobulation phase of masses).
    pub angle: f32,
}

/// Per-image geometry and exposure jitter of the anatomy.
#[derive(Debug, Clone, PartialEq)]
pub struct Jitter {
    /// Horizontal shift of the whole body.
    pub dx: f32,
    /// Vertical shift of the whole body.
    pub dy: f32,
    /// Scale of the anatomy (1 = nominal).
    pub scale: f32,
    /// Exposure: added to every tissue value.
    pub exposure: f32,
    /// Seed of the noise and texture drawn by the renderer.
    pub noise_seed: u64,
}

/// A complete scene: rendering it and describing it need nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Body part.
    pub anatomy: Anatomy,
    /// Geometry and exposure jitter.
    pub jitter: Jitter,
    /// The findings (possibly none).
    pub findings: Vec<Finding>,
}

/// A horizontal and vertical extent, in image fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Centre x.
    pub cx: f32,
    /// Centre y.
    pub cy: f32,
    /// Half width.
    pub rx: f32,
    /// Half height.
    pub ry: f32,
}

impl Jitter {
    /// Draws a jitter.
    pub fn draw(rng: &mut ChaCha8Rng) -> Jitter {
        Jitter {
            dx: rng.gen_range(-0.025..0.025),
            dy: rng.gen_range(-0.02..0.02),
            scale: rng.gen_range(0.94..1.04),
            exposure: rng.gen_range(-0.05..0.05),
            noise_seed: rng.gen(),
        }
    }
}

impl Scene {
    /// The field a finding of `side` lies in: a lung (chest) or a half of the cranium (skull).
    pub fn field(&self, side: Side) -> Region {
        let j = &self.jitter;
        // patient's right is on the image's left
        let sign = if side == Side::Right { -1.0 } else { 1.0 };
        let (offset, cy, rx, ry) = match self.anatomy {
            Anatomy::Chest => (0.18, 0.48, 0.14, 0.29),
            Anatomy::Skull => (0.15, 0.36, 0.13, 0.22),
        };
        let (cx, cy) = self.at(0.5 + sign * offset, cy);
        Region { cx, cy, rx: rx * j.scale, ry: ry * j.scale }
    }

    /// Where the nominal point `(x, y)` of the anatomy lies in this image (shift and scale
    /// about the centre).
    pub fn at(&self, x: f32, y: f32) -> (f32, f32) {
        let j = &self.jitter;
        (0.5 + j.dx + (x - 0.5) * j.scale, 0.5 + j.dy + (y - 0.5) * j.scale)
    }

    /// The heart's outline (chest only): findings are kept off it, where they would hide.
    pub fn heart(&self) -> Option<Region> {
        let (cx, cy) = self.at(0.555, 0.67);
        let s = self.jitter.scale;
        (self.anatomy == Anatomy::Chest).then_some(Region { cx, cy, rx: 0.12 * s, ry: 0.11 * s })
    }

    /// The vertical band `(top, bottom)` of `zone` in the field of `side`.
    pub fn zone_band(&self, side: Side, zone: Zone) -> (f32, f32) {
        let f = self.field(side);
        let (top, bottom) = (f.cy - 0.85 * f.ry, f.cy + 0.8 * f.ry);
        let third = (bottom - top) / 3.0;
        let i = zone as usize as f32;
        (top + i * third, top + (i + 1.0) * third)
    }

    /// Number of findings of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }

    /// The only finding of `kind`, when there is exactly one.
    pub fn single(&self, kind: Kind) -> Option<&Finding> {
        let mut it = self.findings.iter().filter(|f| f.kind == kind);
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
}

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
            if scene.findings.iter().any(|f| f.side == side && (f.kind == Kind::Effusion || f.zone == Zone::Lower)) {
                return false;
            }
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
        (Kind::Effusion, _) => !(b.side == a.side && b.zone == Zone::Lower),
        (_, Kind::Effusion) => !(a.side == b.side && a.zone == Zone::Lower),
        _ => {
            let d = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
            d > a.radius + b.radius + 0.03
        }
    }
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
