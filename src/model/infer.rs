//! What `infer` takes and returns: its inputs, upstream's switches, its named outputs.
use std::cell::Cell;

use tch::Tensor;

use super::vision::VisualTrace;

/// Inputs of one `infer` call.
#[derive(Debug, Clone, Copy)]
pub struct InferInput<'a> {
    /// [B, 3, H, W], already normalized.
    pub image: &'a Tensor,
    /// [B, L] RoBERTa ids and 0/1 attention mask.
    pub text_ids: &'a Tensor,
    pub text_masks: &'a Tensor,
    /// [B, L] masked ids, read when `mask_text`.
    pub text_ids_mlm: Option<&'a Tensor>,
    /// [B, grid²] uniform noise that `random_masking` sorts; drawn with `torch.rand` when absent.
    pub mim_noise: Option<&'a Tensor>,
}

/// Upstream's `infer` switches, plus the dropout flag and whether to keep every stage.
#[derive(Debug, Clone, Copy)]
pub struct InferOptions {
    pub mask_text: bool,
    pub mask_image: bool,
    pub output_attentions: bool,
    pub image_token_type_idx: i64,
    /// Keep each layer's output in `InferOutput::trace` (for parity and inspection).
    pub keep_intermediates: bool,
    /// Dropout on (training) or off (eval).
    pub train: bool,
    /// Run the last fusion layer at the [CLS] positions only, the rows the poolers (and so
    /// every fine-tuning head and ITM) read: its keys and values still come from every token.
    /// `multi_modal_{text,image}_feats` are then [B, 1, H]. Not upstream's (it computes every
    /// position and drops all but [CLS]); the same values for `cls_feats`. Ignored where
    /// attentions or intermediates are asked for, which need every position.
    pub cls_only: bool,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions { mask_text: false, mask_image: false, output_attentions: false, image_token_type_idx: 1, keep_intermediates: false, train: false, cls_only: false }
    }
}

/// The MIM side outputs of a `mask_image` pass.
#[derive(Debug)]
pub struct MimMasking {
    /// [B, grid²], 1 = removed patch.
    pub masks: Tensor,
    /// [B, grid²]
    pub ids_restore: Tensor,
    /// [B, 1 + len_keep, H]: the image stream entering fusion layer `mim_layer` (or the last output).
    pub image_feats_for_decoder: Tensor,
}

/// How many fusion layers a thread has run, per stream (each `BertCrossLayer` forward counts
/// itself): what the tests of the pre-training passes count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FusionLayersRun {
    /// `multi_modal_language_layers` forwards (any rows).
    pub text: u64,
    /// `multi_modal_vision_layers` forwards (any rows).
    pub image: u64,
}

thread_local! {
    static LAYERS_RUN: Cell<FusionLayersRun> = const { Cell::new(FusionLayersRun { text: 0, image: 0 }) };
}

/// The fusion layers this thread has run since it started.
pub fn fusion_layers_run() -> FusionLayersRun {
    LAYERS_RUN.with(Cell::get)
}

/// Counts `text` language-stream and `image` vision-stream layer forwards on this thread.
pub(crate) fn count_fusion_layers(text: u64, image: u64) {
    LAYERS_RUN.with(|c| {
        let n = c.get();
        c.set(FusionLayersRun { text: n.text + text, image: n.image + image });
    });
}

/// One fusion depth's attention probabilities ([B, heads, Lq, Lk]).
#[derive(Debug)]
pub struct FusionAttentions {
    pub text_self: Tensor,
    pub text_cross: Tensor,
    pub image_self: Tensor,
    pub image_cross: Tensor,
}

/// Every stage's output, kept when `keep_intermediates` ([B, L, D] each).
#[derive(Debug, Default)]
pub struct InferTrace {
    pub text_embeddings: Option<Tensor>,
    pub text_layers: Vec<Tensor>,
    pub text_proj: Option<Tensor>,
    pub image_patch_embed: Option<Tensor>,
    pub image: VisualTrace,
    pub image_proj: Option<Tensor>,
    pub fusion_text: Vec<Tensor>,
    pub fusion_image: Vec<Tensor>,
}

/// The named outputs of `infer`.
#[derive(Debug)]
pub struct InferOutput {
    /// [B, L, H]
    pub multi_modal_text_feats: Tensor,
    /// [B, 1 + patches kept, H]
    pub multi_modal_image_feats: Tensor,
    /// [B, 2H]: text pooler ‖ image pooler.
    pub multi_modal_cls_feats: Tensor,
    pub text_cls: Tensor,
    pub image_cls: Tensor,
    pub mim: Option<MimMasking>,
    /// One entry per fusion depth when `output_attentions`.
    pub attentions: Vec<FusionAttentions>,
    pub trace: Option<InferTrace>,
}

/// What the fusion stack returns.
#[derive(Debug)]
pub struct Fused {
    /// [B, L, H]
    pub text_feats: Tensor,
    /// [B, Lv, H]
    pub image_feats: Tensor,
    /// [B, 2H]
    pub cls_feats: Tensor,
    pub text_cls: Tensor,
    pub image_cls: Tensor,
    pub attentions: Vec<FusionAttentions>,
    /// The image stream entering layer `mim_layer` on a masked pass, else the last output.
    pub mim_input: Tensor,
}
