//! The study's two model figures, drawn from its own checkpoints and held-out data:
//! `mim_reconstructions.png` (seed 0's pre-trained models that have MIM, on test images
//! and their captions) and `attention.png` (seed 0's `full` model fine-tuned on VQA, on test
//! questions).
use std::path::{Path, PathBuf};

use super::plan::{Job, JobKind, StudySpec, Variant};
use crate::data::dataset::Dataset;
use crate::data::image_io::decode_rgba;
use crate::error::Result;
use crate::report::{attention::attention, mim::mim_reconstructions, FigureSample};
use crate::tasks::M3ae;

/// Images per figure.
const SAMPLES: usize = 4;

/// The first `n` samples (one per image) of `{data_root}/{file}`, through `m`'s transform.
fn samples(m: &M3ae, file: &Path, n: usize) -> Result<Vec<FigureSample>> {
    let ds = Dataset::open(file, "")?;
    let mut out = Vec::new();
    let mut last_row = None;
    for &(row, t) in &ds.index {
        if out.len() == n {
            break;
        }
        if last_row == Some(row) {
            continue; // one text per image
        }
        last_row = Some(row);
        let image = m.image_from_rgba(&decode_rgba(ds.image_bytes(row)?, &format!("{}, row {row}", file.display()))?)?;
        out.push(FigureSample { image, text: ds.texts[row][t].clone(), label: format!("{} #{row}", ds.name) });
    }
    Ok(out)
}

fn seed0(jobs: &[Job], pick: impl Fn(&Job) -> bool) -> impl Iterator<Item = &Job> {
    let first_seed = jobs.iter().map(|j| j.seed).min();
    jobs.iter().filter(move |j| Some(j.seed) == first_seed && pick(j))
}

/// Draws the figures the study's runs allow; returns their paths. A figure whose inputs the
/// study lacks (no MIM variant, no VQA task, no test split) is left out with a log line.
pub fn draw(spec: &StudySpec, jobs: &[Job]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // the data the runs read: `data_root` of the first M3AE run's resolved config (stage 0 reads its own corpus)
    let Some(first) = jobs.iter().find(|j| j.kind != JobKind::Encoders) else { return Ok(written) };
    let config = crate::config::keys::read_json(&first.run_dir.join("config.json"))?;
    let data_root = PathBuf::from(config.get("data_root").and_then(|v| v.as_str()).unwrap_or(""));
    let device = tch::Device::Cpu;
    // MIM: every pre-trained variant with MIM, first seed, its last checkpoint
    let mim_models: Vec<(&str, M3ae)> = seed0(jobs, |j| j.kind == JobKind::Pretrain && j.variant.has_mim())
        .map(|j| Ok((j.variant.name(), M3ae::load(&j.run_dir.join("checkpoints/last"), device)?)))
        .collect::<Result<_>>()?;
    let captions = data_root.join("roco_test.arrow");
    match mim_models.first() {
        Some((_, m)) if captions.is_file() => {
            let s = samples(m, &captions, SAMPLES)?;
            let refs: Vec<(&str, &M3ae)> = mim_models.iter().map(|(n, m)| (*n, m)).collect();
            written.push(mim_reconstructions(&refs, &s, 0, &spec.out.join("mim_reconstructions.png"))?.path);
        }
        _ => log::info!("mim_reconstructions.png left out: no pre-trained variant with MIM, or no {}", captions.display()),
    }
    // attention: the full model fine-tuned on VQA (else the first VQA run), best checkpoint
    let vqa = seed0(jobs, |_| true)
        .filter_map(|j| match &j.kind {
            JobKind::Finetune { task } if task.starts_with("vqa_") => Some((j, task)),
            _ => None,
        })
        .min_by_key(|(j, _)| j.variant != Variant::Full);
    match vqa {
        Some((j, task)) => {
            let m = M3ae::load(&j.run_dir.join("checkpoints/best"), device)?;
            let questions = data_root.join(format!("{task}_test.arrow"));
            if questions.is_file() {
                let s = samples(&m, &questions, SAMPLES - 1)?;
                written.push(attention(&m, &s, 3, &spec.out.join("attention.png"))?.path);
            } else {
                log::info!("attention.png left out: no {}", questions.display());
            }
        }
        None => log::info!("attention.png left out: the study fine-tunes no VQA task"),
    }
    Ok(written)
}
