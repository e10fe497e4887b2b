//! `nn.Linear`, with the choice of the CPU GEMM library behind it.
//!
//! PyTorch's eager `F.linear` on CPU in fp32 calls MKL's sgemm (`cpublas::gemm`). libtorch
//! also ships oneDNN, whose fp32 matmul is the same arithmetic (fp32 products, fp32
//! accumulation) in another summation order. On the AVX-512 CPU this project is measured
//! on (AMD EPYC, Zen 4), MKL takes its AVX2 code path and oneDNN is faster for the model's
//! large GEMMs and slower for small ones (forward + both backward GEMMs, 2 threads, medians
//! of 18 interleaved runs: 788×768→3072 93.1 vs 74.1 ms, 1.26×; 160×768→768 1.28×;
//! 64×768→768 0.88×; 544×64→64 0.68×). So a linear layer of at least [`ONEDNN_MIN_MACS`]
//! multiply-adds goes to oneDNN through `src/model/onednn_linear.cpp` (a C++ autograd
//! function on `at::native::mkldnn_matmul`: views of the dense tensors, no layout
//! conversion, the same saved tensors as F.linear); everything else, CUDA, every dtype
//! but fp32, and every layer under CPU bf16 autocast (`precision: "bf16"`, where
//! at::linear is autocast's bf16 GEMM), stays on at::linear.
//!
//! `M3AE_CPU_GEMM=blas` (or [`set_cpu_gemm`]) keeps every layer on at::linear, the kernels
//! upstream's eager PyTorch runs, e.g. to compare both at the last bit.
//!
//! A oneDNN call that fails falls back to at::linear, with a warning, for the rest of the
//! process (a libtorch whose oneDNN refuses fp32 matmul). With `M3AE_ONEDNN_FALLBACK=error`,
//! and whenever the route is forced ([`CpuGemm::OneDnnAlways`], as tests force it), a failure
//! is an error instead: the call is recorded (per thread) and [`check_no_fallback`] (which
//! the trainer runs after every micro-batch and validation, and `m3ae` after every command)
//! returns it.
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use tch::{nn, Device, Kind, Tensor};

use crate::shim::{self, tensor_ptr};

/// Which library runs large fp32 linear layers on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuGemm {
    /// at::linear everywhere (MKL's sgemm on x86 wheels), as PyTorch's eager mode does.
    Blas,
    /// oneDNN's matmul for GEMMs of at least [`ONEDNN_MIN_MACS`] multiply-adds; at::linear
    /// below that.
    OneDnn,
    /// oneDNN for every fp32 CPU linear layer whatever its size (for tests: it puts the
    /// tiny golden models through the path that large models take).
    OneDnnAlways,
}

/// 2^26 multiply-adds: oneDNN's fixed cost outweighs its faster kernel below about this
/// (64×768→768, 38 M: 0.88×; 160×768→768, 94 M: 1.28×; 544×256→256, 36 M: 1.02×).
pub const ONEDNN_MIN_MACS: i64 = 1 << 26;

const UNSET: u8 = 0;
const BLAS: u8 = 1;
const ONEDNN: u8 = 2;
static CPU_GEMM: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static SCOPED: Cell<Option<CpuGemm>> = const { Cell::new(None) };
}

/// Runs `f` with `g` for the linear layers this thread runs (forward; CPU autograd runs
/// the backward on the same thread), whatever the process-wide choice.
pub fn with_cpu_gemm<T>(g: CpuGemm, f: impl FnOnce() -> T) -> T {
    let before = SCOPED.with(|s| s.replace(Some(g)));
    let out = f();
    SCOPED.with(|s| s.set(before));
    out
}

/// Whether oneDNN's matmul runs fp32 on this CPU: `Err` with the reason where it does not.
///
/// torch 2.11's `mkldnn_matmul` refuses every call, fp32 included, on a CPU without
/// avx512bw + avx512vl + avx512dq or avx_ne_convert (its `mkldnn_bf16_device_check`; e.g. AMD
/// Zen 2 and 3, Intel before Skylake-SP): "mkldnn_matmul bf16 path needs the cpu support …".
/// So the route is probed once, on a 2×3 · 3×2 product checked against at::linear, before
/// any layer takes it; a CPU that refuses runs every layer on at::linear from the start, and
/// no run switches kernels midway.
pub fn onednn_available() -> Result<(), String> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !tch::utils::has_mkldnn() {
                return Err("this libtorch has no oneDNN (MKLDNN)".into());
            }
            if !onednn_linear_built() {
                return Err("build.rs compiled the oneDNN route out (see its warning)".into());
            }
            let x = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([2, 3]);
            let w = Tensor::from_slice(&[0.5f32, -1., 2., 1., 0.25, -0.5]).view([2, 3]);
            let y = tch::no_grad(|| onednn_linear(&x, &w, None))?;
            let want = x.linear::<Tensor>(&w, None);
            if y.size() != want.size() || !y.allclose(&want, 0.0, 0.0, false) {
                return Err(format!("oneDNN's matmul gave {y:?} where at::linear gives {want:?} on the probe"));
            }
            Ok(())
        })
        .clone()
}

