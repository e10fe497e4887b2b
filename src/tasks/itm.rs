//! Image–text matching: how likely a text describes an image, from the `itm_head`.
//!
//! Upstream trains the head with `F.cross_entropy(itm_logits, itm_labels)` over two classes,
//! label 1 for a true pair (objectives.py `compute_itm`), so the match probability is the
//! softmax's class 1.
use tch::nn::Module;
use tch::{Kind, Tensor};

use super::M3ae;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions};

/// The ITM verdict on one (image, text) pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MatchScore {
    /// softmax(itm logits)[1]: the probability that the text matches the image.
    pub probability: f64,
    /// The head's two logits: (no match, match).
    pub logits: [f64; 2],
}

/// Scores `text` against `image` ([3, S, S], e.g. from [`M3ae::image_from_file`]).
pub fn itm(m: &M3ae, image: &Tensor, text: &str) -> Result<MatchScore> {
    let head = m.model.itm_head.as_ref().ok_or_else(|| {
        Error::Config(format!("{}: the model has no itm_head (pre-trained without ITM, or fine-tuned for a task that drops it): it cannot score a match", m.source.display()))
    })?;
    let image = m.image_batch(image)?;
    if image.size()[0] != 1 {
        return Err(Error::input("image", "itm scores one image at a time"));
    }
    let (ids, masks) = m.encode_texts(&[text])?;
    let logits = tch::no_grad(|| -> Result<Tensor> {
        let input = InferInput { image: &image, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
        let out = m.model.infer(&input, &InferOptions { cls_only: true, ..Default::default() })?;
        Ok(head.forward(&out.multi_modal_cls_feats).to_kind(Kind::Double).to_device(tch::Device::Cpu).get(0))
    })?;
    let p = Vec::<f64>::try_from(logits.softmax(0, Kind::Double))?;
    let l = Vec::<f64>::try_from(&logits)?;
    Ok(MatchScore { probability: p[1], logits: [l[0], l[1]] })
}
