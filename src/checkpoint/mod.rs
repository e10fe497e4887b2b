//! PyTorch checkpoint files (`torch.save` zip archives): read without executing pickles,
//! convert to safetensors, and export back to a Lightning-shaped `.ckpt`.
//!
//! - [`zip_archive`]: the memory-mapped zip container and its records.
//! - [`pickle`]: a pickle decoder that never calls anything; unknown classes stay [`Value::Object`].
//! - [`tensor`]: storage records → strided tch tensors, bounds-checked.
//! - [`torch_file`]: a decoded archive and the state dicts in it.
//! - [`convert`]: Lightning / state-dict checkpoints → model weights (grid adaptation, report).
//! - [`sources`]: upstream's initialisation sources (OpenAI CLIP TorchScript, HF RoBERTa).
//! - [`export`]: a model folder → a `.ckpt` that `torch.load(weights_only=True)` opens.
mod arena;
pub mod convert;
pub mod export;
pub mod pickle;
pub mod sources;
pub mod tensor;
pub mod torch_file;
pub mod value;
pub mod zip_archive;

pub use convert::{load_model_source, ModelWeights};
pub use torch_file::TorchFile;
pub use value::Value;
