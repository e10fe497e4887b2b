//! Mixed precision on CUDA: `precision=16` runs each forward and backward under autocast
//! (fp16) with dynamic loss scaling, as PyTorch's `GradScaler` (initial scale 2¹⁶, ×2 after
//! 2000 steps without overflow, ×½ and the step skipped on an inf or NaN gradient). CPU runs
//! compute in fp32. `precision="bf16"` needs autocast's dtype switch, which tch does not
//! expose: it is refused with a message until the c10 shim provides it.
use serde::{Deserialize, Serialize};

use crate::config::{M3aeConfig, PrecisionMode};
use crate::error::{Error, Result};

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
        PrecisionMode::Fp16 => Ok(Compute::Fp16Autocast),
        PrecisionMode::Bf16 => Err(Error::Config("`precision`: \"bf16\" autocast needs autocast's dtype switch, which tch 0.24 does not expose; use 16 or 32".into())),
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
