//! The M3AE module tree, one file per role, one struct per upstream class.
pub mod bert;
pub mod fusion;
pub mod heads;
mod init;
pub mod linear;
pub mod m3ae;
pub mod masking;
pub mod text;
pub mod vision;

pub use m3ae::{InferInput, InferOptions, InferOutput, M3aeTransformerSs};
