//! One micro-batch of a task: upstream's `training_step` / `validation_step` for each
//! objective family. In training each objective is backpropagated right after its forward
//! (into the summed gradients); in evaluation nothing keeps a graph. Either way the phase's
//! metrics are updated with upstream's rules.
use rand::Rng;
use tch::{Device, Tensor};

use super::metrics::PhaseMetrics;
use super::objectives::{compute_cls, compute_irtr, compute_itm, compute_mim, compute_mlm, compute_vqa};
use super::optim::{AdamW, Gradients};
use super::pretrain::{pretrain_gradients_scaled, PretrainBatch};
use super::task::TaskKind;
use crate::data::collate::Batch;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions, M3aeTransformerSs};

/// What one micro-batch gave.
#[derive(Debug)]
pub struct MicroOutput {
    /// d(Σ wᵢ·lossᵢ)/dθ (training only).
    pub gradients: Option<Gradients>,
    /// Each objective's loss before its weight, by upstream name (`mlm`, `vqa`, …).
    pub losses: Vec<(&'static str, f64)>,
    /// Samples in the batch.
    pub samples: usize,
}

/// The batch's tensors on the model's device.
struct OnDevice {
    image: Tensor,
    ids: Tensor,
    masks: Tensor,
    ids_mlm: Tensor,
    labels_mlm: Tensor,
}

fn first_view(batch: &Batch) -> Result<&Tensor> {
    batch.image.first().ok_or_else(|| Error::input("batch", "no image view"))
}

fn required<'a>(t: &'a Option<Tensor>, what: &str) -> Result<&'a Tensor> {
    t.as_ref().ok_or_else(|| Error::input("batch", format!("no `{what}`: the dataset does not match the task")))
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// Runs one micro-batch of `task`. With an optimizer it trains: dropout on, and the gradients
/// of the weighted sum; without one nothing keeps a graph. `rng` draws upstream's ITM pairing.
/// Metrics go to `metrics`.
pub fn run_micro(model: &M3aeTransformerSs, opt: Option<&AdamW>, batch: &Batch, task: TaskKind, metrics: &mut PhaseMetrics, rng: &mut impl Rng) -> Result<MicroOutput> {
    run_micro_scaled(model, opt, batch, task, metrics, rng, 1.0)
}

