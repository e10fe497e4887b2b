//! Mixed precision on CUDA: `precision=16` runs each forward and backward under autocast
//! (fp16) with dynamic loss scaling, as PyTorch's `GradScaler` (initial scale 2¹⁶, ×2 after
//! 2000 steps without overflow, ×½ and the step skipped on an inf or NaN gradient);
//! `precision="bf16"` runs under bf16 autocast without scaling (autocast's dtype is set by the
//! C++ shim `autocast.cpp`: tch 0.24 does not expose it). CPU runs compute in fp32.
use std::ffi::{c_char, c_int};

use serde::{Deserialize, Serialize};

use crate::config::{M3aeConfig, PrecisionMode};
use crate::error::{Error, Result};
use crate::shim;

/// `GradScaler`'s defaults.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: u64 = 2000;

/// What a run computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// fp32 everywhere (the CPU, or `precision=32`).
    Fp32,
    /// CUDA autocast fp16 with loss scaling.
    Fp16Autocast,
    /// CUDA autocast bf16.
    Bf16Autocast,
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

/// The compute mode of `config` on `device`.
pub fn compute_mode(config: &M3aeConfig, device: tch::Device) -> Result<Compute> {
    let mode = config.precision.mode()?;
    if device == tch::Device::Cpu {
        if mode != PrecisionMode::Fp32 {
            log::info!("precision {:?}: the CPU computes in fp32", config.precision);
        }
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
