//! The vision encoder: OpenAI CLIP's visual transformer as upstream's
//! `vision_encoders/clip_model.py` builds it (key prefix `vision_encoder.`).
//!
//! Upstream runs the blocks in [L, N, D] through `nn.MultiheadAttention`; we stay in
//! [N, L, D] and call the same fused attention, which is the same arithmetic without the
//! two permutes per forward.
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::init;
use super::linear::Linear;
use crate::config::VisionEncoderConfig;

/// nn.LayerNorm's default eps, which CLIP's LayerNorm keeps.
const CLIP_LN_EPS: f64 = 1e-5;

/// `clip_model.LayerNorm`: nn.LayerNorm (eps 1e-5) computed in float32, cast back.
#[derive(Debug)]
pub struct ClipLayerNorm(nn::LayerNorm);

impl ClipLayerNorm {
    pub fn new(p: nn::Path, dim: i64) -> Self {
        ClipLayerNorm(init::layer_norm(p, dim, CLIP_LN_EPS))
    }
}

impl Module for ClipLayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        if kind == Kind::Float {
            return x.apply(&self.0);
        }
        // ret = super().forward(x.type(torch.float32)); return ret.type(orig_type)
        // (OpenAI's convert_weights keeps LayerNorm parameters in fp32; cast them too, so a
        // model cast whole to bf16/f16 computes the same)
        let ln = &self.0;
        let f32 = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_kind(Kind::Float));
        let dim = x.size().last().copied().unwrap_or(0);
        x.to_kind(Kind::Float).layer_norm([dim], f32(&ln.ws).as_ref(), f32(&ln.bs).as_ref(), CLIP_LN_EPS, true).to_kind(kind)
    }
}

/// `nn.MultiheadAttention` self-attention with packed q,k,v (`attn.in_proj_weight` [3D, D]).
#[derive(Debug)]
pub struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Linear,
    num_heads: i64,
}

impl MultiheadAttention {
    pub fn new(p: nn::Path, d: i64, num_heads: i64) -> Self {
        // torch: xavier_uniform_ for in_proj_weight, zeros for the biases.
        let bound = (6.0 / (d + 3 * d) as f64).sqrt();
        MultiheadAttention {
            in_proj_weight: init::var(&p, "in_proj_weight", &[3 * d, d], Init::Uniform { lo: -bound, up: bound }),
            in_proj_bias: init::var(&p, "in_proj_bias", &[3 * d], Init::Const(0.0)),
            out_proj: init::linear_torch_zero_bias(&p / "out_proj", d, d),
            num_heads,
        }
    }

    /// x: [N, L, D] -> [N, L, D]
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (n, l, d) = x.size3().expect("MultiheadAttention: x must be [N, L, D]");
        let h = self.num_heads;
        // [N, L, 3D] -> 3 × [N, H, L, D/H]
        let qkv = super::linear::linear(x, &self.in_proj_weight, Some(&self.in_proj_bias));
        let qkv = qkv.view([n, l, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let ctx = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<&Tensor>, 0.0, false, None, false);
        // [N, H, L, D/H] -> [N, L, D]
        ctx.transpose(1, 2).reshape([n, l, d]).apply(&self.out_proj)
    }
}

/// The `mlp` Sequential of a CLIP block: c_fc -> QuickGELU -> c_proj.
#[derive(Debug)]
pub struct ClipMlp {
    c_fc: Linear,
    c_proj: Linear,
}

impl Module for ClipMlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.apply(&self.c_fc);
        // QuickGELU: x * torch.sigmoid(1.702 * x)
        let h = &h * (&h * 1.702).sigmoid();
        h.apply(&self.c_proj)
    }
}

/// `clip_model.ResidualAttentionBlock` (`…resblocks.{i}.`): pre-norm attention and QuickGELU MLP.
#[derive(Debug)]
pub struct ResidualAttentionBlock {
    attn: MultiheadAttention,
    ln_1: ClipLayerNorm,
    mlp: ClipMlp,
    ln_2: ClipLayerNorm,
}

impl ResidualAttentionBlock {
    pub fn new(p: nn::Path, d: i64, heads: i64) -> Self {
        let m = &p / "mlp";
        ResidualAttentionBlock {
            attn: MultiheadAttention::new(&p / "attn", d, heads),
            ln_1: ClipLayerNorm::new(&p / "ln_1", d),
            mlp: ClipMlp { c_fc: init::linear(&m / "c_fc", d, 4 * d), c_proj: init::linear(&m / "c_proj", 4 * d, d) },
            ln_2: ClipLayerNorm::new(&p / "ln_2", d),
        }
    }
}

impl Module for ResidualAttentionBlock {
    /// x: [N, L, D] -> [N, L, D]
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attn.forward(&x.apply(&self.ln_1));
        &x + x.apply(&self.ln_2).apply(&self.mlp)
    }
}

/// `clip_model.Transformer` (`….resblocks`): note it builds `layers - 1` blocks.
#[derive(Debug)]
pub struct Transformer {
    pub resblocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub fn new(p: nn::Path, width: i64, layers: usize, heads: i64) -> Self {
        let rp = &p / "resblocks";
        // nn.Sequential(*[ResidualAttentionBlock(...) for _ in range(layers - 1)])
        let resblocks = (0..layers.saturating_sub(1)).map(|i| ResidualAttentionBlock::new(&rp / i, width, heads)).collect();
        Transformer { resblocks }
    }

