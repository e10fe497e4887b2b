//! Mixed precision on CUDA: `precision=16` runs each forward and backward under autocast
//! (fp16) with dynamic loss scaling, as PyTorch's `GradScaler` (initial scale 2¹⁶, ×2 after
//! 2000 steps without overflow, ×½ and the step skipped on an inf or NaN gradient);
//! `precision="bf16"` runs under bf16 autocast without scaling (autocast's dtype is set by the
//! C++ shim `autocast.cpp`: tch 0.24 does not expose it). On the CPU, `precision="bf16"` runs
//! under CPU autocast in bf16 ([`super::cpu_bf16`]), on a CPU with bf16 instructions; the
//! other precisions compute in fp32 there.
use std::ffi::{c_char, c_int};

use serde::{Deserialize, Serialize};

use crate::config::{M3aeConfig, PrecisionMode};
use crate::error::{Error, Result};
use crate::shim;

use super::cpu_bf16;

/// `GradScaler`'s defaults.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: u64 = 2000;

/// What a run computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// fp32 everywhere (`precision=32`, or 16 on the CPU).
    Fp32,
    /// CUDA autocast fp16 with loss scaling.
    Fp16Autocast,
    /// CUDA autocast bf16.
    Bf16Autocast,
    /// CPU autocast bf16 (fp32 master weights, no loss scaling).
    CpuBf16Autocast,
}

impl Compute {
    /// Whether forwards and backwards run under autocast.
    pub fn autocast(self) -> bool {
        self != Compute::Fp32
    }
}

extern "C" {
    fn m3ae_set_cuda_autocast_dtype(bf16: c_int, err: *mut c_char, len: usize) -> c_int;
    fn m3ae_cuda_autocast_dtype_is_bf16(is_bf16: *mut c_int, err: *mut c_char, len: usize) -> c_int;
}

/// Sets CUDA autocast's dtype: bf16, or fp16 (autocast's default).
pub fn set_cuda_autocast_dtype(bf16: bool) -> Result<()> {
    // SAFETY: a plain C call into libtorch's autocast state; the shim catches every C++ exception.
    shim::call("autocast", |e, l| unsafe { m3ae_set_cuda_autocast_dtype(c_int::from(bf16), e, l) })
        .map_err(|e| Error::Config(format!("could not set CUDA autocast's dtype: {e}")))
}

/// Whether CUDA autocast computes in bf16 (else fp16; also when libtorch could not say, which
/// is logged).
pub fn cuda_autocast_is_bf16() -> bool {
    let mut is_bf16: c_int = 0;
    // SAFETY: as above; the shim writes `is_bf16` only.
    match shim::call("autocast", |e, l| unsafe { m3ae_cuda_autocast_dtype_is_bf16(&mut is_bf16, e, l) }) {
        Ok(()) => is_bf16 == 1,
        Err(e) => {
            log::warn!("CUDA autocast's dtype: {e}");
            false
        }
    }
}

/// Runs `f` (a forward, or a forward and its backward) as `compute` says: under CUDA
/// autocast, CPU autocast in bf16, or as it is.
pub fn autocast<T>(compute: Compute, f: impl FnOnce() -> T) -> Result<T> {
    match compute {
        Compute::Fp32 => Ok(f()),
        Compute::Fp16Autocast | Compute::Bf16Autocast => Ok(tch::autocast(true, f)),
        Compute::CpuBf16Autocast => cpu_bf16::autocast(f),
    }
}

/// The compute mode of `config` on `device`.
pub fn compute_mode(config: &M3aeConfig, device: tch::Device) -> Result<Compute> {
    compute_for(config.precision.mode()?, device)
}

/// The compute mode of `mode` on `device`. On the CPU it logs the CPU's bf16 features and the
/// route chosen, and refuses bf16 without bf16 instructions (unless `--allow-slow-bf16`).
pub fn compute_for(mode: PrecisionMode, device: tch::Device) -> Result<Compute> {
    if device == tch::Device::Cpu {
        let features = cpu_bf16::CpuFeatures::detect();
        if mode == PrecisionMode::Bf16 {
            let route = cpu_bf16::bf16_route(&features, cpu_bf16::allow_slow())?;
            log::info!("CPU bf16 features ({}): {}; precision \"bf16\": {}", features.source, features.describe(), route.describe());
            return Ok(Compute::CpuBf16Autocast);
        }
        let why = if mode == PrecisionMode::Fp16 { " (fp16 runs in fp32 on the CPU; \"bf16\" is the CPU's half precision)" } else { "" };
        log::info!("CPU bf16 features ({}): {}; route: fp32{why}", features.source, features.describe());
        return Ok(Compute::Fp32);
    }
    match mode {
        PrecisionMode::Fp32 => Ok(Compute::Fp32),
        PrecisionMode::Fp16 => {
            set_cuda_autocast_dtype(false)?;
            Ok(Compute::Fp16Autocast)
        }
        PrecisionMode::Bf16 => {
            set_cuda_autocast_dtype(true)?;
            Ok(Compute::Bf16Autocast)
        }
    }
}

/// Dynamic loss scaling, as `GradScaler.update`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Steps since the last overflow (or growth).
    pub good_steps: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: INIT_SCALE, good_steps: 0 }
    }
}

impl LossScaler {
    /// After a step: `found_inf` halves the scale (the step was skipped); otherwise every
    /// `GROWTH_INTERVAL` good steps double it.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= BACKOFF_FACTOR;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= GROWTH_FACTOR;
                self.good_steps = 0;
            }
        }
    }
}
