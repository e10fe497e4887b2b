//! The Rust side of `c10d.cpp`: owned handles to a TCPStore and a c10d process group. Every call
//! returns the C++ exception's message as `Err(String)`; [`super`] turns it into the crate's
//! error, naming the ranks.
use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;

use tch::Tensor;

use crate::shim::{self, tensor_ptr};

extern "C" {
    fn m3ae_c10d_has_nccl() -> c_int;
    fn m3ae_c10d_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn m3ae_c10d_store_free(store: *mut c_void);
    fn m3ae_c10d_store_set(store: *mut c_void, key: *const c_char, value: *const c_char, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_c10d_store_check(store: *mut c_void, key: *const c_char, present: *mut c_int, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_c10d_group_new(
        store: *mut c_void,
        backend: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn m3ae_c10d_group_free(group: *mut c_void);
    fn m3ae_c10d_group_abort(group: *mut c_void);
    fn m3ae_c10d_allreduce_sum(group: *mut c_void, t: *const c_void, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_c10d_broadcast(group: *mut c_void, t: *const c_void, root: c_int, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_c10d_allgather(
        group: *mut c_void,
        input: *const c_void,
        outputs: *const *const c_void,
        n: usize,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn m3ae_c10d_barrier(group: *mut c_void, err: *mut c_char, len: usize) -> c_int;
}

/// Runs one c10d shim call with an error buffer ([`crate::shim::call`]).
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    shim::call("c10d", f)
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}


/// Whether this build compiled ProcessGroupNCCL in (build.rs found CUDA's and NCCL's headers).
pub fn has_nccl() -> bool {
    // SAFETY: a constant query.
    unsafe { m3ae_c10d_has_nccl() == 1 }
}

/// A TCPStore (the server too when `is_server`) seen through a key prefix.
pub struct Store(*mut c_void);

// SAFETY: c10d's TCPStore client serializes its own socket use; the handle is not shared.
unsafe impl Send for Store {}

impl Store {
    /// Connects to (or hosts) the store at `host:port` and waits until `world` ranks joined.
    pub fn connect(host: &str, port: u16, is_server: bool, world: usize, timeout: Duration, prefix: &str) -> Result<Self, String> {
        let (host, prefix) = (cstring(host)?, cstring(prefix)?);
        let world = c_int::try_from(world).map_err(|_| format!("world size {world} is too large"))?;
        let mut out = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointer; the shim catches every exception.
        call(|e, l| unsafe {
            m3ae_c10d_store_new(host.as_ptr(), port, c_int::from(is_server), world, millis(timeout), prefix.as_ptr(), &mut out, e, l)
        })?;
        Ok(Store(out))
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        let (key, value) = (cstring(key)?, cstring(value)?);
        // SAFETY: a live handle and valid C strings.
        call(|e, l| unsafe { m3ae_c10d_store_set(self.0, key.as_ptr(), value.as_ptr(), e, l) })
    }

    /// Whether `key` is set (no waiting).
    pub fn check(&self, key: &str) -> Result<bool, String> {
        let key = cstring(key)?;
        let mut present = 0;
        // SAFETY: a live handle, a valid C string and out-pointer.
        call(|e, l| unsafe { m3ae_c10d_store_check(self.0, key.as_ptr(), &mut present, e, l) })?;
        Ok(present == 1)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by `m3ae_c10d_store_new`, freed once (a group holds its own reference).
        unsafe { m3ae_c10d_store_free(self.0) }
    }
}

/// A c10d backend (ProcessGroupGloo or ProcessGroupNCCL) whose collectives wait up to its timeout.
pub struct Group(*mut c_void);

// SAFETY: c10d backends accept calls from any thread; the handle is used by one at a time.
unsafe impl Send for Group {}

impl Group {
    /// A group of `world` ranks on `store`: `nccl` selects ProcessGroupNCCL, else Gloo.
    pub fn new(store: &Store, nccl: bool, rank: usize, world: usize, timeout: Duration) -> Result<Self, String> {
        let mut out = std::ptr::null_mut();
        let (rank, world) = (c_int::try_from(rank).map_err(|e| e.to_string())?, c_int::try_from(world).map_err(|e| e.to_string())?);
        if nccl && std::env::var_os(crate::runtime::NCCL_BLOCKING_WAIT).is_none() {
            log::warn!("{} is unset: a timed-out NCCL collective aborts the process instead of returning an error (call m3ae::runtime::set_process_env first thing in main, as m3ae does)", crate::runtime::NCCL_BLOCKING_WAIT);
        }
        // SAFETY: a live store handle and out-pointer; the shim catches every exception.
        call(|e, l| unsafe { m3ae_c10d_group_new(store.0, c_int::from(nccl), rank, world, millis(timeout), &mut out, e, l) })?;
        Ok(Group(out))
    }

    /// Sums `t` over the ranks, in place.
    pub fn allreduce_sum(&self, t: &Tensor) -> Result<(), String> {
        // SAFETY: a live group and tensor; c10d keeps its own reference while working.
        call(|e, l| unsafe { m3ae_c10d_allreduce_sum(self.0, tensor_ptr(t), e, l) })
    }

    /// Copies `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), String> {
        let root = c_int::try_from(root).map_err(|e| e.to_string())?;
        // SAFETY: as above.
        call(|e, l| unsafe { m3ae_c10d_broadcast(self.0, tensor_ptr(t), root, e, l) })
    }

    /// Fills `outputs[r]` with rank r's `input`.
    pub fn allgather(&self, input: &Tensor, outputs: &[Tensor]) -> Result<(), String> {
        let ptrs: Vec<*const c_void> = outputs.iter().map(tensor_ptr).collect();
        // SAFETY: as above; `ptrs` outlives the call.
        call(|e, l| unsafe { m3ae_c10d_allgather(self.0, tensor_ptr(input), ptrs.as_ptr(), ptrs.len(), e, l) })
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> Result<(), String> {
        // SAFETY: a live group.
        call(|e, l| unsafe { m3ae_c10d_barrier(self.0, e, l) })
    }

    /// After a failure: tears down what can be (NCCL's communicators) and leaks the rest, since
    /// Gloo's destructor would wait for the failed work's threads; the process is ending anyway.
    pub fn abandon(self) {
        // SAFETY: a live group; it is never freed afterwards.
        unsafe { m3ae_c10d_group_abort(self.0) };
        std::mem::forget(self);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by `m3ae_c10d_group_new`, freed once.
        unsafe { m3ae_c10d_group_free(self.0) }
    }
}
