//! What the ranks of a multi-process run agree on (through [`crate::dist::ddp::Ddp`]; alone,
//! every call is a no-op): the model at the start, and at each optimizer step the summed
//! gradients, the step's loss sums, its sample count and whether to stop; the metric sums
//! before each wrap-up.
use tch::nn::VarStore;
use tch::Tensor;

use super::metrics::PhaseMetrics;
use super::optim::{AdamW, Gradients};
use crate::data::collate::Batch;
use crate::dist::ddp::Ddp;
use crate::error::Result;

/// Every objective's name, in upstream's `loss_names` order: the layout of a step's sums.
const OBJECTIVES: [&str; 6] = ["mlm", "mim", "itm", "vqa", "cls", "irtr"];

/// A step's losses on this rank: each objective's sum over the micro-batches that gave it,
/// and their count (a pre-training micro-batch without MLM targets gives no MLM loss).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLosses(Vec<(&'static str, f64, usize)>);

impl StepLosses {
    /// Adds one micro-batch's losses, by objective.
    pub fn add(&mut self, losses: &[(&'static str, f64)]) {
        for &(k, v) in losses {
            match self.0.iter_mut().find(|(n, _, _)| *n == k) {
                Some((_, s, c)) => {
                    *s += v;
                    *c += 1;
                }
                None => self.0.push((k, v, 1)),
            }
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A step's totals over every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTotals {
    /// Each objective's mean loss over the step's micro-batches that gave it (objectives
    /// seen only).
    pub losses: Vec<(&'static str, f64)>,
    /// Samples in the step.
    pub samples: usize,
    /// Whether any rank was interrupted (Ctrl-C): every rank then stops at this step.
    pub interrupted: bool,
}

/// Gives every rank rank 0's variables (fresh weights may differ between processes).
pub fn broadcast_model(ddp: &Ddp, vs: &VarStore) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let tensors: Vec<Tensor> = vars.into_iter().map(|(_, t)| t).collect();
    ddp.broadcast_from_main(&tensors)
}

/// Sums this rank's share of a step over the ranks: the gradients (`None` when this rank ran
/// no micro-batch in the step), the losses, the samples and the interrupt flag.
pub fn reduce_step(ddp: &Ddp, opt: &AdamW, grads: Option<Gradients>, losses: &StepLosses, samples: usize, interrupted: bool) -> Result<(Option<Gradients>, StepTotals)> {
    let mut sums = Vec::with_capacity(2 * OBJECTIVES.len() + 2);
    for name in OBJECTIVES {
        let mine = losses.0.iter().find(|(n, _, _)| *n == name);
        sums.extend(mine.map_or([0.0, 0.0], |&(_, sum, count)| [sum, count as f64]));
    }
    sums.extend([samples as f64, f64::from(u8::from(interrupted))]);
    ddp.sum_f64(&mut sums)?;
    let losses = OBJECTIVES.iter().enumerate().filter(|(i, _)| sums[2 * i + 1] > 0.0).map(|(i, &name)| (name, sums[2 * i] / sums[2 * i + 1])).collect();
    let totals = StepTotals { losses, samples: sums[2 * OBJECTIVES.len()] as usize, interrupted: sums[2 * OBJECTIVES.len() + 1] > 0.0 };
    if ddp.world() == 1 {
        return Ok((grads, totals));
    }
    let params = opt.params();
    let mine = match grads {
        Some(g) => g.into_tensors(),
        None => params.iter().map(|_| Tensor::new()).collect(),
    };
    let summed = ddp.sum_gradients(mine, &params)?;
    Ok((Some(Gradients::from_tensors(summed)), totals))
}

/// Adds up the ranks' metric sums, so the wrap-up computes the epoch's values over every
/// rank's samples; `extra` (counts such as unreadable images) is summed along.
pub fn reduce_metrics(ddp: &Ddp, metrics: &mut PhaseMetrics, extra: &mut [f64]) -> Result<()> {
    if ddp.world() == 1 {
        return Ok(());
    }
    let mut sums = metrics.sums();
    let n = sums.len();
    sums.extend_from_slice(extra);
    ddp.sum_f64(&mut sums)?;
    metrics.set_sums(&sums[..n]);
    extra.copy_from_slice(&sums[n..]);
    Ok(())
}

/// The text columns a step keeps: the largest [`Batch::used_text_columns`] of its
/// micro-batches on every rank (one collective per step when there are several ranks).
pub fn step_text_columns<'a>(ddp: &Ddp, batches: impl Iterator<Item = &'a Batch>) -> Result<i64> {
    let mine = batches.map(Batch::used_text_columns).max().unwrap_or(0);
    if ddp.world() == 1 {
        return Ok(mine);
    }
    let mut each = vec![0.0; ddp.world()];
    each[ddp.rank()] = mine as f64;
    ddp.sum_f64(&mut each)?;
    Ok(each.into_iter().fold(0.0, f64::max) as i64)
}
