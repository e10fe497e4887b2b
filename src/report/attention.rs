//! `attention.png`: where question words look in the image. For each (image, question), the
//! fusion layers' text→image cross-attention of a few of the question's words over the image
//! patches (averaged over every fusion layer and head, the image's class token left out,
//! renormalized), upsampled and overlaid on the image.
use std::path::Path;

use tch::{Kind, Tensor};

use super::raster::{denormalize, draw_grid, overlay, panel, Figure, Row};
use super::FigureSample;
use crate::data::tokenizer::Encoding;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions};
use crate::tasks::M3ae;

/// Heat-map opacity over the grey image.
const ALPHA: f64 = 0.55;

/// Question and function words passed over when a question has other words to show.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "there", "what", "which", "where", "how", "many", "much", "does", "do", "in", "on", "of", "at", "to",
    "this", "that", "these", "image", "show", "shown", "seen", "any", "with", "and", "or",
];

/// Up to `k` words of `text` to show: the word-starting tokens of the longest words (ties:
/// the earlier; function words only when nothing else is left), in sentence order, as
/// (token position, word).
fn pick_words(text: &str, enc: &Encoding, k: usize) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<(usize, String)> = Vec::new();
    for (pos, (&start, &(from, _))) in enc.word_starts.iter().zip(&enc.offsets).enumerate() {
        if !start || enc.attention_mask[pos] == 0 {
            continue;
        }
        let word: String = chars.iter().skip(from.max(0) as usize).take_while(|c| c.is_alphanumeric() || **c == '-' || **c == '\'').collect();
        if !word.is_empty() {
            words.push((pos, word));
        }
    }
    let mut by_length: Vec<usize> = (0..words.len()).collect();
    let common = |w: &str| FUNCTION_WORDS.contains(&w.to_lowercase().as_str());
    by_length.sort_by_key(|&i| (common(&words[i].1), std::cmp::Reverse(words[i].1.chars().count()), i));
    let mut keep: Vec<usize> = by_length.into_iter().take(k).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| words[i].clone()).collect()
}

/// Text→image cross-attention of `s`'s text over the image patches, mean over layers and
/// heads: [L, g²].
fn cross_attention(m: &M3ae, s: &FigureSample) -> Result<Tensor> {
    let image = m.image_batch(&s.image)?;
    let (ids, masks) = m.encode_texts(&[s.text.as_str()])?;
    let input = InferInput { image: &image, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
    let out = tch::no_grad(|| m.model.infer(&input, &InferOptions { output_attentions: true, ..Default::default() }))?;
    if out.attentions.is_empty() {
        return Err(Error::Config(format!("{}: the model has no fusion layers (num_top_layer 0): no cross-attention to draw", m.source.display())));
    }
    // each text_cross is [1, heads, L, 1 + g²]
    let layers: Vec<Tensor> = out.attentions.iter().map(|a| a.text_cross.to_kind(Kind::Float).get(0).mean_dim(0, false, Kind::Float)).collect();
    let mean = Tensor::stack(&layers, 0).mean_dim(0, false, Kind::Float).to_device(tch::Device::Cpu); // [L, 1 + g²]
    let patches = mean.narrow(1, 1, mean.size()[1] - 1);
    Ok(&patches / patches.sum_dim_intlist(1, true, Kind::Float).clamp_min(1e-12))
}

/// Draws, for each sample (an image and a question), the image and the cross-attention maps
/// of up to `words` of its words into `out`.
pub fn attention(m: &M3ae, samples: &[FigureSample], words: usize, out: &Path) -> Result<Figure> {
    if words == 0 {
        return Err(Error::input("words", "must be at least 1"));
    }
    let g = m.config.grid();
    let norm = m.transform.kind.normalization();
    let mut rows = Vec::new();
    for s in samples {
        let attn = cross_attention(m, s)?;
        let enc = m.tokenizer.encode(&s.text)?;
        let image = denormalize(&m.image_batch(&s.image)?.get(0), norm);
        let mut panels = vec![panel(&image, "image")?];
        for (pos, word) in pick_words(&s.text, &enc, words) {
            let heat = attn.get(pos as i64).view([g, g]);
            panels.push(panel(&overlay(&image, &heat, ALPHA)?, format!("\"{word}\""))?);
        }
        rows.push(Row { label: format!("{}: {}", s.label, s.text), panels });
    }
    let title = format!("Question words' cross-attention over patches ({} layers × {} heads)", m.config.num_top_layer, m.config.num_heads);
    draw_grid(out, &title, &rows, 1 + words)
}
