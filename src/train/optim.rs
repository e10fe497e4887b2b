//! Upstream's optimizer: transformers-4.6 `AdamW` (correct_bias) over `set_schedule`'s six
//! parameter groups, with polynomial decay after a linear warmup.
use std::collections::BTreeMap;

use tch::{nn, Tensor};

use crate::config::{DecayPower, M3aeConfig, Warmup};
use crate::error::{Error, Result};
use super::adamw_fused::{self, StepCoefficients};
pub use super::gradients::Gradients;

const NO_DECAY: &[&str] = &["bias", "LayerNorm.bias", "LayerNorm.weight", "norm.bias", "norm.weight", "norm1.bias", "norm1.weight", "norm2.bias", "norm2.weight"];
const HEAD_NAMES: &[&str] = &["mlm_head", "mim_head", "itm_head", "vqa_head", "cls_head", "irtr_head"];
const MULTI_MODAL_NAMES: &[&str] = &["multi_modal"];

/// A parameter's learning rate and weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSpec {
    pub lr: f64,
    pub weight_decay: f64,
}

/// Which of `set_schedule`'s six groups `name` falls in, or None when it matches both the
/// head and the multi-modal rules (upstream then leaves it out of the optimizer).
pub fn param_group(name: &str, c: &M3aeConfig) -> Option<GroupSpec> {
    let any = |subs: &[&str]| subs.iter().any(|s| name.contains(s));
    let weight_decay = if any(NO_DECAY) { 0.0 } else { c.weight_decay };
    let lr = match (any(HEAD_NAMES), any(MULTI_MODAL_NAMES)) {
        (false, false) => c.learning_rate,
        (true, false) => c.learning_rate * c.lr_multiplier_head,
        (false, true) => c.learning_rate * c.lr_multiplier_multi_modal,
        (true, true) => return None,
    };
    Some(GroupSpec { lr, weight_decay })
}

/// The optimizer's state for a checkpoint: each slot's moments, keyed `exp_avg.<param>` and
/// `exp_avg_sq.<param>`, and its step count.
#[derive(Debug)]
pub struct AdamWState {
    pub tensors: BTreeMap<String, Tensor>,
    pub steps: BTreeMap<String, i32>,
}

/// One optimized parameter with its Adam state.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    group: GroupSpec,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i32,
}

/// transformers 4.6 `AdamW`: betas (0.9, 0.98), eps 1e-8 outside the bias correction,
/// decoupled decay applied after the Adam step.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Contiguous fp32 CPU parameters take the one-pass kernel of `adamw_fused.cpp` (the
    /// default); false runs the op-by-op form everywhere.
    pub fused: bool,
}

impl AdamW {
    /// Groups every trainable variable of `vs` as `set_schedule` does.
    pub fn new(vs: &nn::VarStore, c: &M3aeConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .filter_map(|(name, param)| {
                let group = param_group(&name, c)?;
                Some(Slot { exp_avg: param.zeros_like(), exp_avg_sq: param.zeros_like(), name, param, group, step: 0 })
            })
            .collect();
        AdamW { slots, betas: (0.9, 0.98), eps: 1e-8, fused: true }
    }

    /// The optimized parameters, in slot order.
    pub fn params(&self) -> Vec<&Tensor> {
        self.slots.iter().map(|s| &s.param).collect()
    }

    /// The name of the parameter in slot `i`.
    pub fn slot_name(&self, i: usize) -> &str {
        self.slots.get(i).map_or("?", |s| s.name.as_str())
    }

    /// The learning rate and weight decay of every optimized parameter.
    pub fn groups(&self) -> impl Iterator<Item = (&str, GroupSpec)> {
        self.slots.iter().map(|s| (s.name.as_str(), s.group))
    }

    /// Backpropagates `loss` and takes one step: [`Self::gradients`] then [`Self::apply`].
    /// `lr_scale` is the schedule's factor.
    pub fn backward_step(&mut self, loss: &Tensor, lr_scale: f64) -> Result<()> {
        let grads = self.gradients(loss)?;
        self.apply(grads, lr_scale);
        Ok(())
    }

    /// d`loss`/d`param` for every optimized parameter, in slot order; undefined where the
    /// loss does not reach the parameter. The gradients are returned by autograd rather than
    /// accumulated into `.grad`: nothing is left allocated on the parameters.
    pub fn gradients(&self, loss: &Tensor) -> Result<Gradients> {
        self.backward_wrt(loss, &[]).map(|(g, _)| g)
    }

