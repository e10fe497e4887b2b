//! The binding of `src/train/adamw_fused.cpp`: one AdamW step for an fp32 CPU parameter in a
//! single pass over memory (the op-by-op form in `optim.rs` makes about seven).
use std::ffi::{c_char, c_int, c_void};

use tch::{Device, Kind, Tensor};

use crate::shim::{self, tensor_ptr};

extern "C" {
    fn m3ae_adamw_fused(
        p: *const c_void,
        g: *const c_void,
        m: *const c_void,
        v: *const c_void,
        w1: f64,
        w2: f64,
        eps: f64,
        neg_inv_step: f64,
        decay: f64,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// The scalars of one step: `w1` = 1 − β1, `w2` = 1 − β2, `neg_inv_step` = −1/step_size,
/// `decay` = 1 − lr·weight_decay (1 without decay).
#[derive(Debug, Clone, Copy)]
pub struct StepCoefficients {
    pub w1: f64,
    pub w2: f64,
    pub eps: f64,
    pub neg_inv_step: f64,
    pub decay: f64,
}

/// Whether [`step`] takes these tensors: contiguous fp32 on the CPU, one size.
pub fn applies(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> bool {
    let n = p.numel();
    [p, g, m, v].iter().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == n)
}

/// Updates `p`, `m` (exp_avg) and `v` (exp_avg_sq) in place from `g`. Call only where
/// [`applies`] holds; an error names what the shim refused.
pub fn step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, c: StepCoefficients) -> Result<(), String> {
    // SAFETY: the shim checks sizes, dtype, device and contiguity before it writes, writes
    // only inside the three tensors, and catches every C++ exception.
    shim::call("fused AdamW", |e, l| unsafe {
        m3ae_adamw_fused(tensor_ptr(p), tensor_ptr(g), tensor_ptr(m), tensor_ptr(v), c.w1, c.w2, c.eps, c.neg_inv_step, c.decay, e, l)
    })
}
