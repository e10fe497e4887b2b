//! A run's start: fresh (config layering, the model from `load_path` or initialised) or
//! resumed from `checkpoints/last`; in a multi-process run each rank also joins the process
//! group (torchrun's environment, `dist_timeout_s`) and takes rank 0's weights.
use std::path::Path;
use std::time::Duration;

use super::optim::AdamW;
use super::setup::{build_model, check_runnable, resolve, Built, Source};
use super::state::{self, TrainerState};
use super::sync::broadcast_model;
use super::trainer::{RunDir, RunOptions};
use crate::config::keys::build_config;
use crate::config::M3aeConfig;
use crate::dist::ddp::Ddp;
use crate::weights::encoders;
use crate::error::{Error, Result};

/// What a run starts from.
pub struct Start {
    /// The run's config (a resumed run's own, saved with `last`).
    pub config: M3aeConfig,
    /// The model, on this rank's device, with rank 0's weights.
    pub built: Built,
    /// The optimizer (a resumed run's state loaded).
    pub opt: AdamW,
    /// The trainer state of a resumed run.
    pub resumed: Option<TrainerState>,
    /// This process's place among the run's processes.
    pub ddp: Ddp,
}

/// The one key a resumed run may change: `max_steps`, to extend (or shorten) the run.
pub const RESUME_KEY: &str = "max_steps";

/// A resumed run's config: the one saved with `last`, with `max_steps` replaced where the
/// overrides give it (and the state's step budget with it); any other key is refused, as is a
/// budget the run has already spent. The lr schedule from here on is the one of the new
/// budget, as upstream's (Lightning rebuilds the schedule's lambda from `max_steps` on resume).
fn resumed_config(saved: &serde_json::Value, st: &mut TrainerState, overrides: &[(String, serde_json::Value)], last: &Path) -> Result<M3aeConfig> {
    if let Some((k, _)) = overrides.iter().find(|(k, _)| k != RESUME_KEY) {
        return Err(Error::Config(format!("--resume keeps the run's saved config ({}): `{k}` cannot change; only {RESUME_KEY} can", last.join("config.json").display())));
    }
    let config = build_config(Some(saved.clone()), &last.join("config.json").display().to_string(), overrides, None)?;
    if !overrides.is_empty() {
        let Some(n) = config.max_steps else {
            return Err(Error::Config(format!("--resume: {RESUME_KEY} must be a number of steps")));
        };
        if n <= st.step {
            return Err(Error::Config(format!("--resume: {RESUME_KEY} {n} is not beyond the run's step {} (checkpoints/last)", st.step)));
        }
        log::info!("--resume: {RESUME_KEY} {} -> {n}", st.max_steps);
        st.max_steps = n;
    }
    Ok(config)
}

/// Builds (`opts.resume`: reloads from `last`) the config, model and optimizer of a run.
pub fn start(opts: &RunOptions, run: &RunDir, last: &Path) -> Result<Start> {
    // the process group (when torchrun's environment names one), bounded by dist_timeout_s
    let join = |c: &M3aeConfig| Ddp::from_env(Duration::from_secs(c.dist_timeout_s), opts.device);
    let started = if opts.resume {
        if !last.exists() {
            return Err(Error::Config(format!("--resume: {} does not exist (nothing to resume)", last.display())));
        }
        let mut ck = state::load(last)?;
        let config = resumed_config(&ck.config, &mut ck.state, &opts.overrides, last)?;
        check_runnable(&config, &opts.task)?;
        let ddp = join(&config)?;
        let src = Source { weights: ck.weights, config: Some(ck.config) };
        let built = build_model(&config, Some((src, last)), true, ddp.device())?;
        let mut opt = AdamW::new(&built.vs, &config);
        opt.load_state(&ck.optimizer, last)?;
        log::info!("resuming {} at step {} (epoch {}, batch {})", run.0.display(), ck.state.step, ck.state.epoch, ck.state.batch_in_epoch);
        Start { config, built, opt, resumed: Some(ck.state), ddp }
    } else {
        if last.exists() {
            return Err(Error::Config(format!("{} already holds a run: add --resume to continue it, or choose another --run-dir", run.0.display())));
        }
        let resolved = resolve(&opts.task, opts.config_file.as_deref(), &opts.overrides)?;
        let config = resolved.config;
        let ddp = join(&config)?;
        let load_path = config.load_path.clone();
        // upstream builds the downstream heads after loading, unless test_only
        let built = build_model(&config, resolved.source.map(|s| (s, Path::new(load_path.as_str()))), config.test_only, ddp.device())?;
        if let Some(enc) = &resolved.encoders {
            // upstream's __init__: CLIP from `vit`, RoBERTa from `tokenizer`, the rest fresh
            let n = encoders::load(&built.vs, enc)?;
            let from: Vec<String> = enc.sources.iter().map(|p| p.display().to_string()).collect();
            log::info!("encoders from {}: {n} tensors ({} source keys unused)", from.join(" and "), enc.dropped.len());
        }
        let opt = AdamW::new(&built.vs, &config);
        Start { config, built, opt, resumed: None, ddp }
    };
    broadcast_model(&started.ddp, &started.built.vs)?;
    Ok(started)
}
