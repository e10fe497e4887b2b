//! A RoBERTa-style byte-level BPE trained on the generated texts: `vocab.json` + `merges.txt`,
//! RoBERTa's specials `<s> <pad> </s> <unk> <mask>` at ids 0–4, then the 256 byte symbols,
//! then the merges (what HF's `ByteLevelBPETokenizer.train` produces). Our loader
//! (`data::tokenizer`) reads the folder as it reads roberta-base's.
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper, TokenizerBuilder};

use crate::{Error, Result};

/// RoBERTa's special tokens in its id order.
pub const SPECIALS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

/// Trains a byte-level BPE of at most `vocab_size` entries on `texts` and writes `vocab.json`
/// and `merges.txt` into `dir`; returns the vocabulary size.
pub fn train(texts: &[String], vocab_size: usize, dir: &Path) -> Result<usize> {
    let err = |reason: String| Error::Tokenizer { path: dir.to_path_buf(), reason };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, DecoderWrapper>::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .build()
        .map_err(|e| err(e.to_string()))?;
    tokenizer.train(&mut trainer, texts.iter()).map_err(|e| err(e.to_string()))?;
    let model = tokenizer.get_model();
    model.save(dir, None).map_err(|e| err(e.to_string()))?;
    Ok(model.get_vocab_size())
}