/// For tests that force the route ([`CpuGemm::OneDnnAlways`]), called first: `true` where
/// oneDNN's fp32 matmul runs on this CPU. Where it does not, the test has nothing to run
/// through it: this checks that the process-wide route is at::linear (no layer of any run
/// takes oneDNN here), says on stderr that `test` checked only that and why, and returns false.
pub fn forced_route_testable(test: &str) -> bool {
    match onednn_available() {
        Ok(()) => true,
        Err(why) => {
            assert_eq!(cpu_gemm(), CpuGemm::Blas, "{test}: oneDNN is unavailable ({why}) yet the process-wide route is not at::linear");
            eprintln!("{test}: oneDNN's fp32 matmul does not run on this CPU ({why}); checked that every layer runs on at::linear instead");
            false
        }
    }
}

/// The process-wide choice; [`CpuGemm::OneDnn`] when oneDNN's fp32 matmul runs here
/// ([`onednn_available`]), unless `M3AE_CPU_GEMM=blas` or [`set_cpu_gemm`] says otherwise.
pub fn cpu_gemm() -> CpuGemm {
    if let Some(g) = SCOPED.with(Cell::get) {
        return g;
    }
    match CPU_GEMM.load(Ordering::Relaxed) {
        BLAS => CpuGemm::Blas,
        ONEDNN => CpuGemm::OneDnn,
        _ => {
            // a bad value is reported at start-up (check_env); here it counts as unset
            let pick = match env_choice() {
                Ok(Some(CpuGemm::Blas)) => CpuGemm::Blas,
                _ => match onednn_available() {
                    Ok(()) => CpuGemm::OneDnn,
                    Err(why) => {
                        log::info!("large fp32 linear layers run on at::linear: oneDNN's fp32 matmul is unavailable here ({why})");
                        CpuGemm::Blas
                    }
                },
            };
            set_cpu_gemm(pick);
            pick
        }
    }
}

/// Sets the process-wide choice (`OneDnnAlways` is only for [`with_cpu_gemm`]: here it
/// means `OneDnn`).
pub fn set_cpu_gemm(g: CpuGemm) {
    CPU_GEMM.store(if g == CpuGemm::Blas { BLAS } else { ONEDNN }, Ordering::Relaxed);
}

/// Whether a linear layer of `rows`×`k`→`n` goes to oneDNN under `g`.
pub fn uses_onednn(g: CpuGemm, rows: i64, k: i64, n: i64) -> bool {
    match g {
        CpuGemm::Blas => false,
        CpuGemm::OneDnnAlways => true,
        CpuGemm::OneDnn => rows.saturating_mul(k).saturating_mul(n) >= ONEDNN_MIN_MACS,
    }
}

/// `M3AE_CPU_GEMM`: None when unset.
fn env_choice() -> Result<Option<CpuGemm>, String> {
    match std::env::var("M3AE_CPU_GEMM").ok().as_deref() {
        None => Ok(None),
        Some("blas") => Ok(Some(CpuGemm::Blas)),
        Some("onednn") => Ok(Some(CpuGemm::OneDnn)),
        Some(v) => Err(format!("M3AE_CPU_GEMM={v:?}: expected \"blas\" or \"onednn\"")),
    }
}

/// `M3AE_ONEDNN_FALLBACK`: whether a failed oneDNN call is an error (`error`) or a warning
/// and a switch to at::linear (`warn`, the default).
fn env_fallback_is_error() -> Result<bool, String> {
    match std::env::var("M3AE_ONEDNN_FALLBACK").ok().as_deref() {
        None | Some("warn") => Ok(false),
        Some("error") => Ok(true),
        Some(v) => Err(format!("M3AE_ONEDNN_FALLBACK={v:?}: expected \"warn\" or \"error\"")),
    }
}

/// Checks `M3AE_CPU_GEMM` and `M3AE_ONEDNN_FALLBACK` (for a command line to report a
/// misspelling before any work).
/// `M3AE_CPU_GEMM=onednn` on a CPU where oneDNN's fp32 matmul does not run is refused.
pub fn check_env() -> Result<(), String> {
    env_fallback_is_error()?;
    if env_choice()? == Some(CpuGemm::OneDnn) {
        onednn_available().map_err(|why| format!("M3AE_CPU_GEMM=onednn: oneDNN's fp32 matmul is unavailable here ({why}); unset it or use blas"))?;
    }
    Ok(())
}

