//! The input pipeline: upstream's Arrow datasets, the RoBERTa tokenizer, image transforms,
//! MLM masking and batching.
