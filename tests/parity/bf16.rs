//! The model goldens under CPU bf16 autocast (`precision: "bf16"`), at bounds derived from
//! bf16's unit roundoff and the model's depth, beside the fp32 bounds of `cpu_bound`.
//!
//! The bound. Under autocast every GEMM-like op (linear, conv, the two products of
//! attention) rounds its two operands to bf16 and writes its result in bf16: three roundings
//! of relative size at most u = 2⁻⁸ each (bf16 keeps 8 significant bits), the fp32
//! accumulation in between adding ~K·2⁻²⁴, negligible. Elementwise ops, LayerNorm and
//! softmax compute in fp32 inside and add at most one more rounding of their output, counted
//! with the GEMM they follow. A tensor D GEMMs deep ([`depth`]: the longest chain from the
//! inputs to the heads) carries n = 3D roundings, passed on with gain about 1 (LayerNorm
//! renormalizes, residuals add). The worst case, n·u, exceeds 1 for the gradients; rounding
//! errors are independent and of mean zero, so the probabilistic bound of Higham and Mary
//! (SIAM J. Sci. Comput. 41(5), 2019, Theorem 2.4) applies: |error| ≤ λ·√n·u with
//! probability at least 1 − 2·exp(−λ²/2). λ = 6: 3·10⁻⁸ per element. Forward tensors and
//! losses: n = 3D ([`forward_bound`]); gradients, from a backward as deep again in bf16
//! GEMMs: n = 6D ([`grad_bound`]). AdamW's rows take the golden gradients and run in fp32
//! whatever autocast says: they keep the fp32 bound. Transforms and tokens are exact.
//!
//! One exception, and why: the key projection's bias gets a gradient that is 0 in exact
//! arithmetic (it adds q·b to every logit of a query's row, and softmax ignores a shift), so
//! its golden is fp32 noise (~1e-12) and the row's err measures bf16's noise against the
//! 1e-6 floor of err's denominator. Its error is measured instead against the scale of the
//! same attention's query-bias gradient, which comes from the same logit gradients
//! ([`key_bias_err`]).
use m3ae::parity::report::Category;
use m3ae::parity::{check_set_with, ParityOutcome, WeightsSource};
use m3ae::train::cpu_bf16;
use tch::Device;

/// bf16's unit roundoff: 8 significant bits, round to nearest.
const U: f64 = 1.0 / 256.0;

/// The layer counts of a model set, from its state dict's keys.
pub(crate) struct Layers {
    vision: usize,
    text: usize,
    fusion: usize,
    mim_decoder: usize,
}

fn count(keys: &[String], prefix: &str) -> usize {
    keys.iter().filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).max().map_or(0, |i| i + 1)
}

/// The layer counts of the model in a safetensors file.
pub(crate) fn layers_of(weights: &std::path::Path) -> Layers {
    let sd = m3ae::weights::read_safetensors(weights).unwrap();
    let keys: Vec<String> = sd.into_keys().collect();
    Layers {
        vision: count(&keys, "vision_encoder.visual.transformer.resblocks."),
        text: count(&keys, "language_encoder.encoder.layer."),
        // the fusion layers of the two streams run side by side: one chain
        fusion: count(&keys, "multi_modal_vision_layers."),
        mim_decoder: count(&keys, "mim_head.decoder.resblocks."),
    }
}

/// The longest chain of bf16 GEMMs from the inputs to a head's output. A transformer block
/// is 6 deep (q/k/v projection, Q·Kᵀ, P·V, output projection, the FFN's two); a fusion layer
/// 10 (self-attention 4, cross-attention 4, FFN 2); the patch conv 1; the projection into the
/// fusion width 1; the heads: pooler + VQA/CLS head (Linear, LayerNorm, GELU, Linear) 3, MLM
/// head 2, MIM decoder embed + blocks + prediction 2 + 6 per block.
pub(crate) fn depth(l: &Layers) -> usize {
    let encoders = (1 + 6 * l.vision).max(6 * l.text);
    let heads = 3usize.max(2 + 6 * l.mim_decoder);
    encoders + 1 + 10 * l.fusion + heads
}

/// λ in Higham and Mary's bound.
const LAMBDA: f64 = 6.0;

pub(crate) fn forward_bound(d: usize) -> f64 {
    LAMBDA * ((3 * d) as f64).sqrt() * U
}

fn grad_bound(d: usize) -> f64 {
    LAMBDA * ((6 * d) as f64).sqrt() * U
}