    /// Runs every block; `trace` receives each block's output when given.
    pub fn forward_traced(&self, x: &Tensor, mut trace: Option<&mut Vec<Tensor>>) -> Tensor {
        let mut x = x.shallow_clone();
        for block in &self.resblocks {
            x = x.apply(block);
            if let Some(t) = trace.as_deref_mut() {
                t.push(x.shallow_clone());
            }
        }
        x
    }
}

/// What the visual transformer computed, stage by stage ([N, L, D] each).
#[derive(Debug, Default)]
pub struct VisualTrace {
    pub ln_pre: Option<Tensor>,
    pub resblocks: Vec<Tensor>,
    pub ln_post: Option<Tensor>,
}

/// `clip_model.VisualTransformer` (`vision_encoder.visual.`). It has no `proj`.
#[derive(Debug)]
pub struct VisualTransformer {
    conv1: nn::Conv2D,
    pub class_embedding: Tensor,
    pub positional_embedding: Tensor,
    ln_pre: ClipLayerNorm,
    pub transformer: Transformer,
    ln_post: ClipLayerNorm,
    pub patch_size: i64,
    pub width: i64,
}

impl VisualTransformer {
    pub fn new(p: nn::Path, cfg: &VisionEncoderConfig, image_size: i64) -> Self {
        let w = cfg.width;
        let scale = (w as f64).powf(-0.5);
        let grid = image_size / cfg.patch_size;
        VisualTransformer {
            conv1: init::patch_conv(&p / "conv1", 3, w, cfg.patch_size),
            class_embedding: init::var(&p, "class_embedding", &[w], Init::Randn { mean: 0.0, stdev: scale }),
            positional_embedding: init::var(&p, "positional_embedding", &[grid * grid + 1, w], Init::Randn { mean: 0.0, stdev: scale }),
            ln_pre: ClipLayerNorm::new(&p / "ln_pre", w),
            transformer: Transformer::new(&p / "transformer", w, cfg.layers, cfg.heads()),
            ln_post: ClipLayerNorm::new(&p / "ln_post", w),
            patch_size: cfg.patch_size,
            width: w,
        }
    }

    /// `forward_patch_embed`: image [N, 3, H, W] -> [N, 1 + grid², D], class token first,
    /// no position embedding yet.
    pub fn forward_patch_embed(&self, image: &Tensor) -> Tensor {
        let (n, c, h, w) = image.size4().expect("visual: image must be [N, 3, H, W]");
        assert!(
            c == 3 && h % self.patch_size == 0 && w % self.patch_size == 0,
            "visual: image [{n}, {c}, {h}, {w}] is not 3-channel with sides divisible by patch {}",
            self.patch_size
        );
        let x = image.to_kind(self.conv1.ws.kind()).apply(&self.conv1); // [N, D, g, g]
        let x = x.flatten(2, 3).transpose(1, 2); // [N, g², D]
        let cls = self.class_embedding.to_kind(x.kind()).view([1, 1, -1]).expand([n, 1, self.width], false);
        Tensor::cat(&[cls, x], 1) // [N, 1 + g², D]
    }

    /// `forward_trans`: ln_pre -> blocks -> ln_post on [N, L, D].
    pub fn forward_trans(&self, x: &Tensor, trace: Option<&mut VisualTrace>) -> Tensor {
        let x = x.apply(&self.ln_pre);
        match trace {
            Some(t) => {
                t.ln_pre = Some(x.shallow_clone());
                let x = self.transformer.forward_traced(&x, Some(&mut t.resblocks)).apply(&self.ln_post);
                t.ln_post = Some(x.shallow_clone());
                x
            }
            None => self.transformer.forward_traced(&x, None).apply(&self.ln_post),
        }
    }

    /// The unmasked path: patch embed -> + positional embedding -> forward_trans.
    pub fn forward(&self, image: &Tensor, trace: Option<&mut VisualTrace>) -> Tensor {
        let x = self.forward_patch_embed(image);
        let l = x.size()[1];
        assert_eq!(
            l,
            self.positional_embedding.size()[0],
            "visual: {} tokens but positional_embedding has {} rows (image size differs from the model's)",
            l,
            self.positional_embedding.size()[0]
        );
        let pos = self.positional_embedding.to_kind(x.kind());
        let x = x + pos;
        self.forward_trans(&x, trace)
    }
}

/// `clip_model.CLIP` (`vision_encoder.`): the visual tower, plus the unused text-tower
/// parameters every upstream checkpoint carries.
#[derive(Debug)]
pub struct Clip {
    pub visual: VisualTransformer,
    pub token_embedding: nn::Embedding,
    pub positional_embedding: Tensor,
    pub ln_final: ClipLayerNorm,
}

impl Clip {
    pub fn new(p: nn::Path, cfg: &VisionEncoderConfig, image_size: i64) -> Self {
        Clip {
            visual: VisualTransformer::new(&p / "visual", cfg, image_size),
            token_embedding: init::embedding(&p / "token_embedding", cfg.vocab_size, cfg.transformer_width),
            positional_embedding: init::var(&p, "positional_embedding", &[cfg.context_length, cfg.transformer_width], Init::Randn { mean: 0.0, stdev: 0.01 }),
            ln_final: ClipLayerNorm::new(&p / "ln_final", cfg.transformer_width),
        }
    }
}