/// Calls that went to oneDNN, and failed calls that fell back to at::linear, since the
/// process started (all threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCounts {
    pub onednn: u64,
    pub fallbacks: u64,
}

static ONEDNN_CALLS: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's first failure not yet reported by [`check_no_fallback`], where a fallback
    /// is an error (a model's forward runs on the thread that calls it).
    static UNREPORTED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// See [`RouteCounts`].
pub fn route_counts() -> RouteCounts {
    RouteCounts { onednn: ONEDNN_CALLS.load(Ordering::Relaxed), fallbacks: FALLBACKS.load(Ordering::Relaxed) }
}

/// `Err` (once) with this thread's first oneDNN failure since its last check, where a
/// fallback is an error (`M3AE_ONEDNN_FALLBACK=error`, or the route forced); `Ok` otherwise.
pub fn check_no_fallback() -> crate::Result<()> {
    match UNREPORTED.with(|u| u.borrow_mut().take()) {
        None => Ok(()),
        Some(e) => Err(crate::Error::Kernel(format!("{e} (a fallback to at::linear is an error here: M3AE_ONEDNN_FALLBACK=error or the route forced)"))),
    }
}

/// `F.linear(x, w, b)`: x [.., K], w [N, K], b [N] -> [.., N].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let (k, n) = (x.size().last().copied().unwrap_or(0), w.size()[0]);
    let rows = if k == 0 { 0 } else { x.numel() as i64 / k };
    let fp32_cpu = x.device() == Device::Cpu && x.kind() == Kind::Float && w.kind() == Kind::Float;
    // under CPU bf16 autocast, at::linear is autocast's op (bf16 GEMM); the route would stay fp32
    if !(fp32_cpu && x.dim() >= 2 && rows > 0 && uses_onednn(cpu_gemm(), rows, k, n)) || crate::train::cpu_bf16::autocast_active() {
        return x.linear(w, b);
    }
    let mut out_shape = x.size();
    *out_shape.last_mut().unwrap() = n;
    ONEDNN_CALLS.fetch_add(1, Ordering::Relaxed);
    match onednn_linear(&x.reshape([rows, k]), w, b) {
        Ok(y) => y.view(out_shape.as_slice()),
        Err(e) => {
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
            let call = format!("oneDNN linear [{rows}, {k}] -> {n} ({} bias) failed: {e}", if b.is_some() { "with" } else { "no" });
            if cpu_gemm() == CpuGemm::OneDnnAlways || env_fallback_is_error().unwrap_or(false) {
                // recorded for check_no_fallback; this call's values still come from at::linear
                UNREPORTED.with(|u| {
                    u.borrow_mut().get_or_insert(call);
                });
            } else {
                // a libtorch whose oneDNN refuses fp32 matmul: say so once, then stay on at::linear
                log::warn!("{call}; at::linear from now on (M3AE_CPU_GEMM=blas silences this, M3AE_ONEDNN_FALLBACK=error makes it an error)");
                set_cpu_gemm(CpuGemm::Blas);
            }
            x.linear(w, b)
        }
    }
}

extern "C" {
    fn m3ae_onednn_linear_built() -> c_int;
    fn m3ae_onednn_linear(
        x: *const c_void,
        w: *const c_void,
        b: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Whether this build has the oneDNN route: build.rs compiles it only where the libtorch at
/// hand matches the declaration of `at::native::mkldnn_matmul` (build/onednn_check.rs).
pub fn onednn_linear_built() -> bool {
    // SAFETY: returns a constant.
    unsafe { m3ae_onednn_linear_built() == 1 }
}

/// src/model/onednn_linear.cpp: x [rows, k] @ w.T + b through oneDNN's matmul, with autograd.
fn onednn_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, String> {
    let mut out: *mut c_void = std::ptr::null_mut();
    let b_ptr = b.map_or(std::ptr::null(), tensor_ptr);
    // SAFETY: the shim reads the three tensors, catches every C++ exception, and on success
    // hands over a new at::Tensor that tch now owns.
    shim::call("oneDNN linear", |e, l| unsafe { m3ae_onednn_linear(tensor_ptr(x), tensor_ptr(w), b_ptr, &mut out, e, l) })?;
    if out.is_null() {
        return Err("the oneDNN linear shim returned no tensor".into());
    }
    // SAFETY: out is a heap at::Tensor the shim allocated with new, as tch's own are
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// `nn.Linear`: `weight` [out, in], optional `bias` [out].
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
}

impl nn::Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        linear(x, &self.ws, self.bs.as_ref())
    }
}
