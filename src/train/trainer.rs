//! The training loop: upstream's Lightning `fit` for one task, on one device.
//!
//! - Micro-batches of `per_gpu_batchsize`, accumulated over
//!   `batch_size / (per_gpu_batchsize × devices)` (at least 1) into one AdamW step; the
//!   optimizer also steps on the last, shorter accumulation of an epoch, as Lightning does.
//! - The lr schedule steps after each optimizer step (step k uses the factor of k).
//! - `max_steps` unset: `len(loader) × max_epoch / accumulate`.
//! - Validation every `val_check_interval` (a fraction of an epoch's batches, or a batch
//!   count), and always at the end of the run.
//! - `checkpoints/last` after each validation, every `checkpoint_every_n_steps`, at the end
//!   and on Ctrl-C; `checkpoints/best` by `val/the_metric` (max).
//! - Randomness: the data is keyed by (seed, epoch, batch); torch's generator (dropout, MIM
//!   noise) is re-seeded from (seed, step, micro-batch) before each forward, so a resumed run
//!   draws exactly what the uninterrupted run drew.
//! - Several processes (torchrun, `--nproc`): each step's micro-batches are dealt out round
//!   robin, so a step sees the same samples and random draws for any number of processes
//!   (a rank runs `accumulate / world` of them, upstream's `batch_size / (per_gpu_batchsize ×
//!   devices)`); the gradients, losses and metrics are summed over the ranks ([`super::sync`]);
//!   only rank 0 writes files.
//! - A step's micro-batches are read before any runs, and all are cut to the text columns
//!   some micro-batch on some rank uses (`Batch::cut_text`: the losses do not change).
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::evaluate::{evaluate, Evaluation};
use super::log::{progress, MetricsLog, Throughput};
use super::metrics::{Named, PhaseMetrics};
use super::optim::{lr_factor, AdamW, Gradients};
use super::setup::{Built, Pipeline, SplitData};
use super::start::{start, Start};
use super::state::{self, TrainerState};
use super::step::{run_micro_scaled, stream_seed};
use super::sync::{reduce_metrics, reduce_step, step_text_columns, StepLosses};
use super::task::Task;
use super::test_hooks::TestHooks;
use super::precision::{self, compute_mode, Compute};
use crate::config::M3aeConfig;
use crate::data::loader::Loader;
use crate::dist::ddp::Ddp;
use crate::error::{Error, Result};
use crate::model::linear::check_no_fallback;

/// Set by SIGINT: the loop saves `last` at the next step boundary and stops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_sigint() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}


/// A run's options, as the CLI gives them.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub task: Task,
    pub run_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub overrides: Vec<(String, serde_json::Value)>,
    pub resume: bool,
    pub device: tch::Device,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `max_steps` reached (or the epochs ran out).
    Finished,
    /// Early stopping: `early_stop_patience` validations without a better `the_metric`.
    EarlyStopped,
    /// Ctrl-C: `last` was saved.
    Interrupted,
}

/// What `fit` returns.
#[derive(Debug)]
pub struct FitSummary {
    pub outcome: Outcome,
    pub state: TrainerState,
    /// The last validation's values.
    pub last_validation: Option<Named>,
}

/// The run folder's paths.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.checkpoints().join(name)
    }
}

/// Everything a running fit holds.
struct Fit {
    config: M3aeConfig,
    task: Task,
    built: Built,
    opt: AdamW,
    state: TrainerState,
    pipe: Pipeline,
    train: SplitData,
    val: SplitData,
    run: RunDir,
    log: MetricsLog,
    val_metrics: PhaseMetrics,
    compute: Compute,
    last_validated: Option<u64>,
    last_validation: Option<Named>,
    ddp: Ddp,
    hooks: TestHooks,
}

