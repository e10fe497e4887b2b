//! The inference API: what a trained model is for.
//!
//! - [`retrieval`]: image–text scores for every pair, each image and text encoded once.
pub mod retrieval;
