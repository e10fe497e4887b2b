//! Captions: a varied sentence naming the anatomy and every finding (kind, size, contrast,
//! side, zone), the findings in random order.
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::scene::{Anatomy, Build, Exposure, Finding, Intensity, Kind, Position, Scene};

/// Picks one of `options`.
pub fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.gen_range(0..options.len())]
}

/// Ways to name the study.
fn study(rng: &mut ChaCha8Rng, anatomy: Anatomy) -> &'static str {
    match anatomy {
        Anatomy::Chest => pick(rng, &["Frontal chest radiograph", "PA chest X-ray", "Chest radiograph", "Posteroanterior view of the chest", "Chest film"]),
        Anatomy::Skull => pick(rng, &["Frontal skull radiograph", "Skull X-ray", "PA view of the skull", "Skull film", "Plain radiograph of the skull"]),
    }
}

/// The noun phrase of a kind, as in "a small dense nodule".
fn noun(f: &Finding, anatomy: Anatomy) -> &'static str {
    match (f.kind, anatomy) {
        (Kind::Nodule, _) => "nodule",
        (Kind::Mass, _) => "mass",
        (Kind::Cyst, _) => "cyst",
        (Kind::Effusion, _) => "pleural effusion",
        (Kind::Fracture, Anatomy::Chest) => "rib fracture",
        (Kind::Fracture, Anatomy::Skull) => "skull fracture",
    }
}

/// The contrast adjective of a finding.
fn contrast_word(f: &Finding) -> &'static str {
    match (f.kind, f.intensity) {
        (Kind::Fracture, Intensity::Faint) => "subtle",
        (Kind::Fracture, Intensity::Dense) => "displaced",
        (Kind::Cyst, Intensity::Dense) => "well-defined",
        (_, Intensity::Faint) => "faint",
        (_, Intensity::Dense) => "dense",
    }
}

/// "a large dense mass in the right upper zone", "a small left pleural effusion".
pub fn describe(rng: &mut ChaCha8Rng, f: &Finding, anatomy: Anatomy) -> String {
    let (size, side, zone) = (f.size.word(), f.side.word(), f.zone.word());
    let adjectives = if rng.gen_bool(0.5) { format!("{size} {}", contrast_word(f)) } else { format!("{} {size}", contrast_word(f)) };
    let article = |next: &str| if next.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    match f.kind {
        Kind::Effusion => {
            let head = format!("{size} {} {side} pleural effusion", contrast_word(f));
            format!("{} {head}", article(&head))
        }
        _ => {
            let place = match anatomy {
                Anatomy::Chest => pick(rng, &["in the {side} {zone} zone", "in the {zone} zone of the {side} lung", "projecting over the {side} {zone} lung"]),
                Anatomy::Skull => pick(rng, &["in the {side} {zone} cranium", "over the {zone} {side} skull", "in the {zone} part of the {side} hemicranium"]),
            };
            let place = place.replace("{side}", side).replace("{zone}", zone);
            format!("{} {adjectives} {} {place}", article(&adjectives), noun(f, anatomy))
        }
    }
}

/// The film as a whole: its exposure, the patient's build and where the body lies, e.g.
/// "Dark film; slight build, shifted to the image left." (the classes of the scene's jitter).
pub fn film(rng: &mut ChaCha8Rng, scene: &Scene) -> String {
    let j = &scene.jitter;
    let exposure = match j.exposure_class() {
        Exposure::Dark => pick(rng, &["Dark film", "Dark exposure"]),
        Exposure::Standard => pick(rng, &["Standard exposure", "Normally exposed film"]),
        Exposure::Light => pick(rng, &["Light film", "Light exposure"]),
    };
    let build = match j.build_class() {
        Build::Slight => pick(rng, &["slight build", "small patient"]),
        Build::Broad => pick(rng, &["broad build", "large patient"]),
    };
    let position = match j.position_class() {
        Position::ImageLeft => pick(rng, &["shifted to the image left", "off-centre to the image left"]),
        Position::Centred => pick(rng, &["centred", "well centred"]),
        Position::ImageRight => pick(rng, &["shifted to the image right", "off-centre to the image right"]),
    };
    format!("{exposure}; {build}, {position}.")
}

/// A caption for `scene`: its findings, then the film ([`film`]).
pub fn caption(rng: &mut ChaCha8Rng, scene: &Scene) -> String {
    let findings = findings(rng, scene);
    format!("{findings} {}", film(rng, scene))
}

/// The sentence naming the study and every finding.
fn findings(rng: &mut ChaCha8Rng, scene: &Scene) -> String {
    let head = study(rng, scene.anatomy);
    if scene.findings.is_empty() {
        let normal = match scene.anatomy {
            Anatomy::Chest => pick(rng, &["{study} with clear lungs and no focal abnormality.", "{study}: no acute findings, lungs clear.", "Normal {lower}.", "{study} showing no nodule, mass or effusion."]),
            Anatomy::Skull => pick(rng, &["{study} with no focal abnormality.", "{study}: intact vault, no acute findings.", "Normal {lower}.", "{study} showing no fracture or lesion."]),
        };
        return normal.replace("{study}", head).replace("{lower}", &lowercase_first(head));
    }
    let mut order: Vec<&Finding> = scene.findings.iter().collect();
    order.shuffle(rng);
    let parts: Vec<String> = order.iter().map(|f| describe(rng, f, scene.anatomy)).collect();
    let list = match parts.len() {
        1 => parts[0].clone(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    };
    let verb = pick(rng, &["showing", "demonstrating", "with", "revealing"]);
    let count = match scene.findings.len() {
        1 => "",
        2 => pick(rng, &["", " two findings:"]),
        _ => pick(rng, &["", " three findings:"]),
    };
    format!("{head} {verb}{count} {list}.")
}

/// `s` with its first letter lower-cased, except an acronym (`PA chest X-ray`).
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if !b.is_uppercase() => a.to_lowercase().chain(std::iter::once(b)).chain(chars).collect(),
        _ => s.to_string(),
    }
}
