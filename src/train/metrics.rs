//! Upstream's metrics (`gadgets/my_metrics.py`, `m3ae_utils.epoch_wrapup`,
//! `objectives.compute_irtr_recall`), accumulated over a phase and logged under upstream's
//! names (`vqa/val/score_epoch`, `val/recalls/ir_r1`, `val/the_metric`, …).
use tch::{Kind, Tensor};

use crate::config::LossNames;

/// `Accuracy`: argmax over the last dimension, positions whose target is −100 ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accuracy {
    pub correct: f64,
    pub total: f64,
}

impl Accuracy {
    /// `logits` [.., C], `target` [..] int64.
    pub fn update(&mut self, logits: &Tensor, target: &Tensor) {
        let preds = logits.argmax(-1, false).view([-1]);
        let target = target.view([-1]).to_device(preds.device());
        let keep = target.ne(-100);
        let n = i64::try_from(keep.sum(Kind::Int64)).unwrap_or(0);
        if n == 0 {
            return;
        }
        let correct = preds.masked_select(&keep).eq_tensor(&target.masked_select(&keep)).sum(Kind::Int64);
        self.correct += i64::try_from(correct).unwrap_or(0) as f64;
        self.total += n as f64;
    }

    /// correct / total (NaN with nothing counted, as upstream's 0/0).
    pub fn compute(&self) -> f64 {
        self.correct / self.total
    }
}

/// `Scalar`: the mean of the values it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scalar {
    pub sum: f64,
    pub count: f64,
}

impl Scalar {
    pub fn update(&mut self, v: f64) {
        self.sum += v;
        self.count += 1.0;
    }

    pub fn compute(&self) -> f64 {
        self.sum / self.count
    }
}

/// `VQARADScore`: each question scores its argmax answer's target score; the score is also
/// split by answer type (0 closed, 1 open). The best epoch's values persist across resets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VqaScore {
    pub score: f64,
    pub total: f64,
    pub close_score: f64,
    pub close_total: f64,
    pub open_score: f64,
    pub open_total: f64,
    pub best_score: f64,
    pub best_close_score: f64,
    pub best_open_score: f64,
}

impl VqaScore {
    /// `logits` [B, V], `targets` [B, V] scores, `types` [B].
    pub fn update(&mut self, logits: &Tensor, targets: &Tensor, types: &Tensor) {
        let pred = logits.argmax(1, true); // [B, 1]
        let targets = targets.to_device(pred.device()).to_kind(Kind::Double);
        let scores = targets.gather(1, &pred, false).view([-1]); // [B]
        let types = types.to_device(pred.device());
        let sum = |mask: &Tensor| -> (f64, f64) {
            let s = f64::try_from(scores.masked_select(mask).sum(Kind::Double)).unwrap_or(0.0);
            (s, i64::try_from(mask.sum(Kind::Int64)).unwrap_or(0) as f64)
        };
        let (cs, cn) = sum(&types.eq(0));
        let (os, on) = sum(&types.eq(1));
        self.close_score += cs;
        self.close_total += cn;
        self.open_score += os;
        self.open_total += on;
        self.score += f64::try_from(scores.sum(Kind::Double)).unwrap_or(0.0);
        self.total += scores.size()[0] as f64;
    }

    pub fn compute(&self) -> f64 {
        self.score / self.total
    }

    pub fn close(&self) -> f64 {
        if self.close_total == 0.0 { 0.0 } else { self.close_score / self.close_total }
    }

    pub fn open(&self) -> f64 {
        if self.open_total == 0.0 { 0.0 } else { self.open_score / self.open_total }
    }

    /// `get_best_score`: the best epoch so far (the best starts at 0), updated with this one.
    pub fn update_best(&mut self) {
        let score = self.compute();
        if score > self.best_score {
            self.best_score = score;
            self.best_close_score = self.close();
            self.best_open_score = self.open();
        }
    }

    /// Clears the epoch's sums, keeping the best epoch.
    pub fn reset(&mut self) {
        *self = VqaScore { best_score: self.best_score, best_close_score: self.best_close_score, best_open_score: self.best_open_score, ..Default::default() };
    }
}

