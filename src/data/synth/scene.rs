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

/// The film's overall density, from `Jitter::exposure` (the classes' ranges are apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exposure {
    /// Exposure −0.08..−0.05: a darker film.
    Dark,
    /// Exposure −0.015..0.015.
    Standard,
    /// Exposure 0.05..0.08: a lighter film.
    Light,
}

/// The patient's build, from `Jitter::scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Build {
    /// Scale 0.93..0.97.
    Slight,
    /// Scale 1.01..1.05.
    Broad,
}

/// Where the body lies across the film, from `Jitter::dx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// dx −0.05..−0.03: towards the image's left.
    ImageLeft,
    /// dx −0.01..0.01.
    Centred,
    /// dx 0.03..0.05: towards the image's right.
    ImageRight,
}

impl Jitter {
    /// Draws a jitter: exposure, build and position each from one of a few classes, apart from
    /// each other so that the caption can name them ([`Jitter::exposure_class`] …) and the
    /// image shows them; a small vertical shift and the noise seed within.
    pub fn draw(rng: &mut ChaCha8Rng) -> Jitter {
        let mut band = |ranges: &[(f32, f32)]| {
            let (lo, hi) = ranges[rng.gen_range(0..ranges.len())];
            rng.gen_range(lo..hi)
        };
        let exposure = band(&[(-0.08, -0.05), (-0.015, 0.015), (0.05, 0.08)]);
        let scale = band(&[(0.93, 0.97), (1.01, 1.05)]);
        let dx = band(&[(-0.05, -0.03), (-0.01, 0.01), (0.03, 0.05)]);
        Jitter { dx, dy: rng.gen_range(-0.02..0.02), scale, exposure, noise_seed: rng.gen() }
    }

    /// The exposure class (thresholds half way between the drawn ranges).
    pub fn exposure_class(&self) -> Exposure {
        match self.exposure {
            e if e < -0.0325 => Exposure::Dark,
            e if e > 0.0325 => Exposure::Light,
            _ => Exposure::Standard,
        }
    }

    /// The build class.
    pub fn build_class(&self) -> Build {
        if self.scale < 0.99 { Build::Slight } else { Build::Broad }
    }

    /// The position class.
    pub fn position_class(&self) -> Position {
        match self.dx {
            d if d < -0.02 => Position::ImageLeft,
            d if d > 0.02 => Position::ImageRight,
            _ => Position::Centred,
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
