//! The calling convention of the C++ shims (`src/**/*.cpp`, built by build.rs): tensors
//! cross as tch's `C_tensor` (an `at::Tensor*`); a call returns 0, or non-zero after writing
//! a NUL-terminated message into the caller's buffer. No C++ exception crosses: each entry
//! runs its body through `m3ae::guarded` (src/shim.h), which catches every exception.
use std::ffi::{c_char, c_int, c_void, CStr};

use tch::Tensor;

/// The size of the message buffer each call gets.
pub const ERR_LEN: usize = 4096;

/// Runs one shim call with an error buffer: `Err(message)` when it reports a failure
/// (`unknown {what} error` when it wrote none).
pub fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut buf = vec![0 as c_char; ERR_LEN];
    if f(buf.as_mut_ptr(), ERR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shims always NUL-terminate within `ERR_LEN` (the buffer starts zeroed).
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().to_string();
    Err(if msg.is_empty() { format!("unknown {what} error") } else { msg })
}

/// A tensor as the shims take it: tch's `C_tensor` is an `at::Tensor*`.
pub fn tensor_ptr(t: &Tensor) -> *const c_void {
    t.as_ptr() as *const c_void
}

extern "C" {
    fn m3ae_shim_guard_check(kind: c_int, err: *mut c_char, len: usize) -> c_int;
}

/// src/shim.cpp: the guard of src/shim.h on a body that returns (`kind` 0), fails a
/// TORCH_CHECK (1), throws a `std::runtime_error` (2) or throws an `int` (3). For tests.
pub fn guard_check(kind: i32) -> Result<(), String> {
    // SAFETY: the shim writes at most `len` bytes into the buffer and catches every exception.
    call("guard check", |e, l| unsafe { m3ae_shim_guard_check(kind, e, l) })
}
