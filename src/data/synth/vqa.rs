//! VQA: questions about a scene, closed (yes/no) and open (side, size, count, kind, zone,
//! body part), with answers computed from the scene only ([`answer`]).
//!
//! A text-only model must be at chance: for every question the answer is drawn first, uniformly
//! over the question's answers and independently of its wording, and the scene is then built to
//! make it true ([`plan_image`]). So within each question (type and the kind it names) the
//! answers are balanced in expectation, and the words say nothing about which one holds.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::place::{draw_scene, place, Wanted};
use super::scene::{Anatomy, Jitter, Kind, Scene, Side, Size, Zone};
use super::text::pick;

/// What a question asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    /// Closed: is there a finding of this kind?
    Presence(Kind),
    /// Closed: is the (single) finding of this kind on this side?
    SideIs(Kind, Side),
    /// Closed: is the (single) finding of this kind large?
    IsLarge(Kind),
    /// Closed: is this a film of this body part?
    AnatomyIs(Anatomy),
    /// Closed: is the study normal (no finding)?
    Normal,
    /// Open: which side is the (single) finding of this kind on?
    WhichSide(Kind),
    /// Open: what size is the (single) finding of this kind?
    WhatSize(Kind),
    /// Open: how many findings of this kind are there (1–3)?
    HowMany(Kind),
    /// Open: what kind of abnormality is seen (all findings of one kind)?
    WhatKind,
    /// Open: which zone holds the (single) finding of this kind?
    WhichZone(Kind),
    /// Open: what body part is shown?
    WhatAnatomy,
}

/// Upstream's `answer_type`: 0 closed, 1 open.
pub fn answer_type(q: Query) -> i64 {
    match q {
        Query::Presence(_) | Query::SideIs(..) | Query::IsLarge(_) | Query::AnatomyIs(_) | Query::Normal => 0,
        _ => 1,
    }
}

fn yes_no(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_string()
}

/// The answer `scene` gives to `q`, or `None` when the question does not apply (e.g. "which
/// side is the nodule on?" with no nodule or with two). Answers are fixed points of upstream's
/// `normalize_word` (lower case, no articles, digits).
pub fn answer(q: Query, scene: &Scene) -> Option<String> {
    Some(match q {
        Query::Presence(k) => yes_no(scene.count(k) > 0),
        Query::SideIs(k, s) => yes_no(scene.single(k)?.side == s),
        Query::IsLarge(k) => yes_no(scene.single(k)?.size == Size::Large),
        Query::AnatomyIs(a) => yes_no(scene.anatomy == a),
        Query::Normal => yes_no(scene.findings.is_empty()),
        Query::WhichSide(k) => scene.single(k)?.side.word().to_string(),
        Query::WhatSize(k) => scene.single(k)?.size.word().to_string(),
        Query::HowMany(k) => match scene.count(k) {
            0 => return None,
            n => n.to_string(),
        },
        Query::WhatKind => {
            let first = scene.findings.first()?.kind;
            if scene.findings.iter().any(|f| f.kind != first) {
                return None;
            }
            first.word().to_string()
        }
        Query::WhichZone(k) => scene.single(k)?.zone.word().to_string(),
        Query::WhatAnatomy => scene.anatomy.word().to_string(),
    })
}

/// The phrase naming a kind in a question.
fn kind_phrase(rng: &mut ChaCha8Rng, k: Kind, plural: bool) -> &'static str {
    match (k, plural) {
        (Kind::Nodule, false) => pick(rng, &["nodule", "pulmonary nodule"]),
        (Kind::Nodule, true) => pick(rng, &["nodules", "pulmonary nodules"]),
        (Kind::Mass, false) => pick(rng, &["mass", "mass lesion"]),
        (Kind::Mass, true) => pick(rng, &["masses", "mass lesions"]),
        (Kind::Cyst, false) => pick(rng, &["cyst", "cystic lesion"]),
        (Kind::Cyst, true) => pick(rng, &["cysts", "cystic lesions"]),
        (Kind::Effusion, _) => pick(rng, &["effusion", "pleural effusion"]),
        (Kind::Fracture, false) => pick(rng, &["fracture", "fracture line"]),
        (Kind::Fracture, true) => pick(rng, &["fractures", "fracture lines"]),
    }
}

