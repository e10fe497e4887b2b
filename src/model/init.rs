//! Parameter constructors with upstream's `init_weights` (Linear/Embedding weights
//! ~ N(0, 0.02), biases zero, LayerNorm weight one and bias zero) or torch's own defaults
//! where upstream keeps them, and a shapes-only mode that creates every parameter
//! uninitialised: a model built inside [`shapes_only`] costs no initialisation and serves
//! only its keys, shapes and dtypes (what `convert` checks a checkpoint against).
use std::cell::Cell;

use tch::nn::{self, Init};
use tch::Tensor;

use super::linear::Linear;

pub const STD: f64 = 0.02;

thread_local! {
    static SHAPES_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every parameter this module creates left uninitialised (`Tensor::empty`:
/// memory is reserved, never written).
pub fn shapes_only<T>(f: impl FnOnce() -> T) -> T {
    let before = SHAPES_ONLY.with(|s| s.replace(true));
    let out = f();
    SHAPES_ONLY.with(|s| s.set(before));
    out
}

fn uninit(p: &nn::Path, name: &str, dims: &[i64], trainable: bool) -> Option<Tensor> {
    SHAPES_ONLY.with(Cell::get).then(|| p.add(name, Tensor::empty(dims, (p.kind(), p.device())), trainable))
}

/// A trainable parameter `p.name` initialised by `init`.
pub fn var(p: &nn::Path, name: &str, dims: &[i64], init: Init) -> Tensor {
    uninit(p, name, dims, true).unwrap_or_else(|| p.var(name, dims, init))
}

/// A buffer (not trainable) `p.name`, zeros.
pub fn buffer(p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    uninit(p, name, dims, false).unwrap_or_else(|| p.zeros_no_train(name, dims))
}

fn linear_init(p: &nn::Path, d_in: i64, d_out: i64, ws: Init, bs: Option<Init>) -> Linear {
    Linear { ws: var(p, "weight", &[d_out, d_in], ws), bs: bs.map(|b| var(p, "bias", &[d_out], b)) }
}

/// `nn.Linear` under upstream's `init_weights`.
pub fn linear(p: nn::Path, d_in: i64, d_out: i64) -> Linear {
    linear_init(&p, d_in, d_out, Init::Randn { mean: 0.0, stdev: STD }, Some(Init::Const(0.0)))
}

pub fn linear_no_bias(p: nn::Path, d_in: i64, d_out: i64) -> Linear {
    linear_init(&p, d_in, d_out, Init::Randn { mean: 0.0, stdev: STD }, None)
}

/// `nn.Linear` with torch's default weight init and a zero bias (`nn.MultiheadAttention`'s
/// `out_proj`).
pub fn linear_torch_zero_bias(p: nn::Path, d_in: i64, d_out: i64) -> Linear {
    linear_init(&p, d_in, d_out, nn::LinearConfig::default().ws_init, Some(Init::Const(0.0)))
}

pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

pub fn embedding(p: nn::Path, num: i64, dim: i64) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig { ws_init: Init::Randn { mean: 0.0, stdev: STD }, ..Default::default() };
    if SHAPES_ONLY.with(Cell::get) {
        // tch keeps the config private: build the module on a scratch store, then give it
        // its real, uninitialised weight
        let scratch = nn::VarStore::new(p.device());
        let mut e = nn::embedding(scratch.root(), 1, 1, cfg);
        e.ws = var(&p, "weight", &[num, dim], cfg.ws_init);
        return e;
    }
    nn::embedding(p, num, dim, cfg)
}

/// `nn.Conv2d(3, w, kernel=stride=patch, bias=False)`, torch's default init.
pub fn patch_conv(p: nn::Path, c_in: i64, c_out: i64, patch: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride: patch, bias: false, ..Default::default() };
    if SHAPES_ONLY.with(Cell::get) {
        let scratch = nn::VarStore::new(p.device());
        let mut c = nn::conv2d(scratch.root(), c_in, 1, patch, cfg);
        c.ws = var(&p, "weight", &[c_out, c_in, patch, patch], cfg.ws_init);
        return c;
    }
    nn::conv2d(p, c_in, c_out, patch, cfg)
}