/// Trains `opts.task` into `opts.run_dir`, or resumes it from `checkpoints/last`.
pub fn fit(opts: &RunOptions) -> Result<FitSummary> {
    INTERRUPTED.store(false, Ordering::SeqCst);
    install_sigint();
    let run = RunDir(opts.run_dir.clone());
    std::fs::create_dir_all(&run.0).map_err(|e| Error::io(&run.0, e))?;
    let last = run.checkpoint("last");
    let Start { config, built, opt, resumed: st, ddp } = start(opts, &run, &last)?;
    let compute = compute_mode(&config, ddp.device())?;
    if ddp.is_main() {
        state::clean_partial(&run.checkpoints());
        crate::tasks::answers::stage_for_checkpoints(&config, &run.checkpoints())?;
        crate::config::keys::write_json(&run.config(), &config)?;
    }
    let pipe = Pipeline::new(&config)?;
    let train = pipe.split("train", true)?;
    let val = pipe.split("val", false)?;
    let batches = train.data.len().div_ceil(train.loader.batch_size.max(1));
    let accumulate = (config.batch_size / config.per_gpu_batchsize.max(1)).max(1);
    let max_steps = config.max_steps.unwrap_or(((batches * config.max_epoch) / accumulate) as u64);
    if max_steps == 0 {
        return Err(Error::Config(format!("0 optimizer steps: {} train samples, per_gpu_batchsize {}, accumulate {accumulate}, max_epoch {}", train.data.len(), config.per_gpu_batchsize, config.max_epoch)));
    }
    let state = st.unwrap_or_else(|| TrainerState::new(max_steps, accumulate));
    if ddp.world() > 1 {
        log::info!("rank {} of {}: {} micro-batches of {} per step, dealt out round robin ({} here)", ddp.rank(), ddp.world(), state.accumulate, config.per_gpu_batchsize, state.accumulate.div_ceil(ddp.world()));
        if !state.accumulate.is_multiple_of(ddp.world()) {
            log::warn!("batch_size / per_gpu_batchsize = {} is not a multiple of the {} processes: some ranks idle part of each step", state.accumulate, ddp.world());
        }
    }
    let log = if ddp.is_main() { MetricsLog::open(&run.metrics(), opts.resume.then_some(state.step))? } else { MetricsLog::discard(&run.metrics()) };
    let mut val_metrics = PhaseMetrics::default();
    if let Some((s, c, o)) = state.vqa_best {
        val_metrics.vqa_score.best_score = s;
        val_metrics.vqa_score.best_close_score = c;
        val_metrics.vqa_score.best_open_score = o;
    }
    let task = opts.task.clone();
    let hooks = TestHooks::from_env()?;
    let mut f = Fit { config, task, built, opt, state, pipe, train, val, run, log, val_metrics, compute, last_validated: None, last_validation: None, ddp, hooks };
    let outcome = f.run()?;
    Ok(FitSummary { outcome, state: f.state, last_validation: f.last_validation })
}

