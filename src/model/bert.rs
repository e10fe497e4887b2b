//! BERT building blocks shared by the RoBERTa text encoder (HF `modeling_roberta`) and
//! the fusion layers (upstream `language_encoders/bert_model.py`): the same module tree,
//! `attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`,
//! `intermediate.dense`, `output.{dense,LayerNorm}`.
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::init;
use super::dropout::dropout;
use super::linear::Linear;

/// The hyper-parameters a BERT layer reads from its `BertConfig`/`RobertaConfig`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertLayerConfig {
    pub hidden_size: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
}

/// `(1 - mask) * finfo(float32).min`, broadcast as [B, 1, 1, L]: HF's
/// `get_extended_attention_mask` for a [B, L] 0/1 mask.
pub fn extended_attention_mask(mask: &Tensor, kind: Kind) -> Tensor {
    let (b, l) = mask.size2().expect("attention mask must be [B, L]");
    let min = match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    };
    (mask.to_kind(kind).view([b, 1, 1, l]).neg() + 1.0) * min
}

/// `BertSelfAttention` (`….self.`): multi-head scaled dot-product attention.
#[derive(Debug)]
pub struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    num_heads: i64,
    dropout: f64,
}

impl BertSelfAttention {
    pub fn new(p: nn::Path, c: &BertLayerConfig) -> Self {
        let h = c.hidden_size;
        assert!(h % c.num_attention_heads == 0, "hidden size {h} is not a multiple of {} heads", c.num_attention_heads);
        BertSelfAttention {
            query: init::linear(&p / "query", h, h),
            key: init::linear(&p / "key", h, h),
            value: init::linear(&p / "value", h, h),
            num_heads: c.num_attention_heads,
            dropout: c.attention_probs_dropout_prob,
        }
    }

    /// [B, L, D] -> [B, H, L, D/H]
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (b, l, d) = x.size3().expect("attention input must be [B, L, D]");
        x.view([b, l, self.num_heads, d / self.num_heads]).transpose(1, 2)
    }

    /// Queries from `x` [B, Lq, D]; keys and values from `kv` [B, Lk, D] (cross-attention)
    /// or from `x` itself. `mask` is additive, [B, 1, 1, Lk]; None when every key is visible
    /// (upstream then adds zeros). Returns the context [B, Lq, D] and, when `need_probs`, the
    /// attention probabilities [B, H, Lq, Lk].
    pub fn forward(&self, x: &Tensor, kv: Option<&Tensor>, mask: Option<&Tensor>, need_probs: bool, train: bool) -> (Tensor, Option<Tensor>) {
        let kv = kv.unwrap_or(x);
        let q = self.split_heads(&x.apply(&self.query));
        let k = self.split_heads(&kv.apply(&self.key));
        let v = self.split_heads(&kv.apply(&self.value));
        let (b, h, lq, dh) = q.size4().unwrap();
        // with dropout on the CPU, SDPA would take ATen's math path and its serial dropout:
        // the same ops are spelled out here, with the one-pass dropout
        let explicit = need_probs || (train && self.dropout > 0.0 && q.device() == Device::Cpu);
        let (ctx, probs) = if explicit {
            // attention_scores = q @ k^T / sqrt(d); + mask; softmax; dropout; @ v
            let scores = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt();
            let scores = match mask {
                Some(m) => scores + m,
                None => scores,
            };
            let probs = scores.softmax(-1, scores.kind());
            let ctx = dropout(&probs, self.dropout, train).matmul(&v);
            (ctx, need_probs.then_some(probs))
        } else {
            let p = if train { self.dropout } else { 0.0 };
            (Tensor::scaled_dot_product_attention(&q, &k, &v, mask.map(|m| m.to_kind(q.kind())), p, false, None, false), None)
        };
        // [B, H, Lq, D/H] -> [B, Lq, D]
        (ctx.transpose(1, 2).reshape([b, lq, h * dh]), probs)
    }
}

/// `BertSelfOutput` (`….output.`): dense, dropout, residual, LayerNorm.
#[derive(Debug)]
pub struct BertSelfOutput {
    dense: Linear,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl BertSelfOutput {
    pub fn new(p: nn::Path, c: &BertLayerConfig, d_in: i64) -> Self {
        BertSelfOutput {
            dense: init::linear(&p / "dense", d_in, c.hidden_size),
            layer_norm: init::layer_norm(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    pub fn forward(&self, hidden: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        (dropout(&hidden.apply(&self.dense), self.dropout, train) + residual).apply(&self.layer_norm)
    }
}

/// `BertAttention` (`attention.` / `crossattention.`): `self` then `output`.
#[derive(Debug)]
pub struct BertAttention {
    self_: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    pub fn new(p: nn::Path, c: &BertLayerConfig) -> Self {
        BertAttention { self_: BertSelfAttention::new(&p / "self", c), output: BertSelfOutput::new(&p / "output", c, c.hidden_size) }
    }

    pub fn forward(&self, x: &Tensor, kv: Option<&Tensor>, mask: Option<&Tensor>, need_probs: bool, train: bool) -> (Tensor, Option<Tensor>) {
        let (ctx, probs) = self.self_.forward(x, kv, mask, need_probs, train);
        (self.output.forward(&ctx, x, train), probs)
    }
}

/// `BertOutput` (`output.{dense,LayerNorm}`) has `BertSelfOutput`'s structure, reading
/// the intermediate width.
pub type BertOutput = BertSelfOutput;

/// `BertIntermediate` (`intermediate.dense`): dense then GELU (erf).
#[derive(Debug)]
pub struct BertIntermediate {
    dense: Linear,
}

impl BertIntermediate {
    pub fn new(p: nn::Path, c: &BertLayerConfig) -> Self {
        BertIntermediate { dense: init::linear(&p / "dense", c.hidden_size, c.intermediate_size) }
    }
}

impl Module for BertIntermediate {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.dense).gelu("none")
    }
}

/// `Pooler` / `BertPooler` (`….pooler.dense`): tanh(dense(x[:, 0])).
#[derive(Debug)]
pub struct Pooler {
    dense: Linear,
}

impl Pooler {
    pub fn new(p: nn::Path, hidden: i64) -> Self {
        Pooler { dense: init::linear(&p / "dense", hidden, hidden) }
    }
}

impl Module for Pooler {
    /// [B, L, D] -> [B, D]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.select(1, 0).apply(&self.dense).tanh()
    }
}
