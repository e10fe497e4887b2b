//! A bundled, seeded generator of a small medical-style image–text dataset, written in
//! upstream's Arrow schemas so the same loaders and commands serve it and real data.
//!
//! - Images ([`image`]): radiograph-like grey films of a chest (body outline, lung fields,
//!   ribs, heart, spine) or a skull (vault, orbits, jaw), with findings ([`scene`]) that vary in
//!   kind (nodule, mass, cyst, effusion, fracture), size, side, zone, count and intensity.
//! - Captions ([`text`]) describe every finding; retrieval uses the image–caption pairs.
//! - VQA ([`vqa`]): closed and open questions in varied wording whose answers follow from the
//!   image only, balanced so that a text-only model is at chance.
//! - Files ([`crate::data::arrow_write`]): `roco_*`, `vqa_vqa_rad_*`, `irtr_roco_*` for train/val/test,
//!   `answers.json` (upstream's `label2ans`), and `tokenizer/` ([`bpe`]).
//!
//! The same seed gives byte-identical files: every image has its own random stream, keyed by
//! (seed, dataset, split, index), so the parallel rendering order does not matter.
pub mod bpe;
pub mod image;
pub mod place;
pub mod scene;
pub mod text;
pub mod vqa;


use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::arrow_write::{self as writer, CaptionRow, Flavor, VqaRow};
use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// What to generate. Counts are per split, in `SPLITS` order (train, val, test).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Seed of everything.
    pub seed: u64,
    /// Side of the stored square PNGs.
    pub image_px: usize,
    /// Images of `roco_*` (pre-training), one caption each.
    pub pretrain_images: [usize; 3],
    /// Questions of `vqa_vqa_rad_*`.
    pub vqa_questions: [usize; 3],
    /// Questions per VQA image.
    pub questions_per_image: usize,
    /// Image–caption pairs of `irtr_roco_*`.
    pub irtr_images: [usize; 3],
    /// Largest vocabulary of the trained tokenizer (specials and the 256 bytes included).
    pub tokenizer_vocab: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 0,
            image_px: 128,
            pretrain_images: [2000, 200, 200],
            vqa_questions: [1500, 300, 300],
            questions_per_image: 2,
            irtr_images: [1000, 200, 200],
            tokenizer_vocab: 800,
        }
    }
}

impl SynthOptions {
    /// Every count multiplied by `scale` (at least 1 each).
    pub fn scaled(mut self, scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0 && scale <= 100.0) {
            return Err(Error::Config(format!("synth: scale {scale} is not in (0, 100]")));
        }
        for counts in [&mut self.pretrain_images, &mut self.vqa_questions, &mut self.irtr_images] {
            for c in counts.iter_mut() {
                *c = ((*c as f64 * scale).round() as usize).max(1);
            }
        }
        Ok(self)
    }

    fn check(&self) -> Result<()> {
        if !(16..=1024).contains(&self.image_px) {
            return Err(Error::Config(format!("synth: image_px {} is not in 16..=1024", self.image_px)));
        }
        if !(1..=4).contains(&self.questions_per_image) {
            return Err(Error::Config(format!("synth: questions_per_image {} is not in 1..=4", self.questions_per_image)));
        }
        if !(300..=50_000).contains(&self.tokenizer_vocab) {
            return Err(Error::Config(format!("synth: tokenizer_vocab {} is not in 300..=50000 (5 specials + 256 bytes + merges)", self.tokenizer_vocab)));
        }
        let total: usize = [self.pretrain_images, self.irtr_images].iter().flatten().sum::<usize>() + self.vqa_questions.iter().sum::<usize>();
        if total > 2_000_000 {
            return Err(Error::Config(format!("synth: {total} images and questions requested; at most 2,000,000")));
        }
        Ok(())
    }
}

/// One file written.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// Path.
    pub path: PathBuf,
    /// Table rows (images).
    pub rows: usize,
    /// Texts (captions or questions): the samples upstream's dataset indexes.
    pub texts: usize,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// The Arrow files, in writing order.
    pub files: Vec<WrittenFile>,
    /// `answers.json`: upstream's `label2ans` (index = label).
    pub answers_path: PathBuf,
    /// Number of VQA answer classes (the `vqa_label_size` to configure).
    pub answer_vocab: usize,
    /// The tokenizer folder (`vocab.json`, `merges.txt`).
    pub tokenizer_dir: PathBuf,
    /// Tokenizer vocabulary size (before the loader's added tokens, which are all in it).
    pub tokenizer_vocab: usize,
    /// Wall time.
    pub seconds: f64,
}

/// splitmix64's step: the next state's output.
fn splitmix64(z: u64) -> u64 {
    let mut x = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The random stream of image `index` of `dataset` / `split`: the key's four fields hashed
/// one after another (splitmix64), so that no two keys share a stream. (XOR-ing them into one
/// word, as an earlier version did, made seed 1 draw seed 0's scenes with neighbouring
/// indices swapped: the demo's "separate" stage-0 corpus was the pre-training set reordered.)
pub fn image_rng(seed: u64, dataset: u64, split: usize, index: usize) -> ChaCha8Rng {
    let key = [seed, dataset, split as u64, index as u64].into_iter().fold(0u64, |h, field| splitmix64(h ^ field));
    ChaCha8Rng::seed_from_u64(key)
}

/// A generated VQA image before labels exist.
struct VqaImage {
    png: Vec<u8>,
    questions: Vec<String>,
    answers: Vec<String>,
    types: Vec<i64>,
}

/// Renders and encodes `scene`.
fn png(scene: &scene::Scene, px: usize) -> Result<Vec<u8>> {
    image::encode_png(&image::render(scene, px))
}

fn caption_rows(opts: &SynthOptions, tag: u64, name: &str, split: usize, n: usize, bar: &ProgressBar) -> Result<Vec<CaptionRow>> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = image_rng(opts.seed, tag, split, i);
            let scene = place::draw_scene(&mut rng);
            let caption = text::caption(&mut rng, &scene);
            let row = CaptionRow {
                image: png(&scene, opts.image_px)?,
                captions: vec![caption],
                image_id: format!("synth/{name}/{}/{i:06}.png", SPLITS[split]),
                split: SPLITS[split].to_string(),
            };
            bar.inc(1);
            Ok(row)
        })
        .collect()
}