impl Fit {
    fn run(&mut self) -> Result<Outcome> {
        let c = self.config.clone();
        let bar = progress(self.state.max_steps, self.state.step);
        if !self.ddp.is_main() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut train_metrics = PhaseMetrics::default();
        let mut since_log = Throughput::start(Instant::now());
        let outcome = 'epochs: loop {
            if c.max_steps.is_none() && self.state.epoch >= c.max_epoch as u64 {
                break Outcome::Finished;
            }
            let mut loader = Loader::new(self.train.data.clone(), self.pipe.tokenizer.clone(), self.train.transforms.clone(), self.pipe.collator(), self.train.loader.clone(), self.state.epoch)?;
            let n_batches = loader.len();
            let val_every = val_interval(c.val_check_interval, n_batches);
            loader.skip_to(self.state.batch_in_epoch);
            loader.set_shard(self.ddp.shard(self.state.accumulate));
            let mut grads: Option<Gradients> = None;
            let mut micro = 0usize;
            let (mut step_losses, mut step_samples) = (StepLosses::default(), 0usize);
            // a whole step's micro-batches at a time, cut to one text width (see the module doc)
            loop {
                let slots = loader.next_step(self.state.accumulate)?;
                if slots.is_empty() {
                    break;
                }
                let columns = step_text_columns(&self.ddp, slots.iter().filter_map(|(_, b)| b.as_ref()))?;
                for (batch_no, batch) in slots {
                    // `None`: another rank's micro-batch; only the step's bookkeeping happens here
                    if let Some(mut batch) = batch {
                        batch.cut_text(columns);
                        tch::manual_seed(stream_seed(c.seed, self.state.step, micro as u64));
                        let mut rng_itm = ChaCha8Rng::seed_from_u64(stream_seed(c.seed ^ 0x17e, self.state.step, micro as u64) as u64);
                        let scale = if self.compute == Compute::Fp16Autocast { self.state.scaler.scale } else { 1.0 };
                        let out = precision::autocast(self.compute, || run_micro_scaled(&self.built.model, Some(&self.opt), &batch, self.task.kind, &mut train_metrics, &mut rng_itm, scale))??;
                        check_no_fallback().map_err(|e| Error::Training { step: self.state.step + 1, reason: e.to_string() })?;
                        step_samples += out.samples;
                        step_losses.add(&out.losses);
                        match (&mut grads, out.gradients) {
                            (Some(acc), Some(g)) => acc.add(g),
                            (g @ None, Some(new)) => *g = Some(new),
                            _ => {}
                        }
                    }
                    micro += 1;
                    self.state.batch_in_epoch = batch_no + 1;
                    let epoch_end = batch_no + 1 == n_batches;
                    if micro < self.state.accumulate && !epoch_end {
                        continue;
                    }
                    // one optimizer step, on the sums over every rank
                    let (summed, totals) = reduce_step(&self.ddp, &self.opt, grads.take(), &step_losses, step_samples, INTERRUPTED.load(Ordering::SeqCst))?;
                    grads = summed;
                    since_log.add(totals.samples);
                    for (name, v) in &totals.losses {
                        if !v.is_finite() && self.compute != Compute::Fp16Autocast {
                            return Err(Error::Training { step: self.state.step + 1, reason: format!("the {name} loss is {v}; checkpoints/last holds the last good state") });
                        }
                    }
                    let lr = lr_factor(&c, self.state.step, self.state.max_steps);
                    self.optimizer_step(grads.take(), lr)?;
                    self.state.step += 1;
                    let means = &totals.losses;
                    micro = 0;
                    step_losses.clear();
                    step_samples = 0;
                    if epoch_end {
                        self.state.epoch += 1;
                        self.state.batch_in_epoch = 0;
                    }
                    let step = self.state.step;
                    let loss_msg: Vec<String> = means.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                    let rate = since_log.rate(Instant::now());
                    bar.set_position(step);
                    bar.set_message(format!("{} lr {:.2e} {:.1} samples/s", loss_msg.join(" "), c.learning_rate * lr, rate));
                    if step.is_multiple_of(c.log_every_n_steps.max(1)) {
                        let mut values: Named = means.iter().map(|(k, v)| (format!("{k}/train/loss"), *v)).collect();
                        values.push(("lr".into(), c.learning_rate * lr));
                        if self.compute == Compute::Fp16Autocast {
                            values.push(("train/loss_scale".into(), self.state.scaler.scale));
                            values.push(("train/skipped_steps".into(), self.state.skipped_steps as f64));
                        }
                        values.push(("train/samples_per_second".into(), rate));
                        self.log.write(step, self.state.epoch, &values)?;
                        log::info!("step {step}/{}: {} lr {:.3e}, {rate:.1} samples/s", self.state.max_steps, loss_msg.join(", "), c.learning_rate * lr);
                        since_log = Throughput::start(Instant::now());
                    }
                    if epoch_end {
                        // unreadable images were replaced by other samples: count them
                        let mut skipped = [loader.unreadable().len() as f64];
                        reduce_metrics(&self.ddp, &mut train_metrics, &mut skipped)?;
                        let skipped = skipped[0] as u64;
                        let mut values = train_metrics.wrapup("train", &c.loss_names, None);
                        if skipped > 0 {
                            self.state.unreadable_images += skipped;
                            values.push(("train/unreadable_images".into(), skipped as f64));
                        }
                        self.log.write(step, self.state.epoch, &values)?;
                    }
                    let done = step >= self.state.max_steps;
                    let validate_now = !done && (epoch_end && val_every >= n_batches || (batch_no + 1) % val_every == 0);
                    if validate_now {
                        let validating = Instant::now();
                        if let Some(stop) = self.validate_and_checkpoint()? {
                            bar.finish_and_clear();
                            break 'epochs stop;
                        }
                        // samples/s counts training only
                        since_log.exclude(validating.elapsed());
                    } else if c.checkpoint_every_n_steps > 0 && step.is_multiple_of(c.checkpoint_every_n_steps) {
                        let saving = Instant::now();
                        self.save("last")?;
                        since_log.exclude(saving.elapsed());
                    }
                    if totals.interrupted {
                        self.save("last")?;
                        bar.finish_and_clear();
                        log::warn!("interrupted: saved {} at step {step}", self.run.checkpoint("last").display());
                        break 'epochs Outcome::Interrupted;
                    }
                    self.hooks.after_step(step);
                    if done {
                        break 'epochs Outcome::Finished;
                    }
                }
            }
            if loader.is_empty() {
                return Err(Error::Config("the train split has no samples".into()));
            }
        };
        bar.finish_and_clear();
        if outcome == Outcome::Finished && self.last_validated != Some(self.state.step) {
            // a run always validates at its end, also when max_steps stops it mid-epoch
            self.validate_and_checkpoint()?;
        }
        Ok(outcome)
    }

    /// One optimizer step on the accumulated gradients: fp16's unscale and skip (GradScaler),
    /// the non-finite check, Lightning's division by `accumulate`, clipping, AdamW.
    fn optimizer_step(&mut self, grads: Option<Gradients>, lr: f64) -> Result<()> {
        let Some(mut g) = grads else { return Ok(()) };
        if self.compute == Compute::Fp16Autocast {
            // GradScaler: unscale, skip the step on an inf/NaN, adjust the scale
            g.scale(1.0 / self.state.scaler.scale);
            let found_inf = g.first_non_finite().is_some();
            self.state.scaler.update(found_inf);
            if found_inf {
                self.state.skipped_steps += 1;
                log::warn!("step {}: non-finite fp16 gradients, step skipped (loss scale now {})", self.state.step + 1, self.state.scaler.scale);
                return Ok(());
            }
        } else if let Some(i) = g.first_non_finite() {
            return Err(Error::Training {
                step: self.state.step + 1,
                reason: format!("the gradient of `{}` is not finite; checkpoints/last holds the last good state", self.opt.slot_name(i)),
            });
        }
        // Lightning divides each micro-batch's loss by accumulate_grad_batches
        if self.state.accumulate > 1 {
            g.scale(1.0 / self.state.accumulate as f64);
        }
        self.hooks.dump(self.state.step + 1, &self.opt, &g)?;
        if let Some(max) = self.config.grad_clip_norm {
            g.clip_norm(max);
        }
        self.opt.apply(g, lr);
        Ok(())
    }

    /// Validates, logs, writes `last` (and `best` when `val/the_metric` improved); returns
    /// `Some(EarlyStopped)` when patience ran out.
    fn validate_and_checkpoint(&mut self) -> Result<Option<Outcome>> {
        let c = &self.config;
        let recall = c.get_recall_metric;
        // under the training run's autocast, as Lightning's precision plugin runs validation_step
        let ev: Evaluation = precision::autocast(self.compute, || evaluate(&self.built.model, self.task.kind, &self.pipe, &self.val, "val", recall, &mut self.val_metrics, &self.ddp))??;
        check_no_fallback().map_err(|e| Error::Training { step: self.state.step, reason: format!("validation: {e}") })?;
        self.state.unreadable_images += ev.unreadable_images;
        let mut values = ev.values.clone();
        if ev.unreadable_images > 0 {
            values.push(("val/unreadable_images".into(), ev.unreadable_images as f64));
        }
        self.log.write(self.state.step, self.state.epoch, &values)?;
        let v = &self.val_metrics.vqa_score;
        self.state.vqa_best = Some((v.best_score, v.best_close_score, v.best_open_score));
        let metric = ev.get("val/the_metric").unwrap_or(f64::NAN);
        log::info!("validation at step {}: val/the_metric {metric:.4}", self.state.step);
        self.last_validated = Some(self.state.step);
        self.last_validation = Some(ev.values);
        let better = metric.is_finite() && self.state.best_metric.is_none_or(|b| metric > b);
        if better {
            self.state.best_metric = Some(metric);
            self.state.best_step = Some(self.state.step);
            self.state.since_best = 0;
            self.save("best")?;
            // nothing trained since: `last` shares `best`'s files
            if self.ddp.is_main() {
                state::save_as_link(&self.run.checkpoints(), "last", "best", &self.config, &self.state)?;
            }
        } else {
            self.state.since_best += 1;
            self.save("last")?;
        }
        Ok(c.early_stop_patience.filter(|&p| self.state.since_best >= p).map(|_| Outcome::EarlyStopped))
    }

    fn save(&self, name: &str) -> Result<()> {
        if !self.ddp.is_main() {
            return Ok(());
        }
        state::save(&self.run.checkpoints(), name, &self.built.vs, &self.config, &self.opt, &self.state)?;
        Ok(())
    }
}

/// Batches between validations: `val_check_interval` ≤ 1 is a fraction of the epoch's
/// batches (Lightning's float), above 1 a batch count (its int).
pub fn val_interval(interval: f64, batches: usize) -> usize {
    if interval <= 1.0 {
        ((batches as f64 * interval) as usize).max(1)
    } else {
        interval as usize
    }
}
