//! PyTorch checkpoint files (`torch.save` zip archives): read without executing pickles,
//! convert to safetensors, and export back to a Lightning-shaped `.ckpt`.
