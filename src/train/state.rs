//! The trainer's state and its checkpoints: `DIR/checkpoints/{last,best}`, each a model
//! folder (`model.safetensors` + `config.json`, a valid `load_path`, and what `m3ae export`
//! reads) plus `optimizer.safetensors` and `trainer_state.json`, and for VQA the answer
//! vocabulary `answers.json` when the run staged one in `DIR/checkpoints/`.
//!
//! Writing is atomic: a checkpoint is written into a fresh folder whose files and folder are
//! fsynced, then the `last` (or `best`) symlink is swapped to it by `rename`, which POSIX makes
//! atomic; the folder it pointed to is removed afterwards. A process killed at any instant
//! leaves `last` pointing at a complete checkpoint.
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn;

use super::optim::{AdamW, AdamWState};
use crate::config::keys::write_json;
use crate::config::M3aeConfig;
use crate::error::{Error, Result};
use crate::tasks::answers::ANSWERS_FILE;
use crate::weights::{read_safetensors, write_safetensors, StateDict};

/// Where a run is and what it has seen: everything besides the weights and the optimizer's
/// moments that a resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken (the next logged step is `step + 1`).
    pub step: u64,
    /// The epoch in progress.
    pub epoch: u64,
    /// The next micro-batch of `epoch` to train on.
    pub batch_in_epoch: usize,
    /// The step budget the schedule was built for.
    pub max_steps: u64,
    /// Micro-batches per optimizer step.
    pub accumulate: usize,
    /// The best `val/the_metric` so far, and the step it was reached at.
    pub best_metric: Option<f64>,
    pub best_step: Option<u64>,
    /// Validations since the best one (early stopping).
    pub since_best: u64,
    /// fp16's dynamic loss scale (unused in fp32), and steps skipped for non-finite gradients.
    pub scaler: super::precision::LossScaler,
    pub skipped_steps: u64,
    /// Samples whose image could not be decoded, so far.
    pub unreadable_images: u64,
    /// The VQA metric's best epoch (upstream's `*_best_epoch` values), for the val phase.
    pub vqa_best: Option<(f64, f64, f64)>,
}

impl TrainerState {
    pub fn new(max_steps: u64, accumulate: usize) -> Self {
        TrainerState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            max_steps,
            accumulate,
            best_metric: None,
            best_step: None,
            since_best: 0,
            scaler: Default::default(),
            skipped_steps: 0,
            unreadable_images: 0,
            vqa_best: None,
        }
    }
}

/// File names inside a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn fsync(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

/// Writes the checkpoint `name` (`last` or `best`) under `dir` atomically.
pub fn save(dir: &Path, name: &str, vs: &nn::VarStore, config: &M3aeConfig, opt: &AdamW, state: &TrainerState) -> Result<PathBuf> {
    let (tmp, target) = start_folder(dir, name, state)?;
    let vars = vs.variables();
    write_safetensors(&tmp.join(MODEL_FILE), vars.iter().map(|(k, v)| (k.as_str(), v)))?;
    let opt_state = opt.state();
    write_safetensors(&tmp.join(OPTIMIZER_FILE), opt_state.tensors.iter().map(|(k, v)| (k.as_str(), v)))?;
    write_json(&tmp.join(STATE_FILE), &serde_json::json!({ "state": state, "optimizer_steps": opt_state.steps }))?;
    commit_folder(dir, name, &tmp, &target, config)
}

/// Writes the checkpoint `name` as a copy of the checkpoint `source` (saved at the same
/// step, with nothing trained since): its weight and optimizer files are hard links to
/// `source`'s, so `best` and `last` at one step cost one copy on disk. Atomic as [`save`].
pub fn save_as_link(dir: &Path, name: &str, source: &str, config: &M3aeConfig, state: &TrainerState) -> Result<PathBuf> {
    let from = dir.join(source);
    if saved_step(&from) != Some(state.step) {
        return Err(Error::Checkpoint { path: from, reason: format!("not saved at step {}: cannot stand for `{name}`", state.step) });
    }
    let (tmp, target) = start_folder(dir, name, state)?;
    for f in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        std::fs::hard_link(from.join(f), tmp.join(f)).map_err(io(&tmp.join(f)))?;
    }
    commit_folder(dir, name, &tmp, &target, config)
}

/// A fresh temporary folder for the checkpoint `name`, and the folder name it will get.
fn start_folder(dir: &Path, name: &str, state: &TrainerState) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let target = format!("{name}-step{}-{nanos}", state.step);
    let tmp = dir.join(format!(".tmp-{target}"));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    Ok((tmp, target))
}

/// Writes `config.json` into `tmp`, fsyncs every file and the folder, renames it to
/// `target` and swaps the `name` symlink to it; removes the folder `name` pointed to before.
fn commit_folder(dir: &Path, name: &str, tmp: &Path, target: &str, config: &M3aeConfig) -> Result<PathBuf> {
    write_json(&tmp.join("config.json"), config)?;
    let mut files = vec![MODEL_FILE, OPTIMIZER_FILE, "config.json", STATE_FILE];
    // the run's VQA answer vocabulary, staged once when the run started
    let answers = dir.join(ANSWERS_FILE);
    if answers.is_file() {
        std::fs::copy(&answers, tmp.join(ANSWERS_FILE)).map_err(io(&answers))?;
        files.push(ANSWERS_FILE);
    }
    for f in files {
        fsync(&tmp.join(f))?;
    }
    fsync(tmp)?;
    let folder = dir.join(target);
    std::fs::rename(tmp, &folder).map_err(io(&folder))?;
    // swap the symlink: a new link, renamed over the old one
    let link = dir.join(name);
    let previous = std::fs::read_link(&link).ok();
    let new_link = dir.join(format!(".link-{target}"));
    std::os::unix::fs::symlink(target, &new_link).map_err(io(&new_link))?;
    std::fs::rename(&new_link, &link).map_err(io(&link))?;
    fsync(dir)?;
    if let Some(old) = previous.filter(|p| p.as_os_str() != target) {
        let old = dir.join(old);
        if old.starts_with(dir) && old.is_dir() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    Ok(link)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub weights: StateDict,
    pub optimizer: AdamWState,
    pub state: TrainerState,
    pub config: serde_json::Value,
}

/// The optimizer step a checkpoint folder was saved at, from its `trainer_state.json` alone
/// (None for a model folder that is not a trainer checkpoint).
pub fn saved_step(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path.join(STATE_FILE)).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["state"]["step"].as_u64()
}

/// Reads the checkpoint folder `path` (`…/checkpoints/last`): every file must be there.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let need = |f: &str| -> Result<PathBuf> {
        let p = path.join(f);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Checkpoint { path: path.into(), reason: format!("`{f}` is missing: not a trainer checkpoint") })
        }
    };
    let state_path = need(STATE_FILE)?;
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    #[derive(Deserialize)]
    struct OnDisk {
        state: TrainerState,
        optimizer_steps: std::collections::BTreeMap<String, i32>,
    }
    let on_disk: OnDisk = serde_json::from_str(&text).map_err(|source| Error::Json { path: state_path.clone(), source })?;
    let config = crate::config::keys::read_json(&need("config.json")?)?;
    Ok(Checkpoint {
        weights: read_safetensors(&need(MODEL_FILE)?)?,
        optimizer: AdamWState { tensors: read_safetensors(&need(OPTIMIZER_FILE)?)?, steps: on_disk.optimizer_steps },
        state: on_disk.state,
        config,
    })
}

/// Removes temporary folders a killed process left behind (never `last` or `best` targets).
pub fn clean_partial(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name.starts_with(".link-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
