//! Constructors with upstream's `init_weights`: Linear/Embedding weights ~ N(0, 0.02),
//! biases zero, LayerNorm weight one and bias zero.
use tch::nn::{self, Init};

pub const STD: f64 = 0.02;

pub fn linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: Init::Randn { mean: 0.0, stdev: STD }, bs_init: Some(Init::Const(0.0)), bias: true };
    nn::linear(p, d_in, d_out, cfg)
}

pub fn linear_no_bias(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: Init::Randn { mean: 0.0, stdev: STD }, bs_init: None, bias: false };
    nn::linear(p, d_in, d_out, cfg)
}

pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

pub fn embedding(p: nn::Path, num: i64, dim: i64) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig { ws_init: Init::Randn { mean: 0.0, stdev: STD }, ..Default::default() };
    nn::embedding(p, num, dim, cfg)
}