/// Recall@{1,5,10} in both directions, as `compute_irtr_recall`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recalls {
    pub ir_r1: f64,
    pub ir_r5: f64,
    pub ir_r10: f64,
    pub tr_r1: f64,
    pub tr_r5: f64,
    pub tr_r10: f64,
}

/// Recalls from `scores` [I, T] (image i against text t), the image id of each image row and
/// of each text. Text retrieval R@k: an image's own text is among its top-k texts; image
/// retrieval R@k: a text's own image is among its top-k images. With fewer than k candidates
/// (upstream's `topk` would fail), every candidate counts as within the top k; `short` then
/// names what fell short.
pub fn recalls(scores: &Tensor, image_ids: &[i64], text_image_ids: &[i64]) -> (Recalls, Vec<String>) {
    let (ni, nt) = (image_ids.len() as i64, text_image_ids.len() as i64);
    let iids = Tensor::from_slice(image_ids);
    let tiids = Tensor::from_slice(text_image_ids);
    let scores = scores.to_device(tch::Device::Cpu);
    let mut short = Vec::new();
    let mut at = |k: i64, dim: i64| -> f64 {
        let n = if dim == 1 { nt } else { ni };
        if n < k {
            short.push(format!("R@{k} over {n} {}", if dim == 1 { "texts" } else { "images" }));
        }
        let (_, idx) = scores.topk(k.min(n), dim, true, true);
        if dim == 1 {
            // tr: [I, k] text indices -> their image ids, compared with each row's image id
            let hits = tiids.index_select(0, &idx.view([-1])).view([ni, -1]).eq_tensor(&iids.unsqueeze(1));
            f64::try_from(hits.any_dim(1, false).to_kind(Kind::Double).mean(Kind::Double)).unwrap_or(f64::NAN)
        } else {
            // ir: [k, T] image indices -> their ids, compared with each text's image id
            let hits = iids.index_select(0, &idx.view([-1])).view([-1, nt]).eq_tensor(&tiids.unsqueeze(0));
            f64::try_from(hits.any_dim(0, false).to_kind(Kind::Double).mean(Kind::Double)).unwrap_or(f64::NAN)
        }
    };
    let r = Recalls { tr_r1: at(1, 1), tr_r5: at(5, 1), tr_r10: at(10, 1), ir_r1: at(1, 0), ir_r5: at(5, 0), ir_r10: at(10, 0) };
    (r, short)
}

/// One phase's accumulators (train, val or test), one per objective that is on.
#[derive(Debug, Clone, Default)]
pub struct PhaseMetrics {
    pub mlm_accuracy: Accuracy,
    pub mlm_loss: Scalar,
    pub mim_loss: Scalar,
    pub itm_accuracy: Accuracy,
    pub itm_loss: Scalar,
    pub vqa_score: VqaScore,
    pub vqa_loss: Scalar,
    pub cls_accuracy: Accuracy,
    pub cls_loss: Scalar,
    pub irtr_loss: Scalar,
    /// Pre-training micro-batches without any MLM target (no masked token): their MLM loss
    /// is upstream's NaN, left out of `mlm_loss`.
    pub mlm_without_targets: f64,
}

/// Named values as upstream logs them, in order.
pub type Named = Vec<(String, f64)>;

impl PhaseMetrics {
    /// The epoch's sums (not the VQA best epoch), in a fixed order: what the ranks of a
    /// multi-process run add up before [`Self::wrapup`], as torchmetrics' `dist_reduce_fx="sum"`.
    pub fn sums(&self) -> Vec<f64> {
        let v = &self.vqa_score;
        let mut out = vec![v.score, v.total, v.close_score, v.close_total, v.open_score, v.open_total];
        for a in [&self.mlm_accuracy, &self.itm_accuracy, &self.cls_accuracy] {
            out.extend([a.correct, a.total]);
        }
        for s in [&self.mlm_loss, &self.mim_loss, &self.itm_loss, &self.vqa_loss, &self.cls_loss, &self.irtr_loss] {
            out.extend([s.sum, s.count]);
        }
        out.push(self.mlm_without_targets);
        out
    }

