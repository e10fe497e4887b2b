//! The table's `chance` row: what each metric gives without learning anything, worked out
//! from the study's shape and its validation data.
use std::collections::BTreeMap;
use std::path::Path;

use crate::data::arrow::ArrowFile;
use crate::data::tokenizer::TextTokenizer;
use crate::error::{Error, Result};

/// A baseline value and how it was worked out, by column header.
pub type Baselines = BTreeMap<String, (f64, String)>;

/// The chance levels that follow from the study's shape alone: retrieval R@k = k/N with N
/// test images (one caption each); ITM's loss ln 2 (half the pairs are false, upstream's
/// draw); MIM's loss of predicting zeros, which with `norm_pix_loss` (each patch normalised by
/// its mean and unbiased variance over P = 3·patch² values) is (P − 1)/P per patch.
pub fn chance_levels(test_images: usize, patch_size: i64) -> Baselines {
    let mut out = BTreeMap::new();
    for (dir, name) in [("IR", "image retrieval"), ("TR", "text retrieval")] {
        for k in [1usize, 5, 10] {
            out.insert(format!("{dir} R@{k}"), ((k as f64 / test_images as f64).min(1.0), format!("{name}: {k}/{test_images}")));
        }
    }
    out.insert("ITM loss".into(), (std::f64::consts::LN_2, "ln 2: half the pairs are false".into()));
    out.insert("ITM acc".into(), (0.5, "half the pairs are false".into()));
    let p = 3 * patch_size * patch_size;
    out.insert("MIM loss".into(), ((p - 1) as f64 / p as f64, format!("predicting zeros: ({p} − 1)/{p}")));
    out.insert("VQA closed".into(), (0.5, "yes/no, balanced by the generator".into()));
    out
}

/// The MLM accuracy of always predicting the commonest token: whole-word masking picks words
/// without regard to what they are, so every maskable token (not `<s>`, `</s>` or padding) of
/// the validation captions, at `max_text_len`, is equally likely to be a target, and the
/// best constant guess scores the commonest token's share of them.
pub fn mlm_majority(captions: &Path, tokenizer: &TextTokenizer) -> Result<(f64, String)> {
    let file = ArrowFile::open(captions)?;
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for texts in file.string_lists("caption")? {
        for text in texts {
            let enc = tokenizer.encode(&text)?;
            for (i, &id) in enc.input_ids.iter().enumerate() {
                if enc.special_tokens_mask[i] == 0 && enc.attention_mask[i] == 1 {
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
    }
    let total: usize = counts.values().sum();
    let (&id, &top) = counts.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id))).ok_or_else(|| Error::Config(format!("{}: no caption has a maskable token", captions.display())))?;
    let share = top as f64 / total as f64;
    Ok((share, format!("always the commonest token (id {id}): {top} of the {total} maskable tokens of {}", captions.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())))
}
