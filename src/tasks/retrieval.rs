//! Image–text retrieval scores. Upstream's `compute_irtr_recall` runs the whole model per
//! (image, text) pair ("TODO: speed up by caching"); here each text and each image is encoded
//! once and only the fusion runs per pair. The scores equal the per-pair forwards (the
//! benchmark and the tests compare them).
use tch::nn::Module;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::{InferOptions, M3aeTransformerSs};

/// Texts fused with one image at a time (upstream scores text batches of 256).
pub const TEXT_CHUNK: i64 = 256;

/// Every candidate text, encoded once: RoBERTa + `multi_modal_language_proj`, in chunks.
pub struct EncodedTexts {
    /// ([n, L, H] text stream, its [n, 1, 1, L] additive mask) per chunk.
    chunks: Vec<(Tensor, Tensor)>,
}

impl EncodedTexts {
    /// `ids`/`masks` [T, L]. Call under `no_grad`.
    pub fn new(model: &M3aeTransformerSs, ids: &Tensor, masks: &Tensor) -> Self {
        let nt = ids.size()[0];
        let text_mask = crate::model::bert::extended_attention_mask(masks, Kind::Float);
        let chunks = (0..nt)
            .step_by(TEXT_CHUNK as usize)
            .map(|start| {
                let n = TEXT_CHUNK.min(nt - start);
                let m = text_mask.narrow(0, start, n);
                (model.encode_text(&ids.narrow(0, start, n), &m, false, None), m)
            })
            .collect();
        EncodedTexts { chunks }
    }

    /// Scores of each of `images` [I, 3, S, S] against every text → [I, T]: `irtr_head`'s
    /// score (upstream's ranking head), else `itm_head`'s match logit. Call under `no_grad`.
    pub fn scores(&self, model: &M3aeTransformerSs, images: &Tensor) -> Result<Tensor> {
        let mut rows = Vec::new();
        for i in 0..images.size()[0] {
            let (feats, _) = model.encode_image(&images.narrow(0, i, 1), None, None); // [1, Lv, H]
            let (_, lv, h) = feats.size3().map_err(|e| Error::input("images", e.to_string()))?;
            let mut row = Vec::with_capacity(self.chunks.len());
            for (texts, mask) in &self.chunks {
                let image = feats.expand([texts.size()[0], lv, h], false);
                let fused = model.fuse(texts, mask, &image, &InferOptions { cls_only: true, ..Default::default() }, None);
                row.push(match (&model.irtr_head, &model.itm_head) {
                    (Some(irtr), _) => irtr.forward(&fused.cls_feats).select(1, 0),
                    (None, Some(itm)) => itm.forward(&fused.cls_feats).select(1, 1),
                    (None, None) => return Err(Error::Config("retrieval needs itm_head or irtr_head (loss_names itm or irtr > 0)".into())),
                });
            }
            rows.push(Tensor::cat(&row, 0));
        }
        Ok(Tensor::stack(&rows, 0))
    }
}

/// Scores of every (image, text) pair: `images` [I, 3, S, S], `ids`/`masks` [T, L] → [I, T].
/// Call under `no_grad`.
pub fn retrieval_scores(model: &M3aeTransformerSs, images: &Tensor, ids: &Tensor, masks: &Tensor) -> Result<Tensor> {
    EncodedTexts::new(model, ids, masks).scores(model, images)
}

/// Images decoded and scored at a time by [`retrieve`].
const IMAGE_CHUNK: usize = 16;

/// One ranked image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetrievalHit {
    /// 1 = best match.
    pub rank: usize,
    /// The image's index in the set.
    pub index: usize,
    /// Its file name or `image_id`.
    pub name: String,
    /// The ranking score ([`EncodedTexts::scores`]): `irtr_head`'s, else `itm_head`'s match logit.
    pub score: f64,
}

/// What [`retrieve`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Retrieval {
    /// The `top_k` best images, best first (ties keep the set's order).
    pub hits: Vec<RetrievalHit>,
    /// Which head scored: `irtr_head` or `itm_head`.
    pub scorer: &'static str,
    /// Images scored.
    pub ranked: usize,
    /// Images that could not be read (name, reason), left out of the ranking.
    pub unreadable: Vec<(String, String)>,
}

/// Ranks every image of `set` for the text `query`: the query encoded once, each image once
/// ([`EncodedTexts`]), and the `top_k` best returned.
pub fn retrieve(m: &super::M3ae, set: &crate::data::image_set::ImageSet, query: &str, top_k: usize) -> Result<Retrieval> {
    if top_k == 0 {
        return Err(Error::input("top_k", "must be at least 1"));
    }
    let model = &m.model;
    let scorer = match (&model.irtr_head, &model.itm_head) {
        (Some(_), _) => "irtr_head",
        (None, Some(_)) => "itm_head",
        (None, None) => return Err(Error::Config(format!("{}: the model has neither irtr_head nor itm_head: it cannot rank images", m.source.display()))),
    };
    let (ids, masks) = m.encode_texts(&[query])?;
    let bar = indicatif::ProgressBar::new(set.len() as u64);
    let mut scored: Vec<(usize, f64)> = Vec::with_capacity(set.len());
    let mut unreadable = Vec::new();
    tch::no_grad(|| -> Result<()> {
        let texts = EncodedTexts::new(model, &ids, &masks);
        let all: Vec<usize> = (0..set.len()).collect();
        for chunk in all.chunks(IMAGE_CHUNK) {
            let (mut tensors, mut kept) = (Vec::new(), Vec::new());
            for &i in chunk {
                match set.decode(i).and_then(|img| m.image_from_rgba(&img)) {
                    Ok(t) => {
                        tensors.push(t);
                        kept.push(i);
                    }
                    Err(e) => {
                        log::warn!("skipping {}: {e}", set.name(i));
                        unreadable.push((set.name(i).to_string(), e.to_string()));
                    }
                }
            }
            if !tensors.is_empty() {
                let s = texts.scores(model, &Tensor::stack(&tensors, 0).to_device(m.device()))?; // [n, 1]
                let s = Vec::<f64>::try_from(s.select(1, 0).to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
                scored.extend(kept.into_iter().zip(s));
            }
            bar.inc(chunk.len() as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    if scored.is_empty() {
        return Err(Error::input("images", "no image of the set could be read"));
    }
    // stable: equal scores keep the set's order
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ranked = scored.len();
    let hits = scored.into_iter().take(top_k).enumerate().map(|(r, (index, score))| RetrievalHit { rank: r + 1, index, name: set.name(index).to_string(), score }).collect();
    Ok(Retrieval { hits, scorer, ranked, unreadable })
}
