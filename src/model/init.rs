//! Constructors with upstream's `init_weights`: Linear/Embedding weights ~ N(0, 0.02),
//! biases zero, LayerNorm weight one and bias zero.
use tch::nn::{self, Init};

use super::linear::Linear;

pub const STD: f64 = 0.02;

pub fn linear(p: nn::Path, d_in: i64, d_out: i64) -> Linear {
    Linear::new(&p, d_in, d_out, Init::Randn { mean: 0.0, stdev: STD }, Some(Init::Const(0.0)))
}

pub fn linear_no_bias(p: nn::Path, d_in: i64, d_out: i64) -> Linear {
    Linear::new(&p, d_in, d_out, Init::Randn { mean: 0.0, stdev: STD }, None)
}

pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

pub fn embedding(p: nn::Path, num: i64, dim: i64) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig { ws_init: Init::Randn { mean: 0.0, stdev: STD }, ..Default::default() };
    nn::embedding(p, num, dim, cfg)
}