fn vqa_images(opts: &SynthOptions, split: usize, questions: usize, bar: &ProgressBar) -> Result<Vec<VqaImage>> {
    let per = opts.questions_per_image;
    let images = questions.div_ceil(per);
    (0..images)
        .into_par_iter()
        .map(|i| {
            let mut rng = image_rng(opts.seed, 2, split, i);
            // the last image takes the remainder
            let n = if i + 1 == images { questions - per * (images - 1) } else { per };
            let plan = vqa::plan_image(&mut rng, n);
            let (mut qs, mut answers, mut types) = (Vec::new(), Vec::new(), Vec::new());
            for (q, a) in &plan.questions {
                qs.push(vqa::wording(&mut rng, *q));
                answers.push(a.clone());
                types.push(vqa::answer_type(*q));
            }
            let image = VqaImage { png: png(&plan.scene, opts.image_px)?, questions: qs, answers, types };
            bar.inc(1);
            Ok(image)
        })
        .collect()
}

/// Generates the dataset into `out_dir` (created): the nine Arrow files, `answers.json` and
/// `tokenizer/`.
pub fn generate(opts: &SynthOptions, out_dir: &Path) -> Result<SynthSummary> {
    opts.check()?;
    let start = Instant::now();
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let vqa_images_total: usize = opts.vqa_questions.iter().map(|q| q.div_ceil(opts.questions_per_image)).sum();
    let total = opts.pretrain_images.iter().chain(&opts.irtr_images).sum::<usize>() + vqa_images_total;
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("synth {bar:30} {pos}/{len} images ({per_sec}, ETA {eta})") {
        bar.set_style(style);
    }
    let mut files = Vec::new();
    let mut train_texts: Vec<String> = Vec::new();
    for (tag, name, counts) in [(0u64, "roco", opts.pretrain_images), (1, "irtr_roco", opts.irtr_images)] {
        for (split, &n) in counts.iter().enumerate() {
            let rows = caption_rows(opts, tag, name, split, n, &bar)?;
            if split == 0 {
                train_texts.extend(rows.iter().flat_map(|r| r.captions.iter().cloned()));
            }
            let path = out_dir.join(format!("{name}_{}.arrow", SPLITS[split]));
            writer::write_captions(&path, &rows, Flavor::PANDAS1)?;
            files.push(WrittenFile { path, rows: rows.len(), texts: rows.len() });
        }
    }
    let vqa: Vec<Vec<VqaImage>> = (0..3).map(|s| vqa_images(opts, s, opts.vqa_questions[s], &bar)).collect::<Result<_>>()?;
    bar.finish_and_clear();
    train_texts.extend(vqa[0].iter().flat_map(|im| im.questions.iter().cloned()));
    // upstream's label2ans: answers in order of first occurrence over train, val, test
    let mut label2ans: Vec<String> = Vec::new();
    for im in vqa.iter().flatten() {
        for a in &im.answers {
            if !label2ans.contains(a) {
                label2ans.push(a.clone());
            }
        }
    }
    let mut qid = 0i64;
    for (split, images) in vqa.into_iter().enumerate() {
        let rows: Vec<VqaRow> = images
            .into_iter()
            .enumerate()
            .map(|(i, im)| {
                let n = im.questions.len();
                let labels: Vec<Vec<i64>> = im.answers.iter().map(|a| vec![label2ans.iter().position(|x| x == a).unwrap_or(0) as i64]).collect();
                let question_id = (qid..qid + n as i64).collect();
                qid += n as i64;
                VqaRow {
                    image: im.png,
                    questions: im.questions,
                    answers: im.answers.into_iter().map(|a| vec![a]).collect(),
                    answer_labels: labels,
                    answer_scores: vec![vec![1.0]; n],
                    image_id: format!("synth/vqa_vqa_rad/{}/{i:06}.png", SPLITS[split]),
                    question_id,
                    answer_type: im.types,
                    split: SPLITS[split].to_string(),
                }
            })
            .collect();
        let path = out_dir.join(format!("vqa_vqa_rad_{}.arrow", SPLITS[split]));
        writer::write_vqa(&path, &rows, Flavor::PANDAS1)?;
        let texts = rows.iter().map(|r| r.questions.len()).sum();
        files.push(WrittenFile { path, rows: rows.len(), texts });
    }
    let answers_path = out_dir.join("answers.json");
    let json = serde_json::to_string(&label2ans).map_err(|e| Error::Json { path: answers_path.clone(), source: e })?;
    std::fs::write(&answers_path, json).map_err(|e| Error::io(&answers_path, e))?;
    let tokenizer_dir = out_dir.join("tokenizer");
    let tokenizer_vocab = bpe::train(&train_texts, opts.tokenizer_vocab, &tokenizer_dir)?;
    let summary = SynthSummary { files, answers_path, answer_vocab: label2ans.len(), tokenizer_dir, tokenizer_vocab, seconds: start.elapsed().as_secs_f64() };
    log::info!("synth: {} files, {} answers, tokenizer of {} in {:.1} s", summary.files.len(), summary.answer_vocab, summary.tokenizer_vocab, summary.seconds);
    Ok(summary)
}