    /// d`loss`/d`param` for every slot, then d`loss`/d`x` for each of `inputs`.
    fn backward_wrt(&self, loss: &Tensor, inputs: &[&Tensor]) -> Result<(Gradients, Vec<Tensor>)> {
        let mut wrt: Vec<&Tensor> = self.slots.iter().map(|s| &s.param).collect();
        wrt.extend_from_slice(inputs);
        let mut params = Tensor::f_run_backward(&[loss], &wrt, false, false)?;
        let extra = params.split_off(self.slots.len());
        Ok((Gradients(params), extra))
    }

    /// Adds d`loss`/d`param` to `sum` (starting it when None). Backpropagating each objective
    /// of a step this way, right after its forward, frees that objective's graph before the
    /// next forward: only one graph is alive at a time, and the total equals the gradient of
    /// the summed loss up to float summation order.
    pub fn accumulate(&self, sum: &mut Option<Gradients>, loss: &Tensor) -> Result<()> {
        self.accumulate_with(sum, loss, &[]).map(|_| ())
    }

    /// [`Self::accumulate`], also returning d`loss`/d`x` for each of `inputs`: tensors that
    /// require grad but are not parameters, such as a detached encoding that two objectives
    /// share. Undefined where the loss does not reach one.
    pub fn accumulate_with(&self, sum: &mut Option<Gradients>, loss: &Tensor, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let (new, extra) = self.backward_wrt(loss, inputs)?;
        match sum {
            None => *sum = Some(new),
            Some(acc) => acc.add(new),
        }
        Ok(extra)
    }

    /// One step on gradients from [`Self::gradients`] / [`Self::accumulate`], consumed and
    /// dropped: the memory behaviour of PyTorch's `zero_grad(set_to_none=True)`. Parameters
    /// without a gradient are skipped, as in PyTorch.
    pub fn apply(&mut self, grads: Gradients, lr_scale: f64) {
        let (b, e) = (self.betas, self.eps);
        tch::no_grad(|| {
            for (s, g) in self.slots.iter_mut().zip(grads.0) {
                if g.defined() {
                    Self::update(s, &g, lr_scale, b, e, self.fused);
                }
            }
        });
    }

    /// Every slot's moments and step count (detached copies on the CPU).
    pub fn state(&self) -> AdamWState {
        let mut tensors = BTreeMap::new();
        let mut steps = BTreeMap::new();
        for s in &self.slots {
            tensors.insert(format!("exp_avg.{}", s.name), s.exp_avg.to_device(tch::Device::Cpu));
            tensors.insert(format!("exp_avg_sq.{}", s.name), s.exp_avg_sq.to_device(tch::Device::Cpu));
            steps.insert(s.name.clone(), s.step);
        }
        AdamWState { tensors, steps }
    }