/// [`run_micro`] with the losses multiplied by `loss_scale` before backpropagation (fp16's
/// dynamic loss scaling; the caller unscales the gradients). Logged losses are unscaled.
pub fn run_micro_scaled(model: &M3aeTransformerSs, opt: Option<&AdamW>, batch: &Batch, task: TaskKind, metrics: &mut PhaseMetrics, rng: &mut impl Rng, loss_scale: f64) -> Result<MicroOutput> {
    let train = opt.is_some();
    let device: Device = model.device();
    let d = OnDevice {
        image: first_view(batch)?.to_device(device),
        ids: batch.text.ids.to_device(device),
        masks: batch.text.masks.to_device(device),
        ids_mlm: batch.text.ids_mlm.to_device(device),
        labels_mlm: batch.text.labels_mlm.to_device(device),
    };
    let w = model.config.loss_names;
    let opts = InferOptions { train, ..Default::default() };
    // MIM noise from each sample's own stream (keyed by seed, epoch and sample index)
    let grid = model.config.grid();
    let noise = (w.mim > 0.0).then(|| batch.mim_noise(grid * grid).to_device(device));
    let input = InferInput { image: &d.image, text_ids: &d.ids, text_masks: &d.masks, text_ids_mlm: Some(&d.ids_mlm), mim_noise: noise.as_ref() };
    let mut losses = Vec::new();
    let mut grads: Option<Gradients> = None;
    // backpropagates a weighted loss into `grads` (training) and keeps its value
    let mut take = |name: &'static str, loss: &Tensor, weight: f64, grads: &mut Option<Gradients>| -> Result<f64> {
        if let Some(opt) = opt {
            opt.accumulate(grads, &(loss * (weight * loss_scale)))?;
        }
        let v = scalar(loss);
        losses.push((name, v));
        Ok(v)
    };
    match task {
        TaskKind::Pretrain => {
            // A micro-batch without any masked token: upstream's cross entropy gives a NaN loss
            // and an all-zero (finite) gradient, so its optimizer step goes on. Here the pass
            // runs as upstream's does (the same zero gradient reaches AdamW), and the NaN is
            // neither logged nor averaged: the micro-batch is counted instead.
            let mlm_targets = bool::try_from(batch.text.labels_mlm.ne(-100).any())?;
            let itm = if w.itm > 0.0 { Some(batch.itm(rng).ok_or_else(|| Error::input("batch", "ITM needs a false image per sample (draw_false_image ≥ 1)"))?) } else { None };
            let (itm_images, itm_labels) = match &itm {
                Some((images, labels)) => (Some(images[0].to_device(device)), Some(labels.to_device(device))),
                None => (None, None),
            };
            if let Some(opt) = opt {
                // the false image only matters where the label is 0: the mixed batch serves
                let labels = itm_labels.unwrap_or_else(|| Tensor::ones([d.ids.size()[0]], (tch::Kind::Int64, device)));
                let mixed = itm_images.unwrap_or_else(|| d.image.shallow_clone());
                let pb = PretrainBatch { image: &d.image, text_ids: &d.ids, text_masks: &d.masks, text_ids_mlm: &d.ids_mlm, text_labels_mlm: &d.labels_mlm, mim_noise: noise.as_ref(), itm_labels: &labels, false_image: &mixed };
                let step = pretrain_gradients_scaled(model, opt, &pb, true, loss_scale)?;
                let l = &step.losses;
                if let (Some(loss), Some(logits), Some(labels)) = (&l.mlm, &l.mlm_logits, &l.mlm_labels) {
                    if mlm_targets {
                        losses.push(("mlm", scalar(loss)));
                        metrics.mlm_loss.update(scalar(loss));
                    } else {
                        metrics.mlm_without_targets += 1.0;
                    }
                    metrics.mlm_accuracy.update(logits, labels);
                }
                if let Some(loss) = &l.mim {
                    losses.push(("mim", scalar(loss)));
                    metrics.mim_loss.update(scalar(loss));
                }
                if let (Some(loss), Some(logits)) = (&l.itm, &l.itm_logits) {
                    losses.push(("itm", scalar(loss)));
                    metrics.itm_loss.update(scalar(loss));
                    metrics.itm_accuracy.update(logits, &labels);
                }
                grads = Some(step.gradients);
            } else {
                tch::no_grad(|| -> Result<()> {
                    if w.mlm > 0.0 {
                        let r = compute_mlm(model, &input, &d.labels_mlm, &opts)?;
                        if mlm_targets {
                            metrics.mlm_loss.update(take("mlm", &r.loss, w.mlm, &mut grads)?);
                        } else {
                            metrics.mlm_without_targets += 1.0;
                        }
                        metrics.mlm_accuracy.update(&r.logits, &r.labels);
                    }
                    if w.mim > 0.0 {
                        let r = compute_mim(model, &input, &opts)?;
                        metrics.mim_loss.update(take("mim", &r.loss, w.mim, &mut grads)?);
                    }
                    if let (Some(images), Some(labels)) = (&itm_images, &itm_labels) {
                        let r = compute_itm(model, &InferInput { image: images, ..input }, labels, &opts)?;
                        metrics.itm_loss.update(take("itm", &r.loss, w.itm, &mut grads)?);
                        metrics.itm_accuracy.update(&r.logits, labels);
                    }
                    Ok(())
                })?;
            }
        }
        TaskKind::Vqa => {
            let targets = required(&batch.vqa_targets, "vqa_targets")?.to_device(device);
            let types = required(&batch.answer_types, "answer_types")?;
            let r = with_grad(train, || compute_vqa(model, &input, &targets, &opts))?;
            metrics.vqa_loss.update(take("vqa", &r.loss, w.vqa, &mut grads)?);
            metrics.vqa_score.update(&r.logits.detach(), &targets, types);
        }
        TaskKind::Cls => {
            let labels = required(&batch.cls_labels, "cls_labels")?.to_device(device);
            let r = with_grad(train, || compute_cls(model, &input, &labels, &opts))?;
            metrics.cls_loss.update(take("cls", &r.loss, w.cls, &mut grads)?);
            metrics.cls_accuracy.update(&r.logits.detach(), &labels);
        }
        TaskKind::Irtr => {
            if batch.false_texts.is_empty() {
                return Err(Error::input("batch", "IRTR needs false texts (draw_false_text ≥ 1)"));
            }
            let (ids, masks) = (batch.irtr_text_ids().to_device(device), batch.irtr_text_masks().to_device(device));
            let r = with_grad(train, || compute_irtr(model, &d.image, &ids, &masks, &opts))?;
            metrics.irtr_loss.update(take("irtr", &r.loss, w.irtr, &mut grads)?);
        }
    }
    Ok(MicroOutput { gradients: grads, losses, samples: batch.indices.len() })
}

/// Runs `f` with autograd on (training) or off.
fn with_grad<T>(train: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if train {
        f()
    } else {
        tch::no_grad(f)
    }
}

/// The seed of torch's generator for micro-batch `micro` of optimizer step `step`.
pub fn stream_seed(seed: u64, step: u64, micro: u64) -> i64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ micro.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}
