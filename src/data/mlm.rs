//! MLM masking of tokenized texts, as upstream's collators (transformers 4.6) do it: with
//! `whole_word_masking` true (upstream's default) `DataCollatorForWholeWordMask`
//! ([`MaskingMode::Upstream`]), with false `DataCollatorForLanguageModeling`
//! ([`MaskingMode::TokenLevel`]); [`MaskingMode::for_config`] picks it.
//!
//! [`MaskingMode::Upstream`] reproduces what upstream gets with RoBERTa: its whole-word grouping
//! only recognises BERT's `##` continuations and `[CLS]`/`[SEP]`, so every RoBERTa position
//! (`<s>`, `</s>` and padding included) is its own candidate. `max(1, round(L · p))` candidates
//! are drawn without replacement, then those on special tokens or padding are dropped, so a
//! sequence gets on average `round(L · p) · real / L` masked tokens.
//! [`MaskingMode::TokenLevel`] selects each token that is neither special nor padding on its
//! own with probability p (`torch.bernoulli(probability_matrix)` after
//! `masked_fill_(special_tokens_mask, 0.0)`, the tokenizer's mask marking padding too).
//! [`MaskingMode::WholeWord`] groups a byte-level `Ġ` word start with its continuation tokens,
//! draws among the words of the real tokens only, and aims at `max(1, round(real · p))` tokens.
//! Either way each selected token becomes `<mask>` with probability 0.8, a uniformly random id
//! in `[0, vocab)` with probability 0.1, or stays; labels are the original id there, −100
//! elsewhere. Randomness comes from the caller's seeded RNG.
use rand::seq::SliceRandom;
use rand::Rng;

use super::tokenizer::Encoding;

/// Label value of positions without an MLM target.
pub const IGNORE_INDEX: i64 = -100;

/// How candidate positions are grouped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskingMode {
    /// Upstream's behaviour with RoBERTa: every position its own word (see the module doc).
    Upstream,
    /// Whole words delimited by byte-level `Ġ` prefixes, real tokens only.
    WholeWord,
    /// `DataCollatorForLanguageModeling`: each real token on its own, with probability p.
    TokenLevel,
}

impl MaskingMode {
    /// Upstream's collator for `whole_word_masking` (`base_datamodule.py`:
    /// `DataCollatorForWholeWordMask if _config["whole_word_masking"] else DataCollatorForLanguageModeling`).
    pub fn for_config(whole_word_masking: bool) -> MaskingMode {
        if whole_word_masking {
            MaskingMode::Upstream
        } else {
            MaskingMode::TokenLevel
        }
    }
}

/// MLM masking parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmMasker {
    /// Fraction of tokens to predict (`mlm_prob`, 0.15 upstream).
    pub probability: f64,
    /// Candidate grouping.
    pub mode: MaskingMode,
    /// Id written for the 80% `<mask>` replacements.
    pub mask_id: i64,
    /// Random replacements are drawn from `[0, vocab_size)`.
    pub vocab_size: i64,
}

/// One masked sequence; both vectors are [L].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedText {
    /// Input ids after replacement.
    pub ids: Vec<i64>,
    /// Original ids at selected positions, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
}

impl MlmMasker {
    /// Masks one encoding.
    pub fn mask(&self, enc: &Encoding, rng: &mut impl Rng) -> MaskedText {
        let len = enc.input_ids.len();
        let maskable = |i: usize| enc.special_tokens_mask[i] == 0 && enc.attention_mask[i] == 1;
        let selected = match self.mode {
            MaskingMode::Upstream | MaskingMode::WholeWord => self.select_words(enc, rng),
            // masked_indices = torch.bernoulli(probability_matrix).bool()
            MaskingMode::TokenLevel => (0..len).map(|i| maskable(i) && rng.gen::<f64>() < self.probability).collect(),
        };
        let mut ids = enc.input_ids.clone();
        let mut labels = vec![IGNORE_INDEX; len];
        for i in (0..len).filter(|&i| selected[i] && maskable(i)) {
            labels[i] = ids[i];
            let roll: f64 = rng.gen();
            if roll < 0.8 {
                ids[i] = self.mask_id;
            } else if roll < 0.9 {
                ids[i] = rng.gen_range(0..self.vocab_size.max(1));
            }
        }
        MaskedText { ids, labels }
    }

    /// `DataCollatorForWholeWordMask._whole_word_mask`: candidate words shuffled, whole words
    /// taken until the count is reached. [len]
    fn select_words(&self, enc: &Encoding, rng: &mut impl Rng) -> Vec<bool> {
        let len = enc.input_ids.len();
        let maskable = |i: usize| enc.special_tokens_mask[i] == 0 && enc.attention_mask[i] == 1;
        let (mut words, target) = match self.mode {
            MaskingMode::WholeWord => {
                let mut words: Vec<Vec<usize>> = Vec::new();
                for i in (0..len).filter(|&i| maskable(i)) {
                    match words.last_mut() {
                        Some(word) if !enc.word_starts[i] && word.last() == Some(&(i - 1)) => word.push(i),
                        _ => words.push(vec![i]),
                    }
                }
                let real = (0..len).filter(|&i| maskable(i)).count();
                (words, real)
            }
            // with RoBERTa every position is its own candidate word (see the module doc)
            MaskingMode::Upstream | MaskingMode::TokenLevel => ((0..len).map(|i| vec![i]).collect::<Vec<_>>(), len),
        };
        words.shuffle(rng);
        let to_predict = ((target as f64 * self.probability).round_ties_even() as usize).max(1);
        let mut selected = vec![false; len];
        let mut count = 0;
        for word in &words {
            if count >= to_predict {
                break;
            }
            if count + word.len() > to_predict {
                continue;
            }
            for &i in word {
                selected[i] = true;
            }
            count += word.len();
        }
        selected
    }
}
