//! Visual question answering: the answers the `vqa_head` ranks highest, with probabilities.
//!
//! Upstream trains the head with `F.binary_cross_entropy_with_logits(vqa_logits,
//! vqa_targets)` (objectives.py `compute_vqa`): each answer is an independent yes/no, so an
//! answer's probability is the sigmoid of its logit (they need not sum to 1), not a softmax.
use tch::nn::Module;
use tch::{Kind, Tensor};

use super::M3ae;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions};

/// One ranked answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VqaAnswer {
    /// The answer class (the `vqa_head` output index).
    pub label: i64,
    /// The answer text, when the model carries its vocabulary (`answers.json`).
    pub answer: Option<String>,
    /// sigmoid(logit): the BCE-trained head's probability that this answer is right.
    pub probability: f64,
}

/// The `vqa_head` logits of each (image, question) pair: `images` [B, 3, S, S] (or one
/// [3, S, S]), one question per image → [B, vqa_label_size] float32 on the CPU.
pub fn vqa_logits(m: &M3ae, images: &Tensor, questions: &[&str]) -> Result<Tensor> {
    let head = m.model.vqa_head.as_ref().ok_or_else(|| {
        Error::Config(format!("{}: the model has no vqa_head (it was not fine-tuned for VQA: loss_names.vqa is 0)", m.source.display()))
    })?;
    let image = m.image_batch(images)?;
    if image.size()[0] != questions.len() as i64 {
        return Err(Error::input("questions", format!("{} questions for {} images", questions.len(), image.size()[0])));
    }
    let (ids, masks) = m.encode_texts(questions)?;
    tch::no_grad(|| {
        let input = InferInput { image: &image, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
        let out = m.model.infer(&input, &InferOptions { cls_only: true, ..Default::default() })?;
        Ok(head.forward(&out.multi_modal_cls_feats).to_kind(Kind::Float).to_device(tch::Device::Cpu))
    })
}

/// The `top_k` most probable answers to `question` about `image` ([3, S, S], e.g. from
/// [`M3ae::image_from_file`]), most probable first.
pub fn vqa(m: &M3ae, image: &Tensor, question: &str, top_k: usize) -> Result<Vec<VqaAnswer>> {
    if top_k == 0 {
        return Err(Error::input("top_k", "must be at least 1"));
    }
    let probs = vqa_logits(m, image, &[question])?.sigmoid().get(0);
    let k = (top_k as i64).min(probs.size()[0]);
    let (values, labels) = probs.topk(k, 0, true, true);
    let values = Vec::<f64>::try_from(values.to_kind(Kind::Double))?;
    let labels = Vec::<i64>::try_from(labels)?;
    Ok(labels
        .into_iter()
        .zip(values)
        .map(|(label, probability)| VqaAnswer { label, answer: m.answers.as_ref().and_then(|a| a.get(label)).map(str::to_string), probability })
        .collect())
}
