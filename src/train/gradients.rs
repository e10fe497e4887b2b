//! The gradients of one step, in the optimizer's slot order: finiteness, scaling, clipping
//! and accumulation.
use tch::Tensor;

/// One gradient per optimized parameter, in the optimizer's slot order (undefined where the
/// loss does not reach the parameter).
#[derive(Debug)]
pub struct Gradients(pub(crate) Vec<Tensor>);

impl Gradients {
    /// The gradients, in the optimizer's slot order ([`super::optim::AdamW::groups`]' order).
    pub fn tensors(&self) -> &[Tensor] {
        &self.0
    }

    /// Gradients from tensors in slot order (undefined where there is none).
    pub fn from_tensors(tensors: Vec<Tensor>) -> Self {
        Gradients(tensors)
    }

    /// The tensors, in slot order.
    pub fn into_tensors(self) -> Vec<Tensor> {
        self.0
    }

    /// The global L2 norm over every defined gradient (`clip_grad_norm_`'s total norm).
    pub fn total_norm(&self) -> f64 {
        tch::no_grad(|| {
            let sq: Vec<Tensor> = self.0.iter().filter(|g| g.defined()).map(|g| g.square().sum(tch::Kind::Double)).collect();
            if sq.is_empty() {
                return 0.0;
            }
            Tensor::stack(&sq, 0).sum(tch::Kind::Double).double_value(&[]).sqrt()
        })
    }

    /// `clip_grad_norm_(max_norm)`: scales every gradient by max_norm / (norm + 1e-6) when
    /// that is below 1. Returns the norm before clipping.
    pub fn clip_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.total_norm();
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            self.scale(coef);
        }
        norm
    }

    /// Multiplies every gradient by `factor` (loss-scale removal, clipping, averaging).
    pub fn scale(&mut self, factor: f64) {
        tch::no_grad(|| {
            for g in self.0.iter_mut().filter(|g| g.defined()) {
                let _ = g.g_mul_scalar_(factor);
            }
        })
    }

    /// Whether every defined gradient is finite (no inf or NaN).
    pub fn all_finite(&self) -> bool {
        self.first_non_finite().is_none()
    }

    /// The index (slot order) of the first gradient holding an inf or NaN.
    ///
    /// One read pass per gradient (`aminmax`, in its own dtype) and one host transfer in all:
    /// a NaN propagates through both extremes, and an inf is the max or the min, so both are
    /// finite exactly when every element is. No full-size temporary is made (a sum in f64
    /// would cast a copy of each gradient; `isfinite().all()` writes a bool tensor per
    /// gradient and syncs each).
    pub fn first_non_finite(&self) -> Option<usize> {
        let defined: Vec<usize> = (0..self.0.len()).filter(|&i| self.0[i].defined() && self.0[i].numel() > 0).collect();
        if defined.is_empty() {
            return None;
        }
        let extremes = tch::no_grad(|| {
            let per: Vec<Tensor> = defined
                .iter()
                .map(|&i| {
                    let (lo, hi) = self.0[i].aminmax(None::<i64>, false);
                    Tensor::stack(&[hi, lo], 0).to_kind(tch::Kind::Double)
                })
                .collect();
            Tensor::stack(&per, 0)
        });
        let Ok(extremes) = Vec::<f64>::try_from(extremes.to_device(tch::Device::Cpu).view([-1])) else {
            return defined.first().copied(); // cannot read them back: treat as not finite
        };
        extremes.chunks(2).position(|mm| mm.iter().any(|v| !v.is_finite())).map(|k| defined[k])
    }

    /// Adds `other` into `self`, gradient by gradient (gradient accumulation).
    pub fn add(&mut self, other: Gradients) {
        tch::no_grad(|| {
            for (a, g) in self.0.iter_mut().zip(other.0) {
                match (a.defined(), g.defined()) {
                    (true, true) => {
                        let _ = a.g_add_(&g);
                    }
                    (false, true) => *a = g,
                    _ => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(values: Vec<Vec<f32>>) -> Gradients {
        Gradients(values.into_iter().map(|v| if v.is_empty() { Tensor::new() } else { Tensor::from_slice(&v) }).collect())
    }

    #[test]
    fn first_non_finite_names_the_first_bad_slot() {
        // an undefined slot (no gradient) is skipped; f32-max values sum past f32 but not f64
        let big = vec![f32::MAX; 8];
        assert_eq!(grads(vec![big.clone(), vec![], vec![1.0, -2.0]]).first_non_finite(), None);
        assert_eq!(grads(vec![big.clone(), vec![], vec![1.0, f32::NAN], vec![f32::INFINITY]]).first_non_finite(), Some(2));
        assert_eq!(grads(vec![vec![f32::INFINITY, f32::NEG_INFINITY], vec![1.0]]).first_non_finite(), Some(0));
        assert_eq!(grads(vec![vec![], vec![0.5], vec![f32::NEG_INFINITY]]).first_non_finite(), Some(2));
        // only the min is non-finite, and a NaN that is neither the max nor the min by value
        assert_eq!(grads(vec![vec![0.5], vec![1.0, f32::NEG_INFINITY, 2.0]]).first_non_finite(), Some(1));
        assert_eq!(grads(vec![vec![0.5, -3.0, f32::NAN, 7.0]]).first_non_finite(), Some(0));
        assert!(grads(vec![]).all_finite());
    }

    #[test]
    fn total_norm_is_the_global_l2_norm() {
        let g = grads(vec![vec![3.0], vec![], vec![4.0, 0.0]]);
        assert!((g.total_norm() - 5.0).abs() < 1e-12);
    }
}
