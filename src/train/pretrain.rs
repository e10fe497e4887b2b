//! One pre-training step: upstream `M3AETransformerSS.forward` with `mlm`, `mim` and `itm`
//! on, each objective backpropagated right after its forward, and the plain images encoded
//! once for the two objectives that read them.
//!
//! Upstream runs one whole `infer` per objective. MLM reads the B true images; ITM reads the
//! true image where its label is 1 and a false one where it is 0, so upstream encodes every
//! positive ITM row's image a second time. CLIP has no dropout, so the two encodings are the
//! same tensor. Here the true images and the false images ITM needs go through CLIP (and
//! `multi_modal_vision_proj`) once; MLM and ITM read their rows from a detached copy, and
//! CLIP's backward runs once, on the sum of both objectives' gradients. Losses and gradients
//! are upstream's up to float summation order; at batch B with B/2 negatives, CLIP encodes
//! 1.5·B full images instead of 2·B.
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use super::objectives::{compute_mim, itm_from, mlm_from};
use super::optim::{AdamW, Gradients};
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions, M3aeTransformerSs};

/// One pre-training batch, as upstream's collator and `compute_itm` lay it out.
#[derive(Debug, Clone, Copy)]
pub struct PretrainBatch<'a> {
    /// [B, 3, S, S], normalized.
    pub image: &'a Tensor,
    /// [B, L] ids and 0/1 mask.
    pub text_ids: &'a Tensor,
    pub text_masks: &'a Tensor,
    /// [B, L] ids after MLM masking, and their labels (-100 where not predicted).
    pub text_ids_mlm: &'a Tensor,
    pub text_labels_mlm: &'a Tensor,
    /// [B, grid²] noise for `random_masking`; drawn with `torch.rand` when absent.
    pub mim_noise: Option<&'a Tensor>,
    /// [B] int64: 1 pairs the row's text with its own image, 0 with `false_image`'s row.
    pub itm_labels: &'a Tensor,
    /// [B, 3, S, S], read only where the label is 0 (so the mixed ITM batch itself serves).
    pub false_image: &'a Tensor,
}

/// Each objective's loss before its weight (detached scalars); `None` where it is off. The
/// MLM and ITM logits (detached) feed the accuracy metrics.
#[derive(Debug, Default)]
pub struct PretrainLosses {
    pub mlm: Option<Tensor>,
    pub mim: Option<Tensor>,
    pub itm: Option<Tensor>,
    /// [N, vocab]: at the N positions with an MLM label, in row-major order.
    pub mlm_logits: Option<Tensor>,
    /// [N]: those labels.
    pub mlm_labels: Option<Tensor>,
    /// [B, 2]
    pub itm_logits: Option<Tensor>,
}

/// Wall time of the forward and backward passes of one step (no device sync inside).
#[derive(Debug, Clone, Copy, Default)]
pub struct PassTimes {
    pub forward: Duration,
    pub backward: Duration,
}

/// What [`pretrain_gradients`] returns: the gradient of Σ wᵢ·lossᵢ for [`AdamW::apply`].
#[derive(Debug)]
pub struct PretrainStep {
    pub gradients: Gradients,
    pub losses: PretrainLosses,
    pub times: PassTimes,
}

/// Forward and backward of every objective among mlm, mim, itm whose weight in `loss_names`
/// is > 0, in upstream's order (the order it draws random numbers in). `train` turns dropout on.
pub fn pretrain_gradients(model: &M3aeTransformerSs, opt: &AdamW, batch: &PretrainBatch, train: bool) -> Result<PretrainStep> {
    pretrain_gradients_scaled(model, opt, batch, train, 1.0)
}

/// [`pretrain_gradients`] of `loss_scale` × Σ wᵢ·lossᵢ (fp16's dynamic loss scaling: the
/// caller unscales). The returned losses are unscaled.
pub fn pretrain_gradients_scaled(model: &M3aeTransformerSs, opt: &AdamW, batch: &PretrainBatch, train: bool, loss_scale: f64) -> Result<PretrainStep> {
    let w = model.config.loss_names;
    let (mlm_on, mim_on, itm_on) = (w.mlm > 0.0, w.mim > 0.0, w.itm > 0.0);
    if !(mlm_on || mim_on || itm_on) {
        return Err(Error::Config("pre-training needs mlm, mim or itm > 0 in loss_names".into()));
    }
    let b = match batch.text_ids.size().as_slice() {
        &[b, _] => b,
        other => return Err(Error::input("text_ids", format!("must be [B, L], got {other:?}"))),
    };
    if itm_on {
        check_itm(batch, b)?;
    }
    let opts = InferOptions { train, ..Default::default() };
    let input = InferInput { image: batch.image, text_ids: batch.text_ids, text_masks: batch.text_masks, text_ids_mlm: Some(batch.text_ids_mlm), mim_noise: batch.mim_noise };
    let mut losses = PretrainLosses::default();
    let mut pass = Passes { opt, grads: None, times: PassTimes::default(), leaf_grad: None };

    // The shared image encoding: [B + negatives, Lv, H] (or only what the one reader needs).
    let shared = pass.forward(|| (mlm_on || itm_on).then(|| shared_images(model, batch, b, mlm_on, itm_on)).transpose())?;

    if mlm_on {
        let leaf = &shared.as_ref().expect("encoded for mlm").leaf;
        let (loss, logits, labels) = pass.forward(|| {
            // the text stream only: MLM reads nothing else of its pass
            let feats = model.infer_mlm(&input, Some(&leaf.narrow(0, 0, b)), &opts)?;
            let out = mlm_from(model, feats, batch.text_labels_mlm)?;
            Ok((out.loss, out.logits, out.labels))
        })?;
        pass.backward(&(&loss * (w.mlm * loss_scale)), Some(leaf))?;
        losses.mlm = Some(loss.detach());
        losses.mlm_logits = Some(logits.detach());
        losses.mlm_labels = Some(labels);
    }
    if mim_on {
        let loss = pass.forward(|| Ok(compute_mim(model, &input, &opts)?.loss))?;
        pass.backward(&(&loss * (w.mim * loss_scale)), None)?;
        losses.mim = Some(loss.detach());
    }
    if itm_on {
        let SharedImages { leaf, itm_rows, .. } = shared.as_ref().expect("encoded for itm");
        let (loss, logits) = pass.forward(|| {
            let feats = leaf.index_select(0, itm_rows.as_ref().expect("itm rows"));
            // ITM reads the [CLS] rows only
            let infer = model.infer_from_image_feats(&input, &feats, &InferOptions { cls_only: true, ..opts })?;
            let out = itm_from(model, infer, batch.itm_labels)?;
            Ok((out.loss, out.logits))
        })?;
        pass.backward(&(&loss * (w.itm * loss_scale)), Some(leaf))?;
        losses.itm = Some(loss.detach());
        losses.itm_logits = Some(logits.detach());
    }
    if let (Some(SharedImages { encoded, .. }), Some(g)) = (shared, pass.leaf_grad.take()) {
        // CLIP's backward, once: d/dθ Σ(encoded · g) = (∂encoded/∂θ)ᵀ g
        pass.backward(&(encoded * g).sum(Kind::Float), None)?;
    }
    let gradients = pass.grads.expect("at least one objective ran");
    Ok(PretrainStep { gradients, losses, times: pass.times })
}

