//! The prediction heads (upstream `prediction_heads.py` and `M3AETransformerSS.__init__`).
use tch::nn::{self, Init, Module};
use tch::Tensor;

use super::init;
use super::linear::Linear;
use super::masking::sincos_2d;
use super::vision::{ClipLayerNorm, Transformer};
use crate::config::M3aeConfig;

/// `BertPredictionHeadTransform` (`mlm_head.transform.`): dense, GELU, LayerNorm (eps 1e-12).
#[derive(Debug)]
pub struct BertPredictionHeadTransform {
    dense: Linear,
    layer_norm: nn::LayerNorm,
}

impl Module for BertPredictionHeadTransform {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.dense).gelu("none").apply(&self.layer_norm)
    }
}

/// `MLMHead` (`mlm_head.`): transform, untied `decoder` (no bias), separate `bias`.
#[derive(Debug)]
pub struct MlmHead {
    transform: BertPredictionHeadTransform,
    decoder: Linear,
    bias: Tensor,
}

impl MlmHead {
    pub fn new(p: nn::Path, hidden: i64, vocab: i64, layer_norm_eps: f64) -> Self {
        let t = &p / "transform";
        MlmHead {
            transform: BertPredictionHeadTransform {
                dense: init::linear(&t / "dense", hidden, hidden),
                layer_norm: init::layer_norm(&t / "LayerNorm", hidden, layer_norm_eps),
            },
            decoder: init::linear_no_bias(&p / "decoder", hidden, vocab),
            bias: init::var(&p, "bias", &[vocab], Init::Const(0.0)),
        }
    }
}

impl Module for MlmHead {
    /// [B, L, H] -> [B, L, vocab]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.transform).apply(&self.decoder) + &self.bias
    }
}

/// `MIMHead` (`mim_head.`): an MAE decoder over the fused image stream.
#[derive(Debug)]
pub struct MimHead {
    decoder_embed: Linear,
    mask_token: Tensor,
    /// Fixed 2-D sin-cos table [1, 1 + grid², Dd] (requires_grad False).
    pub decoder_pos_embed: Tensor,
    decoder: Transformer,
    decoder_norm: ClipLayerNorm,
    decoder_pred: Linear,
}

/// What the MIM decoder computed, stage by stage.
#[derive(Debug)]
pub struct MimDecoderOutput {
    /// [N, L, p²·3]: the class token dropped.
    pub logits: Tensor,
    /// [N, 1 + len_keep, Dd]
    pub decoder_embed: Tensor,
    /// each [N, 1 + L, Dd]
    pub blocks: Vec<Tensor>,
}

impl MimHead {
    pub fn new(p: nn::Path, c: &M3aeConfig) -> Self {
        let dd = c.mim_decoder_hidden_size;
        let grid = c.grid();
        let pos = init::buffer(&p, "decoder_pos_embed", &[1, grid * grid + 1, dd]);
        tch::no_grad(|| pos.view([grid * grid + 1, dd]).shallow_clone().copy_(&sincos_2d(dd, grid, p.device())));
        MimHead {
            decoder_embed: init::linear(&p / "decoder_embed", c.hidden_size, dd),
            mask_token: init::var(&p, "mask_token", &[1, 1, dd], Init::Randn { mean: 0.0, stdev: init::STD }),
            decoder_pos_embed: pos,
            // Transformer(Dd, mim_decoder_num_layers + 1, heads): exactly num_layers blocks.
            decoder: Transformer::new(&p / "decoder", dd, c.mim_decoder_num_layers + 1, c.mim_decoder_num_heads),
            decoder_norm: ClipLayerNorm::new(&p / "decoder_norm", dd),
            decoder_pred: init::linear(&p / "decoder_pred", dd, c.patch_size * c.patch_size * 3),
        }
    }

    /// x [N, 1 + len_keep, H] (class token first), ids_restore [N, L].
    pub fn forward(&self, x: &Tensor, ids_restore: &Tensor, keep_blocks: bool) -> MimDecoderOutput {
        let x = x.apply(&self.decoder_embed); // [N, 1 + K, Dd]
        let (n, k1, dd) = x.size3().unwrap();
        let l = ids_restore.size()[1];
        assert!(k1 <= l + 1, "MIM head: {k1} tokens for {l} patches");
        // append mask tokens, then unshuffle the patch tokens; the class token stays first
        let mask_tokens = self.mask_token.to_kind(x.kind()).expand([n, l + 1 - k1, dd], false);
        let patches = Tensor::cat(&[x.narrow(1, 1, k1 - 1), mask_tokens], 1);
        let patches = patches.gather(1, &ids_restore.unsqueeze(-1).expand([n, l, dd], false), false);
        let h = Tensor::cat(&[x.narrow(1, 0, 1), patches], 1) + self.decoder_pos_embed.to_kind(x.kind());
        let mut blocks = Vec::new();
        let h = self.decoder.forward_traced(&h, keep_blocks.then_some(&mut blocks));
        let logits = h.apply(&self.decoder_norm).apply(&self.decoder_pred).narrow(1, 1, l);
        MimDecoderOutput { logits, decoder_embed: x, blocks }
    }
}

/// `ITMHead` (`itm_head.fc`): Linear(2H, 2).
#[derive(Debug)]
pub struct ItmHead {
    pub fc: Linear,
}

impl ItmHead {
    pub fn new(p: nn::Path, d: i64) -> Self {
        ItmHead { fc: init::linear(&p / "fc", d, 2) }
    }
}

impl Module for ItmHead {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc)
    }
}

/// The `vqa_head` / `cls_head` `nn.Sequential`: Linear(2H, 2H) `0`, LayerNorm `1`,
/// GELU `2`, Linear(2H, n) `3`.
#[derive(Debug)]
pub struct ClassifierHead {
    l0: Linear,
    ln1: nn::LayerNorm,
    l3: Linear,
}

impl ClassifierHead {
    pub fn new(p: nn::Path, d: i64, n: i64) -> Self {
        ClassifierHead { l0: init::linear(&p / "0", d, d), ln1: init::layer_norm(&p / "1", d, 1e-5), l3: init::linear(&p / "3", d, n) }
    }
}

impl Module for ClassifierHead {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.l0).apply(&self.ln1).gelu("none").apply(&self.l3)
    }
}

/// The fine-tuning heads the config has (`vqa_head`, `cls_head`, `irtr_head`), freshly
/// initialised: upstream builds them after loading a pre-training checkpoint, so they start
/// from their init. (`irtr_head` is then copied from `itm_head.fc` row 1 by the caller, which
/// holds the checkpoint's `itm_head`.)
pub fn fresh_downstream_heads(c: &M3aeConfig) -> std::collections::BTreeMap<String, Tensor> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let (p, d) = (vs.root(), 2 * c.hidden_size);
    let l = c.loss_names;
    if l.vqa > 0.0 {
        ClassifierHead::new(&p / "vqa_head", d, c.vqa_label_size);
    }
    if l.cls > 0.0 {
        ClassifierHead::new(&p / "cls_head", d, c.cls_label_size());
    }
    if l.irtr > 0.0 {
        init::linear(&p / "irtr_head", d, 1);
    }
    vs.variables().into_iter().map(|(k, v)| (k, v.detach())).collect()
}
