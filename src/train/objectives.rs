//! The objectives of upstream `modules/objectives.py`: each `compute_*` runs its own
//! `infer` pass and its head, and returns the loss with what it was computed from.
use tch::nn::Module;
use tch::{Kind, Reduction, Tensor};

use crate::error::{Error, Result};
use crate::model::heads::MimDecoderOutput;
use crate::model::m3ae::MimMasking;
use crate::model::{InferInput, InferOptions, InferOutput, M3aeTransformerSs};

fn head<'a, T>(h: &'a Option<T>, name: &str) -> Result<&'a T> {
    h.as_ref().ok_or_else(|| Error::Config(format!("`{name}` is not built: its weight in loss_names is 0")))
}

/// MLM: cross entropy over the vocabulary, labels -100 where not predicted.
pub fn mlm_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let v = logits.size()[logits.dim() - 1];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(&labels.view([-1]), None, Reduction::Mean, -100, 0.0)
}

/// MIM target: `patchify(image)`, each patch normalized by its mean and unbiased variance
/// when `norm_pix_loss`.
pub fn mim_target(patches: &Tensor, norm_pix_loss: bool) -> Tensor {
    if !norm_pix_loss {
        return patches.shallow_clone();
    }
    let mean = patches.mean_dim(-1, true, Kind::Float);
    let var = patches.var_dim(-1, true, true);
    // (target - mean) / (var + 1.e-6) ** .5
    (patches - mean) / (var + 1e-6).sqrt()
}

/// MIM: per-patch MSE (mean over the last dim), averaged over removed patches only.
pub fn mim_loss(logits: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let per_patch = (logits - target).square().mean_dim(-1, false, Kind::Float); // [N, L]
    (per_patch * mask).sum(Kind::Float) / mask.sum(Kind::Float)
}

/// ITM, CLS and IRTR: plain cross entropy.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// VQA: BCE-with-logits (mean) × number of answer labels.
pub fn vqa_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let n = targets.size()[1] as f64;
    logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::Mean) * n
}

#[derive(Debug)]
pub struct MlmOutput {
    pub loss: Tensor,
    /// [N, vocab]: the logits at the N positions that have a label (not -100), in the
    /// order of `labels.view(-1)`; [`crate::model::heads::MlmHead`]'s `forward` gives every
    /// position's (the whole-sequence logits parity and figures read).
    pub logits: Tensor,
    /// [N]: their labels.
    pub labels: Tensor,
    /// [B, L, H]: the text stream the head read.
    pub text_feats: Tensor,
    /// The whole `infer` pass, run only when `keep_intermediates` or `output_attentions`
    /// asks for what it holds.
    pub infer: Option<InferOutput>,
}

/// `compute_mlm`: infer(mask_text=True) on `input.text_ids_mlm`, predict `labels`. The pass
/// stops where the head reads ([`M3aeTransformerSs::infer_mlm`]) unless intermediates or
/// attentions are asked for.
pub fn compute_mlm(model: &M3aeTransformerSs, input: &InferInput, labels: &Tensor, opts: &InferOptions) -> Result<MlmOutput> {
    let mlm_opts = InferOptions { mask_text: true, mask_image: false, ..*opts };
    if opts.keep_intermediates || opts.output_attentions {
        let infer = model.infer(input, &mlm_opts)?;
        let feats = infer.multi_modal_text_feats.shallow_clone();
        Ok(MlmOutput { infer: Some(infer), ..mlm_from(model, feats, labels)? })
    } else {
        mlm_from(model, model.infer_mlm(input, None, &mlm_opts)?, labels)
    }
}

/// The MLM head and loss on a `mask_text` pass's text stream `feats` [B, L, H], at the
/// labelled positions only: upstream's head projects every position to the vocabulary
/// (H × vocab each) and its cross entropy then ignores those labelled -100 (about 85%). The
/// loss and every gradient are the same, and so is the accuracy over `labels`.
pub fn mlm_from(model: &M3aeTransformerSs, feats: Tensor, labels: &Tensor) -> Result<MlmOutput> {
    let h = head(&model.mlm_head, "mlm_head")?;
    let size = feats.size();
    if size.len() != 3 || labels.size() != size[..2] || labels.kind() != Kind::Int64 {
        return Err(Error::input("text_labels_mlm", format!("expected int64 of the text's shape {:?}, got {:?} {:?}", &size[..2.min(size.len())], labels.size(), labels.kind())));
    }
    // the rows the cross entropy reads
    let labels = labels.view([-1]);
    let rows = labels.ne(-100).nonzero().squeeze_dim(1); // [N]
    let labels = labels.index_select(0, &rows);
    let vocab = model.config.vocab_size;
    if labels.numel() > 0 {
        let (lo, hi) = (i64::try_from(labels.min())?, i64::try_from(labels.max())?);
        if lo < 0 || hi >= vocab {
            return Err(Error::input("text_labels_mlm", format!("labels span {lo}..={hi}: neither -100 nor inside the vocabulary of {vocab}")));
        }
    }
    let logits = h.forward(&feats.reshape([-1, size[2]]).index_select(0, &rows)); // [N, vocab]
    Ok(MlmOutput { loss: mlm_loss(&logits, &labels), logits, labels, text_feats: feats, infer: None })
}

