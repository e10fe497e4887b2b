//! The M3AE module tree, one file per role, one struct per upstream class.
pub mod bert;
pub mod dropout;
pub mod fusion;
pub mod heads;
pub mod infer;
mod init;
pub mod linear;
pub mod m3ae;
pub mod masking;
pub mod text;
pub mod vision;

pub use m3ae::{InferInput, InferOptions, InferOutput, M3aeTransformerSs};
