//! The inference API: what a trained model is for.
//!
//! - [`model`]: [`M3ae`], a model folder loaded with its tokenizer, eval transform and answers.
//! - [`vqa`]: the most probable answers to a question about an image.
//! - [`itm`]: the probability that a text matches an image.
//! - [`retrieval`]: image–text scores for every pair, each image and text encoded once, and
//!   [`retrieval::retrieve`], a set of images ranked for a text query.
//! - [`answers`]: the VQA answer vocabulary (`answers.json`).
pub mod answers;
pub mod itm;
pub mod model;
pub mod retrieval;
pub mod vqa;

pub use model::{LoadOptions, M3ae};