    /// Replaces the epoch's sums with `sums` (the layout of [`Self::sums`]).
    pub fn set_sums(&mut self, sums: &[f64]) {
        let mut it = sums.iter().copied();
        let mut next = || it.next().unwrap_or(0.0);
        let v = &mut self.vqa_score;
        (v.score, v.total, v.close_score, v.close_total, v.open_score, v.open_total) = (next(), next(), next(), next(), next(), next());
        for a in [&mut self.mlm_accuracy, &mut self.itm_accuracy, &mut self.cls_accuracy] {
            (a.correct, a.total) = (next(), next());
        }
        for s in [&mut self.mlm_loss, &mut self.mim_loss, &mut self.itm_loss, &mut self.vqa_loss, &mut self.cls_loss, &mut self.irtr_loss] {
            (s.sum, s.count) = (next(), next());
        }
        self.mlm_without_targets = next();
    }

    /// `epoch_wrapup`: each objective's epoch values under upstream's names and the
    /// `{phase}/the_metric` sum (plus `ir_r1 + tr_r1` when `recalls` are given, logged as
    /// `{phase}/recalls/*`). Clears the sums (the VQA best epoch persists).
    pub fn wrapup(&mut self, phase: &str, on: &LossNames, recalls: Option<&Recalls>) -> Named {
        let mut out: Named = Vec::new();
        let mut the_metric = 0.0;
        let mut put = |k: String, v: f64| out.push((k, v));
        if let Some(r) = recalls {
            for (name, v) in [("ir_r1", r.ir_r1), ("ir_r5", r.ir_r5), ("ir_r10", r.ir_r10), ("tr_r1", r.tr_r1), ("tr_r5", r.tr_r5), ("tr_r10", r.tr_r10)] {
                put(format!("{phase}/recalls/{name}"), v);
            }
            the_metric += r.ir_r1 + r.tr_r1;
        }
        // upstream's loss_names order: mlm, mim, itm, vqa, cls, irtr
        if on.mlm > 0.0 {
            let v = self.mlm_accuracy.compute();
            put(format!("mlm/{phase}/accuracy_epoch"), v);
            put(format!("mlm/{phase}/loss_epoch"), self.mlm_loss.compute());
            if self.mlm_without_targets > 0.0 {
                put(format!("{phase}/mlm_batches_without_targets"), self.mlm_without_targets);
            }
            the_metric += v;
        }
        if on.mim > 0.0 {
            let v = -self.mim_loss.compute();
            put(format!("mim/{phase}/accuracy_epoch"), v);
            put(format!("mim/{phase}/loss_epoch"), -v);
            the_metric += v;
        }
        if on.itm > 0.0 {
            let v = self.itm_accuracy.compute();
            put(format!("itm/{phase}/accuracy_epoch"), v);
            put(format!("itm/{phase}/loss_epoch"), self.itm_loss.compute());
            the_metric += v;
        }
        if on.vqa > 0.0 {
            let s = &mut self.vqa_score;
            let v = s.compute();
            s.update_best();
            put(format!("vqa/{phase}/score_epoch"), v);
            put(format!("vqa/{phase}/score_best_epoch"), s.best_score);
            put(format!("vqa/{phase}/close_score_best_epoch"), s.best_close_score);
            put(format!("vqa/{phase}/open_score_best_epoch"), s.best_open_score);
            // the epoch's own split (upstream logs only the best epoch's)
            put(format!("vqa/{phase}/close_score_epoch"), s.close());
            put(format!("vqa/{phase}/open_score_epoch"), s.open());
            put(format!("vqa/{phase}/loss_epoch"), self.vqa_loss.compute());
            the_metric += v;
        }
        if on.cls > 0.0 {
            let v = self.cls_accuracy.compute();
            put(format!("cls/{phase}/accuracy_epoch"), v);
            put(format!("cls/{phase}/loss_epoch"), self.cls_loss.compute());
            the_metric += v;
        }
        // no irtr loss without false texts (`m3ae test` on draw_false_text 0): recalls only
        if on.irtr > 0.0 && self.irtr_loss.count > 0.0 {
            let v = self.irtr_loss.compute();
            put(format!("irtr/{phase}/irtr_loss_epoch"), v);
            the_metric -= v;
        }
        put(format!("{phase}/the_metric"), the_metric);
        let best = self.vqa_score;
        *self = PhaseMetrics { vqa_score: best, ..Default::default() };
        self.vqa_score.reset();
        out
    }
}
