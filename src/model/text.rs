//! The language encoder: HF `RobertaModel` (key prefix `language_encoder.`), with
//! roberta-base's own config (LayerNorm eps 1e-5) and padding-aware position ids.
use tch::nn;
use tch::{Kind, Tensor};

use super::bert::{BertAttention, BertIntermediate, BertLayerConfig, BertOutput, Pooler};
use super::dropout::dropout;
use super::init;
use crate::config::TextEncoderConfig;

/// `RobertaEmbeddings` (`language_encoder.embeddings.`).
#[derive(Debug)]
pub struct RobertaEmbeddings {
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: nn::Embedding,
    layer_norm: nn::LayerNorm,
    padding_idx: i64,
    dropout: f64,
}

impl RobertaEmbeddings {
    pub fn new(p: nn::Path, c: &TextEncoderConfig) -> Self {
        RobertaEmbeddings {
            word_embeddings: init::embedding(&p / "word_embeddings", c.vocab_size, c.hidden_size),
            position_embeddings: init::embedding(&p / "position_embeddings", c.max_position_embeddings, c.hidden_size),
            token_type_embeddings: init::embedding(&p / "token_type_embeddings", c.type_vocab_size, c.hidden_size),
            layer_norm: init::layer_norm(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            padding_idx: c.pad_token_id,
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `create_position_ids_from_input_ids`: non-pad tokens count up from padding_idx + 1,
    /// pads get padding_idx.
    pub fn position_ids(&self, ids: &Tensor) -> Tensor {
        let mask = ids.ne(self.padding_idx).to_kind(Kind::Int64);
        mask.cumsum(1, Kind::Int64) * &mask + self.padding_idx
    }

    /// ids [B, L] -> [B, L, D]
    pub fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        let pos = self.position_ids(ids);
        let (max_pos, _) = self.position_embeddings.ws.size2().unwrap();
        let top = i64::try_from(pos.max()).unwrap_or(0);
        assert!(top < max_pos, "text: position id {top} needs more than the {max_pos} position embeddings (text too long)");
        let x = ids.apply(&self.word_embeddings) + ids.zeros_like().apply(&self.token_type_embeddings) + pos.apply(&self.position_embeddings);
        dropout(&x.apply(&self.layer_norm), self.dropout, train)
    }
}

/// `RobertaLayer` (`language_encoder.encoder.layer.{i}.`).
#[derive(Debug)]
pub struct RobertaLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl RobertaLayer {
    pub fn new(p: nn::Path, c: &BertLayerConfig) -> Self {
        RobertaLayer {
            attention: BertAttention::new(&p / "attention", c),
            intermediate: BertIntermediate::new(&p / "intermediate", c),
            output: BertOutput::new(&p / "output", c, c.intermediate_size),
        }
    }

    /// x [B, L, D], mask additive [B, 1, 1, L] -> [B, L, D]
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (a, _) = self.attention.forward(x, None, Some(mask), false, train);
        self.output.forward(&a.apply(&self.intermediate), &a, train)
    }
}

/// `RobertaModel` (`language_encoder.`): embeddings, `encoder.layer.{i}`, and the unused pooler.
#[derive(Debug)]
pub struct RobertaModel {
    pub embeddings: RobertaEmbeddings,
    pub layers: Vec<RobertaLayer>,
    pub pooler: Pooler,
    pub config: TextEncoderConfig,
}

impl RobertaModel {
    pub fn new(p: nn::Path, c: &TextEncoderConfig) -> Self {
        let lc = BertLayerConfig {
            hidden_size: c.hidden_size,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            layer_norm_eps: c.layer_norm_eps,
            hidden_dropout_prob: c.hidden_dropout_prob,
            attention_probs_dropout_prob: c.attention_probs_dropout_prob,
        };
        let lp = &p / "encoder" / "layer";
        RobertaModel {
            embeddings: RobertaEmbeddings::new(&p / "embeddings", c),
            layers: (0..c.num_hidden_layers).map(|i| RobertaLayer::new(&lp / i, &lc)).collect(),
            pooler: Pooler::new(&p / "pooler", c.hidden_size),
            config: *c,
        }
    }

    /// Embeddings then every layer, as upstream's `infer` runs the text encoder (the pooler is
    /// not used). ids [B, L], `mask` additive [B, 1, 1, L] -> [B, L, D].
    pub fn forward_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let mut t = self.embeddings.forward_t(ids, train);
        for layer in &self.layers {
            t = layer.forward_t(&t, mask, train);
        }
        t
    }
}
