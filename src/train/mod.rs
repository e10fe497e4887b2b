//! Training and evaluation: the paper's objectives, upstream's optimizer and schedule, the
//! metrics, the loop and its checkpoints.
//!
//! - [`contrastive`]: stage 0, CLIP-style contrastive pre-training of the two encoders.
//! - [`task`]: the tasks and upstream's named config for each.
//! - [`setup`]: config layering, the model (fresh or from `load_path`), the data of a split.
//! - [`objectives`], [`pretrain`], [`step`]: the losses, one pre-training step, one micro-batch of any task.
//! - [`optim`]: transformers-4.6 AdamW in `set_schedule`'s groups, the lr schedule.
//! - [`precision`]: fp16 autocast with dynamic loss scaling on CUDA; [`cpu_bf16`]: CPU autocast in
//!   bf16, and the CPU's bf16 features.
//! - [`metrics`]: upstream's metrics and names; [`evaluate`]: a split's evaluation.
//! - [`trainer`]: the loop; [`start`]: a run's start, fresh or resumed; [`state`]: its state and
//!   atomic checkpoints; [`log`]: metrics.jsonl, progress.
//! - [`test_hooks`]: environment hooks for the project's fault tests.
//! - [`sync`]: what the processes of a multi-process run agree on (through [`crate::dist`]).
pub mod adamw_fused;
pub mod contrastive;
pub mod cpu_bf16;
pub mod evaluate;
pub mod gradients;
pub mod log;
pub mod metrics;
pub mod objectives;
pub mod optim;
pub mod precision;
pub mod pretrain;
pub mod setup;
pub mod start;
pub mod state;
pub mod step;
pub mod sync;
pub mod task;
pub mod test_hooks;
pub mod trainer;
