//! bf16 on the CPU: PyTorch's CPU autocast (`torch.autocast("cpu", dtype=torch.bfloat16)`)
//! entered from Rust through the C++ shim `autocast.cpp`, and the check that the CPU has
//! bf16 hardware before a run asks for it.
//!
//! Under CPU autocast, libtorch's own policy decides each op's dtype: linear, matmul, bmm,
//! baddbmm, convolution and scaled_dot_product_attention compute in bf16; the losses
//! (cross_entropy, mse_loss, ...) in fp32; everything else (softmax, layer norm, GELU,
//! additions) in the dtype of its inputs. Weights stay fp32 parameters: autocast casts a copy
//! for each op (cached for the forward), so gradients, AdamW's state and the checkpoints stay
//! fp32, and bf16 needs no loss scaling (fp32's exponent range).
//!
//! Without bf16 instructions (avx512_bf16 or amx_bf16), oneDNN and ATen emulate bf16 GEMMs by
//! converting to fp32: slower than fp32 itself, for bf16's rounding. So such a CPU refuses
//! `precision: "bf16"` unless `--allow-slow-bf16` ([`set_allow_slow`]) says to run anyway.
use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::shim;

extern "C" {
    fn m3ae_cpu_autocast_enter(prev_enabled: *mut c_int, prev_dtype: *mut c_int, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_cpu_autocast_exit(prev_enabled: c_int, prev_dtype: c_int, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_cpu_autocast_bf16_active() -> c_int;
    fn m3ae_cpu_capability(name: *const c_char, value: *mut c_int, err: *mut c_char, len: usize) -> c_int;
}

/// The CPU features that make bf16 fast, in the names of libtorch's cpuinfo
/// (`at::cpu::get_cpu_capabilities`) and of Linux's /proc/cpuinfo.
pub const BF16_FEATURES: [&str; 2] = ["amx_bf16", "avx512_bf16"];

/// Set by `--allow-slow-bf16`.
static ALLOW_SLOW: AtomicBool = AtomicBool::new(false);

/// `--allow-slow-bf16`: run `precision: "bf16"` on a CPU without bf16 instructions.
pub fn set_allow_slow(allow: bool) {
    ALLOW_SLOW.store(allow, Ordering::Relaxed);
}

/// Whether `--allow-slow-bf16` was given.
pub fn allow_slow() -> bool {
    ALLOW_SLOW.load(Ordering::Relaxed)
}

/// The bf16 features of a CPU: which of [`BF16_FEATURES`] it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeatures {
    /// The features of [`BF16_FEATURES`] present, in that order.
    pub present: Vec<&'static str>,
    /// Where they came from: `libtorch cpuinfo`, or the test hook.
    pub source: &'static str,
}

/// The environment variable that replaces the detected features, for tests: a
/// comma-separated list (empty: none), e.g. `M3AE_TEST_CPU_FEATURES=avx512f`.
pub const TEST_FEATURES_ENV: &str = "M3AE_TEST_CPU_FEATURES";

impl CpuFeatures {
    /// The features as libtorch's cpuinfo reports them, or as [`TEST_FEATURES_ENV`] injects.
    pub fn detect() -> CpuFeatures {
        if let Ok(list) = std::env::var(TEST_FEATURES_ENV) {
            return CpuFeatures::from_list(&list, "M3AE_TEST_CPU_FEATURES");
        }
        let present = BF16_FEATURES.into_iter().filter(|f| capability(f).unwrap_or(false)).collect();
        CpuFeatures { present, source: "libtorch cpuinfo" }
    }

    /// The features named in a comma-separated list (names outside [`BF16_FEATURES`] count
    /// as absent ones).
    pub fn from_list(list: &str, source: &'static str) -> CpuFeatures {
        let named: Vec<&str> = list.split(',').map(str::trim).collect();
        CpuFeatures { present: BF16_FEATURES.into_iter().filter(|f| named.contains(f)).collect(), source }
    }

    pub fn has(&self, feature: &str) -> bool {
        self.present.contains(&feature)
    }

    /// `amx_bf16 no, avx512_bf16 yes`.
    pub fn describe(&self) -> String {
        BF16_FEATURES.map(|f| format!("{f} {}", if self.has(f) { "yes" } else { "no" })).join(", ")
    }
}

/// libtorch's cpuinfo on one boolean capability; None where it does not report it.
fn capability(name: &str) -> Option<bool> {
    let c = CString::new(name).ok()?;
    let mut v: c_int = -1;
    // SAFETY: the shim reads the NUL-terminated name and writes `v` only; it catches every exception.
    match shim::call("cpu capability", |e, l| unsafe { m3ae_cpu_capability(c.as_ptr(), &mut v, e, l) }) {
        Ok(()) if v >= 0 => Some(v == 1),
        Ok(()) => None,
        Err(e) => {
            log::warn!("libtorch's CPU capabilities: {e}");
            None
        }
    }
}

/// Which instructions a CPU bf16 run's GEMMs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Route {
    /// AMX tiles (oneDNN's `avx512_core_amx` kernels).
    Amx,
    /// AVX512-BF16 dot products (`avx512_core_bf16`).
    Avx512Bf16,
    /// No bf16 instructions: emulated, run because `--allow-slow-bf16` said so.
    Emulated,
}

