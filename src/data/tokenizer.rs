//! The RoBERTa tokenizer call of upstream's `BaseDataset.get_text`:
//! `RobertaTokenizerFast(text, padding="max_length", truncation=True, max_length=L,
//! return_special_tokens_mask=True, return_offsets_mapping=True)`.
//!
//! Loads a `tokenizer.json`, or a folder holding `tokenizer.json` or `vocab.json` + `merges.txt`
//! (byte-level BPE, no prefix space, `<s> … </s>` post-processing). As `RobertaTokenizerFast`
//! does on construction, RoBERTa's special tokens (`<s> <pad> </s> <unk> <mask>`) are registered
//! as special added tokens; a vocabulary without `<mask>` gets it appended at the next id.
use std::path::{Path, PathBuf};

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{Error, Result};

/// RoBERTa's beginning-of-sequence token.
const BOS: &str = "<s>";
/// RoBERTa's padding token.
const PAD: &str = "<pad>";
/// RoBERTa's end-of-sequence token.
const EOS: &str = "</s>";
/// RoBERTa's unknown token.
const UNK: &str = "<unk>";
/// RoBERTa's mask token.
const MASK: &str = "<mask>";

/// One tokenized text at fixed length L; all vectors are [L].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, padded with `<pad>`.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens (specials included), 0 for padding.
    pub attention_mask: Vec<i64>,
    /// 1 for `<s>`, `</s>` and padding.
    pub special_tokens_mask: Vec<i64>,
    /// Character (start, end) of each token in the text; (0, 0) for specials.
    pub offsets: Vec<(i64, i64)>,
    /// True where a token starts a word (first token, or byte-level `Ġ` space prefix).
    pub word_starts: Vec<bool>,
}

/// A RoBERTa byte-level BPE tokenizer padding and truncating to a fixed length.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    mask_id: i64,
    pad_id: i64,
}

impl TextTokenizer {
    /// Loads the tokenizer at `path` (file or folder) for sequences of `max_len` tokens.
    pub fn load(path: &Path, max_len: usize) -> Result<TextTokenizer> {
        let err = |reason: String| Error::Tokenizer { path: path.to_path_buf(), reason };
        if max_len < 2 {
            return Err(err(format!("max_text_len {max_len} leaves no room for <s> and </s>")));
        }
        let json = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let mut inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| err(e.to_string()))?
        } else if path.is_dir() {
            from_vocab_merges(path)?
        } else {
            return Err(err("neither a tokenizer.json nor a folder with vocab.json + merges.txt".into()));
        };
        let specials = [BOS, PAD, EOS, UNK].map(|t| AddedToken::from(t, true));
        inner.add_special_tokens(&specials);
        inner.add_special_tokens(&[AddedToken::from(MASK, true).lstrip(true)]);
        let id = |t: &str| inner.token_to_id(t).map(i64::from).ok_or_else(|| err(format!("no id for `{t}`")));
        let (pad_id, mask_id) = (id(PAD)?, id(MASK)?);
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_len),
            pad_id: pad_id as u32,
            pad_token: PAD.to_string(),
            ..PaddingParams::default()
        }));
        inner
            .with_truncation(Some(TruncationParams { max_length: max_len, ..TruncationParams::default() }))
            .map_err(|e| err(e.to_string()))?;
        Ok(TextTokenizer { inner, path: path.to_path_buf(), mask_id, pad_id })
    }

    /// Tokenizes one text to exactly `max_len` tokens.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        let enc = self
            .inner
            .encode_char_offsets(text, true)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), reason: format!("text {text:?}: {e}") })?;
        let widen = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
        let special = widen(enc.get_special_tokens_mask());
        let word_starts = enc
            .get_tokens()
            .iter()
            .zip(&special)
            .enumerate()
            .map(|(i, (tok, &s))| s == 0 && (tok.starts_with('Ġ') || i == 0 || special[i - 1] == 1))
            .collect();
        Ok(Encoding {
            input_ids: widen(enc.get_ids()),
            attention_mask: widen(enc.get_attention_mask()),
            special_tokens_mask: special,
            offsets: enc.get_offsets().iter().map(|&(s, e)| (s as i64, e as i64)).collect(),
            word_starts,
        })
    }

    /// Id of `<mask>`.
    pub fn mask_id(&self) -> i64 {
        self.mask_id
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Vocabulary size including added tokens (`len(tokenizer)` in Python).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// RoBERTa's pipeline around a `vocab.json` + `merges.txt` byte-level BPE.
fn from_vocab_merges(dir: &Path) -> Result<Tokenizer> {
    let err = |reason: String| Error::Tokenizer { path: dir.to_path_buf(), reason };
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    for file in [&vocab, &merges] {
        if !file.is_file() {
            return Err(err(format!("missing {}", file.display())));
        }
    }
    let (vocab, merges) = (vocab.to_string_lossy().into_owned(), merges.to_string_lossy().into_owned());
    let bpe = BPE::from_file(&vocab, &merges).build().map_err(|e| err(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| err(format!("vocab.json has no `{t}`")));
    let (bos, eos) = (id(BOS)?, id(EOS)?);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new((EOS.to_string(), eos), (BOS.to_string(), bos)).trim_offsets(true).add_prefix_space(false),
    ));
    Ok(tokenizer)
}