    /// Restores [`Self::state`]: every slot must be present with its parameter's shape (a
    /// checkpoint of another model or config is an error naming the key and `source`).
    pub fn load_state(&mut self, state: &AdamWState, source: &std::path::Path) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint { path: source.into(), reason };
        tch::no_grad(|| {
            for s in &mut self.slots {
                let step = *state.steps.get(&s.name).ok_or_else(|| bad(format!("no optimizer step count for `{}`", s.name)))?;
                for (prefix, dst) in [("exp_avg", &mut s.exp_avg), ("exp_avg_sq", &mut s.exp_avg_sq)] {
                    let key = format!("{prefix}.{}", s.name);
                    let t = state.tensors.get(&key).ok_or_else(|| bad(format!("optimizer state `{key}` is missing")))?;
                    if t.size() != dst.size() {
                        return Err(bad(format!("optimizer state `{key}` has shape {:?}, the parameter {:?}", t.size(), dst.size())));
                    }
                    dst.f_copy_(t)?;
                }
                s.step = step;
            }
            if state.steps.len() != self.slots.len() {
                return Err(bad(format!("optimizer state holds {} parameters, the model {}", state.steps.len(), self.slots.len())));
            }
            Ok(())
        })
    }

    /// One step with given gradients, by parameter name (the parity check feeds the golden ones).
    pub fn step_with(&mut self, grads: &BTreeMap<String, Tensor>, lr_scale: f64) -> Result<()> {
        let (b, e, fused) = (self.betas, self.eps, self.fused);
        tch::no_grad(|| {
            for s in &mut self.slots {
                if let Some(g) = grads.get(&s.name) {
                    if g.size() != s.param.size() {
                        return Err(Error::input(format!("grad.{}", s.name), format!("shape {:?}, parameter is {:?}", g.size(), s.param.size())));
                    }
                    Self::update(s, g, lr_scale, b, e, fused);
                }
            }
            Ok(())
        })
    }

    /// The update of transformers 4.6, in place: eight passes over the parameter's size and
    /// one temporary, as PyTorch's own version (tch has no `alpha=`/`value=` arguments, so
    /// the scalings are folded into `lerp_` and the denominator). Each line matches its
    /// Python counterpart up to rounding; the adamw goldens check the result.
    fn update(s: &mut Slot, g: &Tensor, lr_scale: f64, (b1, b2): (f64, f64), eps: f64, fused: bool) {
        s.step += 1;
        let lr = s.group.lr * lr_scale;
        // step_size = lr·√(1 − β2ᵗ)/(1 − β1ᵗ)
        let step_size = lr * (1.0 - b2.powi(s.step)).sqrt() / (1.0 - b1.powi(s.step));
        let decay = if s.group.weight_decay > 0.0 { 1.0 - lr * s.group.weight_decay } else { 1.0 };
        if fused && adamw_fused::applies(&s.param, g, &s.exp_avg, &s.exp_avg_sq) {
            let c = StepCoefficients { w1: 1.0 - b1, w2: 1.0 - b2, eps, neg_inv_step: -1.0 / step_size, decay };
            match adamw_fused::step(&s.param, g, &s.exp_avg, &s.exp_avg_sq, c) {
                Ok(()) => return,
                // refused before writing anything: the op-by-op form below takes the step
                Err(e) => log::warn!("fused AdamW refused `{}` ({e}); op by op", s.name),
            }
        }
        // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  ==  exp_avg.lerp_(grad, 1 - beta1)
        let _ = s.exp_avg.lerp_(g, 1.0 - b1);
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  ==  lerp_ towards grad²
        let mut t = g.square();
        let _ = s.exp_avg_sq.lerp_(&t, 1.0 - b2);
        // denom = exp_avg_sq.sqrt().add_(eps), into the same buffer
        let _ = s.exp_avg_sq.sqrt_out(&t);
        let _ = t.g_add_scalar_(eps);
        // p.addcdiv_(exp_avg, denom, value=-step_size), with -1/step_size folded into denom
        let _ = t.g_mul_scalar_(-1.0 / step_size);
        let mut p = s.param.shallow_clone();
        let _ = p.addcdiv_(&s.exp_avg, &t);
        if s.group.weight_decay > 0.0 {
            // p.add_(p, alpha=-lr * weight_decay)
            let _ = p.g_mul_scalar_(decay);
        }
    }
}

/// The warmup step count: an int as given, a float `int(max_steps × warmup_steps)`.
pub fn warmup_steps(c: &M3aeConfig, max_steps: u64) -> u64 {
    match c.warmup_steps {
        Warmup::Steps(n) => n,
        Warmup::Fraction(f) => (f * max_steps as f64) as u64,
    }
}

/// The schedule `set_schedule` configures: the factor applied to each group's lr at `step`.
/// `get_polynomial_decay_schedule_with_warmup` (lr_end = `end_lr`, power = `decay_power`), or
/// `get_cosine_schedule_with_warmup` for `decay_power: "cosine"`.
pub fn lr_factor(c: &M3aeConfig, step: u64, max_steps: u64) -> f64 {
    let warmup = warmup_steps(c, max_steps);
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let power = match c.decay_power {
        DecayPower::Power(p) => p,
        DecayPower::Named(_) => {
            // cosine with num_cycles 0.5: max(0, 0.5·(1 + cos(π·progress)))
            let progress = (step - warmup) as f64 / (max_steps.saturating_sub(warmup)).max(1) as f64;
            return (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0);
        }
    };
    if step > max_steps {
        return c.end_lr / c.learning_rate;
    }
    let lr_range = c.learning_rate - c.end_lr;
    let remaining = 1.0 - (step - warmup) as f64 / (max_steps - warmup).max(1) as f64;
    (lr_range * remaining.powf(power) + c.end_lr) / c.learning_rate
}