#[derive(Debug)]
pub struct MimOutput {
    pub loss: Tensor,
    /// [B, L, p²·3] after norm_pix_loss when on.
    pub target: Tensor,
    pub decoder: MimDecoderOutput,
    pub masking: MimMasking,
    /// The whole `infer` pass (its `mim` taken into `masking`), run only when
    /// `keep_intermediates` or `output_attentions` asks for what it holds.
    pub infer: Option<InferOutput>,
}

/// `compute_mim`: infer(mask_image=True), decode the stream `mim_layer` selects, regress
/// the (normalized) pixels of the removed patches. The pass stops where the decoder reads
/// ([`M3aeTransformerSs::infer_mim`]) unless intermediates or attentions are asked for.
pub fn compute_mim(model: &M3aeTransformerSs, input: &InferInput, opts: &InferOptions) -> Result<MimOutput> {
    let mim_opts = InferOptions { mask_text: false, mask_image: true, ..*opts };
    let (masking, infer) = if opts.keep_intermediates || opts.output_attentions {
        let mut infer = model.infer(input, &mim_opts)?;
        (infer.mim.take().expect("a mask_image pass returns its masking"), Some(infer))
    } else {
        (model.infer_mim(input, &mim_opts)?, None)
    };
    let decoder = head(&model.mim_head, "mim_head")?.forward(&masking.image_feats_for_decoder, &masking.ids_restore, opts.keep_intermediates);
    let target = mim_target(&model.patchify(input.image), model.config.norm_pix_loss);
    let loss = mim_loss(&decoder.logits, &target, &masking.masks);
    Ok(MimOutput { loss, target, decoder, masking, infer })
}

#[derive(Debug)]
pub struct HeadOutput {
    pub loss: Tensor,
    pub logits: Tensor,
    pub infer: InferOutput,
}

/// `compute_itm`: `input.image` is already the mixed batch (true image where the label is 1,
/// a false one where 0).
pub fn compute_itm(model: &M3aeTransformerSs, input: &InferInput, labels: &Tensor, opts: &InferOptions) -> Result<HeadOutput> {
    let infer = model.infer(input, &InferOptions { mask_text: false, mask_image: false, cls_only: true, ..*opts })?;
    itm_from(model, infer, labels)
}

/// The ITM head and loss on a plain pass over the mixed pairs.
pub fn itm_from(model: &M3aeTransformerSs, infer: InferOutput, labels: &Tensor) -> Result<HeadOutput> {
    let logits = head(&model.itm_head, "itm_head")?.forward(&infer.multi_modal_cls_feats);
    Ok(HeadOutput { loss: cross_entropy(&logits, labels), logits, infer })
}

/// `compute_vqa`: `targets` [B, vqa_label_size] holds each answer label's score.
pub fn compute_vqa(model: &M3aeTransformerSs, input: &InferInput, targets: &Tensor, opts: &InferOptions) -> Result<HeadOutput> {
    let infer = model.infer(input, &InferOptions { mask_text: false, mask_image: false, cls_only: true, ..*opts })?;
    let logits = head(&model.vqa_head, "vqa_head")?.forward(&infer.multi_modal_cls_feats);
    Ok(HeadOutput { loss: vqa_loss(&logits, targets), logits, infer })
}

/// `compute_cls`: MELINDA classification.
pub fn compute_cls(model: &M3aeTransformerSs, input: &InferInput, labels: &Tensor, opts: &InferOptions) -> Result<HeadOutput> {
    let infer = model.infer(input, &InferOptions { mask_text: false, mask_image: false, cls_only: true, ..*opts })?;
    let logits = head(&model.cls_head, "cls_head")?.forward(&infer.multi_modal_cls_feats);
    Ok(HeadOutput { loss: cross_entropy(&logits, labels), logits, infer })
}

#[derive(Debug)]
pub struct IrtrOutput {
    pub loss: Tensor,
    /// [B, 1 + F]: the true caption first.
    pub scores: Tensor,
}

/// `compute_irtr`: score each image against its true caption and F false ones
/// (`text_ids`, `text_masks` [B, 1 + F, L]); cross entropy with target 0.
pub fn compute_irtr(model: &M3aeTransformerSs, image: &Tensor, text_ids: &Tensor, text_masks: &Tensor, opts: &InferOptions) -> Result<IrtrOutput> {
    let (b, f1, l) = text_ids.size3().map_err(|_| Error::input("irtr_text_ids", format!("must be [B, 1 + F, L], got {:?}", text_ids.size())))?;
    let (_, c, h, w) = image.size4().map_err(|_| Error::input("image", format!("must be [B, 3, H, W], got {:?}", image.size())))?;
    // images: "bs fs c h w -> (bs fs) c h w"; texts: "bs fs tl -> (bs fs) tl"
    let images = image.unsqueeze(1).expand([b, f1, c, h, w], false).reshape([b * f1, c, h, w]);
    let ids = text_ids.reshape([b * f1, l]);
    let masks = text_masks.reshape([b * f1, l]);
    let input = InferInput { image: &images, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
    let infer = model.infer(&input, &InferOptions { mask_text: false, mask_image: false, cls_only: true, ..*opts })?;
    let scores = head(&model.irtr_head, "irtr_head")?.forward(&infer.multi_modal_cls_feats).select(1, 0).view([b, f1]);
    let answer = Tensor::zeros([b], (Kind::Int64, scores.device()));
    Ok(IrtrOutput { loss: cross_entropy(&scores, &answer), scores })
}