fn a_or_an(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// One wording of `q`, drawn independently of its answer.
pub fn wording(rng: &mut ChaCha8Rng, q: Query) -> String {
    let film = |rng: &mut ChaCha8Rng| pick(rng, &["image", "film", "radiograph", "study", "x-ray"]);
    let text = match q {
        Query::Presence(k) => {
            let n = kind_phrase(rng, k, false);
            let t = pick(rng, &["Is there {a} {k}?", "Is {a} {k} present?", "Does the {f} show {a} {k}?", "Can {a} {k} be seen?", "Is there evidence of {a} {k}?"]);
            t.replace("{a}", a_or_an(n)).replace("{k}", n).replace("{f}", film(rng))
        }
        Query::SideIs(k, s) => {
            let t = pick(rng, &["Is the {k} on the {s} side?", "Is the {k} in the {s} half?", "Is the {k} located on the patient's {s}?", "Does the {k} lie on the {s}?"]);
            t.replace("{k}", kind_phrase(rng, k, false)).replace("{s}", s.word())
        }
        Query::IsLarge(k) => {
            let t = pick(rng, &["Is the {k} large?", "Is it a large {k}?", "Would you call the {k} large?", "Is the {k} of large size?"]);
            t.replace("{k}", kind_phrase(rng, k, false))
        }
        Query::AnatomyIs(a) => {
            let part = match a {
                Anatomy::Chest => pick(rng, &["chest", "thorax", "chest x-ray"]),
                Anatomy::Skull => pick(rng, &["skull", "head", "skull x-ray"]),
            };
            let t = pick(rng, &["Is this {a} {p} film?", "Does this {f} show the {p}?", "Is this an image of the {p}?", "Is the {p} imaged here?"]);
            t.replace("{a}", a_or_an(part)).replace("{p}", part).replace("{f}", film(rng))
        }
        Query::Normal => {
            let t = pick(rng, &["Is this {f} normal?", "Is the {f} free of abnormalities?", "Is this a normal {f}?", "Does the {f} look normal?"]);
            t.replace("{f}", film(rng))
        }
        Query::WhichSide(k) => {
            let t = pick(rng, &["Which side is the {k} on?", "On which side is the {k}?", "Where is the {k}, left or right?", "Which side of the patient has the {k}?"]);
            t.replace("{k}", kind_phrase(rng, k, false))
        }
        Query::WhatSize(k) => {
            let t = pick(rng, &["What size is the {k}?", "How big is the {k}?", "How large is the {k}?", "Is the {k} small, medium or large?"]);
            t.replace("{k}", kind_phrase(rng, k, false))
        }
        Query::HowMany(k) => {
            let t = pick(rng, &["How many {k} are there?", "How many {k} can be seen?", "How many {k} does the {f} show?", "What is the number of {k}?"]);
            t.replace("{k}", kind_phrase(rng, k, true)).replace("{f}", film(rng))
        }
        Query::WhatKind => {
            let t = pick(rng, &["What abnormality is seen?", "What kind of lesion is present?", "What is the abnormal finding?", "What type of abnormality does the {f} show?"]);
            t.replace("{f}", film(rng))
        }
        Query::WhichZone(k) => {
            let t = pick(rng, &["Which zone is the {k} in?", "Is the {k} in the upper, middle or lower zone?", "In which zone does the {k} lie?", "At what level is the {k}?"]);
            t.replace("{k}", kind_phrase(rng, k, false))
        }
        Query::WhatAnatomy => {
            let t = pick(rng, &["What body part is shown?", "What part of the body is imaged?", "Which organ system is in this {f}?", "What is being imaged?"]);
            t.replace("{f}", film(rng))
        }
    };
    text
}

/// Kinds of `anatomy` that a count or a zone can be asked about.
fn zoned(anatomy: Anatomy) -> Vec<Kind> {
    anatomy.kinds().iter().copied().filter(|k| k.has_zone()).collect()
}

fn one<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

/// A question about an image of `anatomy`, with its target answer drawn uniformly over the
/// question's answers (before any scene exists); for the body-part questions the answer is the
/// anatomy, itself drawn uniformly.
fn draw_question(rng: &mut ChaCha8Rng, anatomy: Anatomy) -> (Query, String) {
    let kinds = anatomy.kinds();
    let yes = rng.gen_bool(0.5);
    match rng.gen_range(0..11) {
        0 => (Query::Presence(one(rng, kinds)), yes_no(yes)),
        1 => (Query::SideIs(one(rng, kinds), one(rng, &Side::ALL)), yes_no(yes)),
        2 => (Query::IsLarge(one(rng, kinds)), yes_no(yes)),
        3 => {
            // asking about the shown anatomy (yes) or the other (no)
            let other = if anatomy == Anatomy::Chest { Anatomy::Skull } else { Anatomy::Chest };
            (Query::AnatomyIs(if yes { anatomy } else { other }), yes_no(yes))
        }
        4 => (Query::Normal, yes_no(yes)),
        5 => (Query::WhichSide(one(rng, kinds)), one(rng, &Side::ALL).word().into()),
        6 => (Query::WhatSize(one(rng, kinds)), one(rng, &Size::ALL).word().into()),
        7 => (Query::HowMany(one(rng, &zoned(anatomy))), rng.gen_range(1..=3usize).to_string()),
        8 => (Query::WhatKind, one(rng, kinds).word().into()),
        9 => (Query::WhichZone(one(rng, &zoned(anatomy))), one(rng, &Zone::ALL).word().into()),
        _ => (Query::WhatAnatomy, anatomy.word().into()),
    }
}

/// The kind a question constrains, `Some(None)` when it constrains every finding, `None`
/// when it constrains none (body part).
fn subject(q: Query) -> Option<Option<Kind>> {
    match q {
        Query::Presence(k) | Query::SideIs(k, _) | Query::IsLarge(k) | Query::WhichSide(k) | Query::WhatSize(k) | Query::HowMany(k) | Query::WhichZone(k) => Some(Some(k)),
        Query::Normal | Query::WhatKind => Some(None),
        Query::AnatomyIs(_) | Query::WhatAnatomy => None,
    }
}

/// Whether two questions can be planned on one image (they constrain disjoint findings).
fn compatible(a: Query, b: Query) -> bool {
    match (subject(a), subject(b)) {
        (None, _) | (_, None) => a != b,
        (Some(Some(x)), Some(Some(y))) => x != y,
        _ => false,
    }
}

/// The findings of `kind` that make `(q, target)` true, or `None` when `q` leaves them free.
fn wanted(q: Query, target: &str, rng: &mut ChaCha8Rng, anatomy: Anatomy) -> Option<Vec<Wanted>> {
    let yes = target == "yes";
    let w = |kind| Wanted::any(kind);
    let side = |s: &str| Side::ALL.into_iter().find(|x| x.word() == s);
    Some(match q {
        Query::Presence(k) => (0..if yes { rng.gen_range(1..=2) } else { 0 }).map(|_| w(k)).collect(),
        Query::SideIs(k, s) => vec![Wanted { side: Some(if yes { s } else { s.other() }), ..w(k) }],
        Query::IsLarge(k) => {
            let size = if yes { Size::Large } else { one(rng, &[Size::Small, Size::Medium]) };
            vec![Wanted { size: Some(size), ..w(k) }]
        }
        Query::WhichSide(k) => vec![Wanted { side: side(target), ..w(k) }],
        Query::WhatSize(k) => vec![Wanted { size: Size::ALL.into_iter().find(|x| x.word() == target), ..w(k) }],
        Query::HowMany(k) => (0..target.parse::<usize>().unwrap_or(1)).map(|_| w(k)).collect(),
        Query::WhichZone(k) => vec![Wanted { zone: Zone::ALL.into_iter().find(|x| x.word() == target), ..w(k) }],
        Query::Normal if yes => Vec::new(),
        Query::Normal => vec![w(one(rng, anatomy.kinds()))],
        Query::WhatKind => {
            let k = anatomy.kinds().iter().copied().find(|k| k.word() == target)?;
            let n = if k == Kind::Effusion { 1 } else { rng.gen_range(1..=2) };
            (0..n).map(|_| w(k)).collect()
        }
        Query::AnatomyIs(_) | Query::WhatAnatomy => return None,
    })
}

/// One VQA image: its scene and its questions with their answers.
#[derive(Debug, Clone)]
pub struct PlannedImage {
    /// The scene the answers hold for.
    pub scene: Scene,
    /// (question, answer) pairs; each answer equals `answer(query, &scene)`.
    pub questions: Vec<(Query, String)>,
}

/// Most scene draws for one plan before the plan is redrawn.
const SCENE_TRIES: usize = 30;
/// Most question draws for one plan.
const QUESTION_TRIES: usize = 200;
/// Most plans drawn for one image.
const PLAN_TRIES: usize = 50;

/// An image with `n` questions (n ≥ 1): anatomy first, then questions with answers drawn
/// uniformly, then a scene built to satisfy them (the questions' findings, plus free findings
/// of the kinds no question names) and checked with [`answer`].
pub fn plan_image(rng: &mut ChaCha8Rng, n: usize) -> PlannedImage {
    for _ in 0..PLAN_TRIES {
        let anatomy = Anatomy::ALL[rng.gen_range(0..2)];
        let mut questions: Vec<(Query, String)> = Vec::new();
        // (the body-part questions are compatible with any other, so this ends quickly)
        for _ in 0..QUESTION_TRIES {
            if questions.len() >= n.max(1) {
                break;
            }
            let q = draw_question(rng, anatomy);
            if questions.iter().all(|(p, _)| compatible(*p, q.0)) {
                questions.push(q);
            }
        }
        for _ in 0..SCENE_TRIES {
            if let Some(scene) = build(rng, anatomy, &questions) {
                return PlannedImage { scene, questions };
            }
        }
    }
    // unreachable in practice (every single question is satisfiable); fall back to one
    // body-part question on a prior scene, whose answer always exists
    let scene = draw_scene(rng);
    let q = Query::WhatAnatomy;
    let a = scene.anatomy.word().to_string();
    PlannedImage { scene, questions: vec![(q, a)] }
}

/// A scene for `questions` on `anatomy`, or `None` when placement failed or an answer differs.
fn build(rng: &mut ChaCha8Rng, anatomy: Anatomy, questions: &[(Query, String)]) -> Option<Scene> {
    let mut scene = Scene { anatomy, jitter: Jitter::draw(rng), findings: Vec::new() };
    let mut fixed: Vec<Option<Kind>> = Vec::new();
    for (q, target) in questions {
        if let Some(wants) = wanted(*q, target, rng, anatomy) {
            fixed.push(subject(*q).flatten());
            for w in wants {
                if !place(&mut scene, w, rng) {
                    return None;
                }
            }
        }
    }
    // free findings of kinds no question names, unless a question constrains them all
    if !fixed.contains(&None) {
        for &k in anatomy.kinds() {
            if !fixed.contains(&Some(k)) && rng.gen_bool(0.25) {
                place(&mut scene, Wanted::any(k), rng);
            }
        }
    }
    questions.iter().all(|(q, t)| answer(*q, &scene).as_deref() == Some(t.as_str())).then_some(scene)
}
