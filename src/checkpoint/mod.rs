//! PyTorch checkpoint files (`torch.save` zip archives), and nothing else: read without
//! executing pickles, and written back as a Lightning-shaped `.ckpt`. What becomes of the
//! tensors (config, strict fitting, safetensors) is `weights`' business.
//!
//! - [`zip_archive`]: the memory-mapped zip container and its records.
//! - [`pickle`]: a pickle decoder that never calls anything; unknown classes stay [`Value::Object`].
//! - [`tensor`]: storage records → strided tch tensors, bounds-checked.
//! - [`torch_file`]: a decoded archive and the state dict (and config) inside it.
//! - [`sources`]: upstream's initialisation sources (OpenAI CLIP TorchScript, HF RoBERTa).
//! - [`export`]: a model folder → a `.ckpt` that `torch.load(weights_only=True)` opens.
mod arena;
pub mod export;
pub mod pickle;
pub mod sources;
pub mod tensor;
pub mod torch_file;
pub mod value;
pub mod zip_archive;

pub use torch_file::{read_checkpoint, TorchFile};
pub use value::Value;
