//! The input pipeline: upstream's Arrow datasets, the RoBERTa tokenizer, image transforms,
//! MLM masking and batching.
pub mod arrow;
pub mod arrow_write;
pub mod bench;
pub mod check;
pub mod collate;
pub mod dataset;
pub mod dicom;
pub mod image_io;
pub mod image_set;
pub mod loader;
pub mod mlm;
pub mod prepare;
pub mod preprocess_set;
pub mod randaug;
pub mod resize;
pub mod synth;
pub mod tokenizer;
pub mod transforms;
pub mod unreadable;