/// The step's running state: the parameter gradients so far, the pass times, and the sum of
/// the objectives' gradients w.r.t. the shared image encoding.
struct Passes<'a> {
    opt: &'a AdamW,
    grads: Option<Gradients>,
    times: PassTimes,
    leaf_grad: Option<Tensor>,
}

impl Passes<'_> {
    /// Runs a forward pass, timed.
    fn forward<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let out = f();
        self.times.forward += t.elapsed();
        out
    }

    /// Backpropagates `loss` into the parameter gradients, timed; with `leaf` (the shared
    /// encoding), also adds d`loss`/d`leaf` to `leaf_grad`.
    fn backward(&mut self, loss: &Tensor, leaf: Option<&Tensor>) -> Result<()> {
        let t = Instant::now();
        let g = self.opt.accumulate_with(&mut self.grads, loss, leaf.as_slice())?;
        self.times.backward += t.elapsed();
        match (self.leaf_grad.as_mut(), g.into_iter().next().filter(Tensor::defined)) {
            (Some(acc), Some(g)) => tch::no_grad(|| {
                let _ = acc.g_add_(&g);
            }),
            (None, Some(g)) => self.leaf_grad = Some(g),
            (_, None) => {}
        }
        Ok(())
    }
}

/// The image encoding MLM and ITM share.
struct SharedImages {
    /// [n, Lv, H]: CLIP + `multi_modal_vision_proj`, with its graph.
    encoded: Tensor,
    /// `encoded`, detached: the objectives read it and differentiate against it.
    leaf: Tensor,
    /// [B]: the row of `leaf` ITM pairs with each text (None when ITM is off).
    itm_rows: Option<Tensor>,
}

fn shared_images(model: &M3aeTransformerSs, batch: &PretrainBatch, b: i64, mlm_on: bool, itm_on: bool) -> Result<SharedImages> {
    let s = model.config.image_size;
    if batch.image.size() != [b, 3, s, s] {
        return Err(Error::input("image", format!("expected [{b}, 3, {s}, {s}], got {:?}", batch.image.size())));
    }
    let device = batch.image.device();
    let negative = batch.itm_labels.eq(0); // [B] bool
    let (images, rows) = match (mlm_on, itm_on) {
        (_, false) => (batch.image.shallow_clone(), None),
        // ITM alone reads exactly its mixed batch
        (false, true) => (batch.image.where_self(&negative.eq(0).view([b, 1, 1, 1]), batch.false_image), Some(Tensor::arange(b, (Kind::Int64, device)))),
        (true, true) => {
            // [B true ‖ n false] images; ITM row i reads i (label 1) or B + (its rank among the negatives)
            let false_rows = negative.nonzero().squeeze_dim(1);
            let images = Tensor::cat(&[batch.image, &batch.false_image.index_select(0, &false_rows)], 0);
            let rank = negative.cumsum(0, Kind::Int64) - 1;
            let rows = (rank + b).where_self(&negative, &Tensor::arange(b, (Kind::Int64, device)));
            (images, Some(rows))
        }
    };
    let (encoded, _) = model.encode_image(&images, None, None); // [n, Lv, H]
    let leaf = encoded.detach().set_requires_grad(true);
    Ok(SharedImages { encoded, leaf, itm_rows: rows })
}

fn check_itm(batch: &PretrainBatch, b: i64) -> Result<()> {
    if batch.itm_labels.size() != [b] || batch.itm_labels.kind() != Kind::Int64 {
        return Err(Error::input("itm_labels", format!("expected [{b}] int64, got {:?} {:?}", batch.itm_labels.size(), batch.itm_labels.kind())));
    }
    let bad = batch.itm_labels.ne(0).logical_and(&batch.itm_labels.ne(1)).any();
    if bool::try_from(bad)? {
        return Err(Error::input("itm_labels", "labels must be 0 or 1"));
    }
    if batch.false_image.size() != batch.image.size() {
        return Err(Error::input("false_image", format!("expected the image's shape {:?}, got {:?}", batch.image.size(), batch.false_image.size())));
    }
    Ok(())
}