impl Bf16Route {
    pub fn describe(self) -> &'static str {
        match self {
            Bf16Route::Amx => "CPU autocast bf16, GEMMs on AMX-BF16",
            Bf16Route::Avx512Bf16 => "CPU autocast bf16, GEMMs on AVX512-BF16",
            Bf16Route::Emulated => "CPU autocast bf16, emulated (no bf16 instructions; --allow-slow-bf16)",
        }
    }
}

/// The route of a CPU bf16 run on a CPU with `features`; without bf16 instructions an error
/// naming the missing features, unless `allow_slow`.
pub fn bf16_route(features: &CpuFeatures, allow_slow: bool) -> Result<Bf16Route> {
    if features.has("amx_bf16") {
        Ok(Bf16Route::Amx)
    } else if features.has("avx512_bf16") {
        Ok(Bf16Route::Avx512Bf16)
    } else if allow_slow {
        Ok(Bf16Route::Emulated)
    } else {
        Err(Error::Config(format!(
            "precision \"bf16\" on the CPU needs bf16 instructions, and this CPU has neither amx_bf16 nor avx512_bf16 ({}: {}): \
             bf16 would be emulated, slower than fp32. Use precision 32 (e.g. --set precision=32), or pass --allow-slow-bf16 to run it anyway",
            features.source,
            features.describe()
        )))
    }
}

/// Whether CPU autocast in bf16 is on for the calling thread (the linear layers and the
/// dropout kernel ask, to step aside for autocast's own ops).
pub fn autocast_active() -> bool {
    // SAFETY: reads libtorch's thread-local autocast state; never throws.
    unsafe { m3ae_cpu_autocast_bf16_active() == 1 }
}

/// Runs `f` under `torch.autocast("cpu", dtype=torch.bfloat16)`: entered before, left after
/// (the previous state back, the cast-weight cache cleared when the outermost level ends).
pub fn autocast<T>(f: impl FnOnce() -> T) -> Result<T> {
    let (mut prev_enabled, mut prev_dtype): (c_int, c_int) = (0, 0);
    // SAFETY: the shim writes the two ints and sets thread-local autocast state; it catches every exception.
    shim::call("CPU autocast", |e, l| unsafe { m3ae_cpu_autocast_enter(&mut prev_enabled, &mut prev_dtype, e, l) })
        .map_err(|e| Error::Config(format!("could not enter CPU autocast: {e}")))?;
    // left also when `f` panics, so the thread's state never leaks
    struct Leave(c_int, c_int);
    impl Drop for Leave {
        fn drop(&mut self) {
            let (en, dt) = (self.0, self.1);
            // SAFETY: as above.
            if let Err(e) = shim::call("CPU autocast", |e, l| unsafe { m3ae_cpu_autocast_exit(en, dt, e, l) }) {
                log::warn!("leaving CPU autocast: {e}");
            }
        }
    }
    let _leave = Leave(prev_enabled, prev_dtype);
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_missing_features() {
        let none = CpuFeatures::from_list("avx512f,avx2", "test");
        let e = bf16_route(&none, false).unwrap_err().to_string();
        assert!(e.contains("amx_bf16") && e.contains("avx512_bf16") && e.contains("--allow-slow-bf16"), "{e}");
        assert_eq!(bf16_route(&none, true).unwrap(), Bf16Route::Emulated);
        assert_eq!(bf16_route(&CpuFeatures::from_list("avx512_bf16", "test"), false).unwrap(), Bf16Route::Avx512Bf16);
        assert_eq!(bf16_route(&CpuFeatures::from_list("avx512_bf16, amx_bf16", "test"), false).unwrap(), Bf16Route::Amx);
        assert_eq!(CpuFeatures::from_list("", "test").present, Vec::<&str>::new());
    }
}
