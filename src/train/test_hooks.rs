//! Hooks for the project's own tests, read from the environment when a run starts; unset,
//! they do nothing. They make the fault tests deterministic (a signal at a known step instead
//! of a race against a polling test) and let a test read the exact gradient AdamW receives.
//!
//! - `M3AE_TEST_SIGNAL_AT_STEP=N:kill|int`: once optimizer step N is done (logged, and
//!   checkpointed where the run checkpoints), the process sends itself SIGKILL or SIGINT.
//! - `M3AE_TEST_DUMP_GRADIENTS=DIR`: each optimizer step writes the gradient it hands to
//!   AdamW (after Lightning's division by the accumulation count) to
//!   `DIR/step-{N}.safetensors`, under the parameters' names.
use std::path::PathBuf;

use super::optim::{AdamW, Gradients};
use crate::error::{Error, Result};

pub const SIGNAL_AT_STEP: &str = "M3AE_TEST_SIGNAL_AT_STEP";
pub const DUMP_GRADIENTS: &str = "M3AE_TEST_DUMP_GRADIENTS";

/// The hooks a run was started with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestHooks {
    /// (step, signal number)
    pub signal_at_step: Option<(u64, libc::c_int)>,
    pub dump_gradients: Option<PathBuf>,
}

impl TestHooks {
    pub fn from_env() -> Result<TestHooks> {
        let signal_at_step = match std::env::var(SIGNAL_AT_STEP) {
            Ok(v) => Some(parse_signal(&v).ok_or_else(|| Error::Config(format!("{SIGNAL_AT_STEP}={v}: expected STEP:kill or STEP:int")))?),
            Err(_) => None,
        };
        Ok(TestHooks { signal_at_step, dump_gradients: std::env::var_os(DUMP_GRADIENTS).map(PathBuf::from) })
    }

    /// Called once step `step` is done: sends the signal asked for at this step.
    pub fn after_step(&self, step: u64) {
        if let Some((at, sig)) = self.signal_at_step {
            if at == step {
                log::warn!("{SIGNAL_AT_STEP}: signal {sig} after step {step}");
                // SAFETY: raising a signal in our own process; SIGINT runs the trainer's handler
                unsafe { libc::raise(sig) };
            }
        }
    }

    /// Writes the gradient of step `step` (1-based) when asked to.
    pub fn dump(&self, step: u64, opt: &AdamW, g: &Gradients) -> Result<()> {
        let Some(dir) = &self.dump_gradients else { return Ok(()) };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let named: Vec<(String, &tch::Tensor)> = g.tensors().iter().enumerate().filter(|(_, t)| t.defined()).map(|(i, t)| (opt.slot_name(i).to_string(), t)).collect();
        crate::weights::write_safetensors(&dir.join(format!("step-{step}.safetensors")), named.iter().map(|(k, t)| (k.as_str(), *t)))
    }
}

fn parse_signal(v: &str) -> Option<(u64, libc::c_int)> {
    let (step, sig) = v.split_once(':')?;
    let sig = match sig {
        "kill" => libc::SIGKILL,
        "int" => libc::SIGINT,
        _ => return None,
    };
    Some((step.parse().ok()?, sig))
}
