//! Kernels the linked libtorch has but tch does not bind, reached through a small C++ shim
//! that build.rs compiles against the same libtorch.
pub mod mkl_packed;