/// The error of a key-bias gradient row measured against its attention's query-bias
/// gradient scale: err·max(max|golden|, 1e-6) is the absolute error (report::compare).
fn key_bias_err(goldens: &m3ae::weights::StateDict, name: &str, err: f64) -> Option<f64> {
    let key = name.strip_prefix("grad.")?;
    let query = key.strip_suffix("key.bias")?.to_string() + "query.bias";
    let max_abs = |k: &str| goldens.get(&format!("grad.{k}")).map(|t| f64::try_from(t.abs().max()).unwrap());
    Some(err * max_abs(key)?.max(1e-6) / max_abs(&query)?)
}

/// The fp32 CPU bound of `tests/parity.rs` (AdamW, fed golden gradients, is fp32 under autocast).
const ADAMW_BOUND: f64 = 1e-6;

/// A forward error above this shows the GEMMs really ran in bf16: fp32's bound is 2e-6, and
/// one bf16 rounding of a tensor's largest element alone is u/2 ≈ 2e-3.
const BF16_EVIDENCE: f64 = 1e-4;

fn check_bf16(set: &str) {
    let d = depth(&layers_of(&crate::parity_dir().join(set).join("state_dict.safetensors")));
    let (fwd, grad) = (forward_bound(d), grad_bound(d));
    let outcome: ParityOutcome = cpu_bf16::autocast(|| check_set_with(&crate::parity_dir().join(set), WeightsSource::StateDict, Device::Cpu, 1.0))
        .unwrap()
        .unwrap_or_else(|e| panic!("{set}: {e}"));
    println!("{set} in bf16: depth {d}, forward/loss bound 6·√(3D)·u = {fwd:.3}, gradient bound 6·√(6D)·u = {grad:.3}\n{}", outcome.table());
    let goldens = m3ae::weights::read_safetensors(&crate::parity_dir().join(set).join("goldens.safetensors")).unwrap();
    let mut bad = Vec::new();
    let mut max_fwd = 0.0f64;
    let mut max_seen = [0.0f64; 3];
    for r in &outcome.rows {
        let err = r.err.unwrap_or(f64::INFINITY);
        let bound = match r.category {
            Category::Forward | Category::Loss => {
                max_fwd = max_fwd.max(err);
                max_seen[0] = max_seen[0].max(err);
                fwd
            }
            Category::Grad => {
                let err = key_bias_err(&goldens, &r.name, err).unwrap_or(err);
                max_seen[1] = max_seen[1].max(err);
                if err > grad {
                    bad.push(format!("{} (err {err:.2e} > bf16 bound {grad:.2e})", r.name));
                }
                continue;
            }
            Category::AdamW => {
                max_seen[2] = max_seen[2].max(err);
                ADAMW_BOUND
            }
            Category::Transform | Category::Exact => {
                if !r.passed() {
                    bad.push(format!("{} (err {:?}) {}", r.name, r.err, r.note));
                }
                continue;
            }
        };
        if err > bound {
            bad.push(format!("{} (err {err:.2e} > bf16 bound {bound:.2e})", r.name));
        }
    }
    println!("{set} in bf16: largest err forward/loss {:.2e}, gradients {:.2e}, AdamW {:.2e}", max_seen[0], max_seen[1], max_seen[2]);
    assert!(bad.is_empty(), "{set} in bf16: {} tensor(s) above their bound:\n{}", bad.len(), bad.join("\n"));
    assert!(max_fwd > BF16_EVIDENCE, "{set}: the largest forward error {max_fwd:.2e} is fp32's: autocast did not compute in bf16");
}

#[test]
fn tiny_a_in_bf16() {
    check_bf16("tiny-a");
}

#[test]
fn tiny_b_in_bf16() {
    check_bf16("tiny-b");
}

#[test]
fn tiny_c_in_bf16() {
    check_bf16("tiny-c");
}

/// The oneDNN route steps aside under autocast (its fp32 GEMMs would hide bf16): with every
/// layer routed to it, the set computes in bf16 all the same, within the same bounds.
#[test]
fn tiny_c_in_bf16_with_the_onednn_route_on() {
    if !m3ae::model::linear::forced_route_testable("tiny_c_in_bf16_with_the_onednn_route_on") {
        return;
    }
    m3ae::model::linear::with_cpu_gemm(m3ae::model::linear::CpuGemm::OneDnnAlways, || check_bf16("tiny-c"));
}
