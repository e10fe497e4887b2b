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
                let fused = model.fuse(texts, mask, &image, &InferOptions::default(), None);
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
