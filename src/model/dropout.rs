//! `F.dropout` for the model's layers. On fp32 CPU tensors in training it runs
//! `src/model/dropout.cpp`: one parallel pass whose mask is a counter-based hash of a key
//! drawn from torch's default generator (ATen's CPU dropout draws its mask serially, one
//! element at a time, and keeps a float mask for backward). Same distribution and scale as
//! ATen's, decided by `manual_seed` as ATen's is, and independent of the thread count; not
//! the same draws. Anywhere else (CUDA, other dtypes) it is ATen's dropout.
use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;

use tch::{Device, Kind, Tensor};

use crate::shim::{self, tensor_ptr};

extern "C" {
    fn m3ae_fused_dropout(x: *const c_void, p: f64, out: *mut *mut c_void, err: *mut c_char, len: usize) -> c_int;
}

/// `nn.Dropout(p)(x)` in training (`train`), `x` itself otherwise.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu || x.kind() != Kind::Float {
        return x.dropout(p, train);
    }
    match fused_dropout(x, p) {
        Ok(y) => y,
        Err(e) => {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| log::warn!("fused dropout failed ({e}); ATen's dropout instead"));
            x.dropout(p, train)
        }
    }
}

/// The fused kernel itself: `x` fp32 on the CPU, `p` in [0, 1].
pub fn fused_dropout(x: &Tensor, p: f64) -> Result<Tensor, String> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: the shim reads the tensor, catches every C++ exception, and on success hands
    // over a new at::Tensor that tch now owns.
    shim::call("dropout", |e, l| unsafe { m3ae_fused_dropout(tensor_ptr(x), p, &mut out, e, l) })?;
    if out.is_null() {
        return Err("the dropout shim returned no tensor".into());
    }
    // SAFETY: out is a heap at::Tensor the shim allocated with new, as tch's own are
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}
