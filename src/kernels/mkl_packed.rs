//! MKL packed sgemm (`torch.ops.mkl._mkl_reorder_linear_weight` / `_mkl_linear`): a weight
//! packed once into MKL's internal panel layout, then multiplied without the B-panel packing
//! a plain `addmm` redoes on every call. Same kernel, same blocking, same results as
//! `at::linear` (the tests check bit equality); PyTorch uses it for frozen inference graphs.
use std::ffi::{c_char, CStr};

use tch::Tensor;

use crate::error::{Error, Result};

mod ffi {
    use std::ffi::{c_char, c_int};
    use torch_sys::C_tensor;

    extern "C" {
        pub fn m3ae_mkl_packed_available() -> c_int;
        pub fn m3ae_grad_mode_enabled() -> c_int;
        pub fn m3ae_tensor_version(t: *const C_tensor) -> i64;
        pub fn m3ae_mkl_pack(weight: *const C_tensor, rows: i64, err: *mut c_char, len: usize) -> *mut C_tensor;
        pub fn m3ae_mkl_linear(input: *const C_tensor, packed: *const C_tensor, weight: *const C_tensor, bias: *const C_tensor, rows: i64, err: *mut c_char, len: usize) -> *mut C_tensor;
    }
}

/// Whether the linked libtorch registers the `mkl::` operators (x86 builds with MKL).
pub fn available() -> bool {
    // SAFETY: no arguments; reads the operator registry.
    unsafe { ffi::m3ae_mkl_packed_available() != 0 }
}

/// Whether autograd records operations on this thread: false inside `tch::no_grad`.
pub fn grad_enabled() -> bool {
    // SAFETY: no arguments; reads a thread-local flag.
    unsafe { ffi::m3ae_grad_mode_enabled() != 0 }
}

/// The tensor's version counter, which every in-place write advances.
pub fn version(t: &Tensor) -> i64 {
    // SAFETY: `t` is a live tensor for the duration of the call.
    unsafe { ffi::m3ae_tensor_version(t.as_ptr()) }
}

fn call(name: &str, f: impl FnOnce(*mut c_char, usize) -> *mut torch_sys::C_tensor) -> Result<Tensor> {
    let mut err = [0 as c_char; 512];
    let ptr = f(err.as_mut_ptr(), err.len());
    if ptr.is_null() {
        // SAFETY: the shim writes a NUL-terminated message of at most `err.len()` bytes.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(Error::Config(format!("{name}: {msg}")));
    }
    // SAFETY: the shim returns a heap `at::Tensor*`, which the new Tensor owns and frees.
    Ok(unsafe { Tensor::from_ptr(ptr) })
}

/// `weight` [N, K] (fp32, CPU) packed for inputs of exactly `rows` rows.
pub fn pack(weight: &Tensor, rows: i64) -> Result<Tensor> {
    // SAFETY: `weight` outlives the call; the buffer is owned by `call`.
    call("mkl::_mkl_reorder_linear_weight", |e, n| unsafe { ffi::m3ae_mkl_pack(weight.as_ptr(), rows, e, n) })
}

/// `input` [..., K] × `weight`ᵀ + `bias` -> [..., N], with `packed` from [`pack`] for `rows`
/// rows (another row count takes the plain `at::linear`).
pub fn linear(input: &Tensor, packed: &Tensor, weight: &Tensor, bias: Option<&Tensor>, rows: i64) -> Result<Tensor> {
    let bias = bias.map_or(std::ptr::null(), Tensor::as_ptr);
    // SAFETY: every tensor outlives the call; a null bias is the operator's `None`.
    call("mkl::_mkl_linear", |e, n| unsafe { ffi::m3ae_mkl_linear(input.as_ptr(), packed.as_ptr(), weight.as_ptr(), bias, rows, e, n) })
}
