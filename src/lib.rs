//! m3ae: M3AE (Chen et al., MICCAI 2022) on tch-rs, module for module and key for key
//! with the upstream PyTorch reference (github zhjohnchan/M3AE).
//!
//! - [`config`]: upstream's config dict.
//! - [`model`]: the module tree (`vision`, `text`, `fusion`, `heads`, `masking`, `m3ae`).
//! - [`train`]: the objectives and upstream's AdamW with its parameter groups.
//! - [`weights`]: safetensors checkpoints, loaded strictly by upstream key.
//! - [`checkpoint`]: PyTorch `.ckpt` files: read (never executed), convert, export.
//! - [`data`]: the input pipeline.
//! - [`dist`]: multi-process training on libtorch's c10d (Gloo, NCCL, TCPStore).
//! - [`parity`]: golden-set comparison against the Python reference.
//! - [`runtime`]: process-wide allocator settings for CPU work (used by the binary).
//! - [`bench`]: benchmark workloads against the PyTorch reference (bench/run.sh).
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod demo;
pub mod dist;
pub mod error;
pub mod model;
pub mod parity;
pub mod report;
pub mod runtime;
pub mod shim;
pub mod tasks;
pub mod train;
pub mod weights;

pub use config::M3aeConfig;
pub use error::{Error, Result};
pub use model::M3aeTransformerSs;
pub use tasks::M3ae;
