//! The one-pass AdamW kernel (src/train/adamw_fused.cpp) against the op-by-op form.
use std::collections::BTreeMap;

use m3ae::config::M3aeConfig;
use m3ae::train::optim::AdamW;
use tch::{nn, Device, Kind, Tensor};

/// Deterministic values of `shape` (no global generator: tests in this binary run in
/// parallel and reseed it).
fn wave(shape: &[i64], phase: f64, amplitude: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + phase).sin() * amplitude).view(shape)
}

/// Three parameters: decayed (a weight), not decayed (a bias), and one of an odd length
/// that leaves a tail after the vectorised part of each chunk.
fn store() -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let dense = vs.root() / "text_transformer" / "encoder" / "dense";
    let mut w = dense.var("weight", &[300, 257], nn::Init::Const(0.0));
    let mut b = dense.var("bias", &[300], nn::Init::Const(0.0));
    let mut h = (vs.root() / "vqa_classifier" / "0").var("weight", &[7, 13], nn::Init::Const(0.0));
    tch::no_grad(|| {
        for (t, phase) in [(&mut w, 0.1), (&mut b, 0.2), (&mut h, 0.3)] {
            t.copy_(&wave(&t.size(), phase, 0.02));
        }
    });
    vs
}

/// Five steps with the same gradients (one with a non-contiguous gradient, which takes the
/// op-by-op path either way); the parameters and both moments afterwards.
fn run(fused: bool) -> BTreeMap<String, Tensor> {
    let vs = store();
    let c = M3aeConfig { weight_decay: 0.01, learning_rate: 1e-3, ..Default::default() };
    let mut opt = AdamW::new(&vs, &c);
    opt.fused = fused;
    for step in 0..5 {
        // by name: the store's own map has no fixed order
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let grads: BTreeMap<String, Tensor> = vars
            .into_iter()
            .map(|(name, p)| {
                let g = wave(&p.size(), 1.3 * step as f64 + name.len() as f64, 1e-2);
                let g = if step == 3 && p.dim() == 2 { g.transpose(0, 1).contiguous().transpose(0, 1) } else { g };
                (name, g)
            })
            .collect();
        opt.step_with(&grads, 0.7).unwrap();
    }
    let mut out: BTreeMap<String, Tensor> = opt.state().tensors;
    out.extend(vs.variables().into_iter().map(|(k, v)| (format!("param.{k}"), v.detach().copy())));
    out
}

#[test]
fn one_pass_adamw_equals_the_op_by_op_form() {
    let (fused, ops) = (run(true), run(false));
    assert_eq!(fused.len(), 9);
    for (name, a) in &fused {
        let b = &ops[name];
        let scale = b.abs().max().double_value(&[]).max(1e-30);
        let err = (a - b).abs().max().double_value(&[]) / scale;
        // a few units in the last place: ATen's lerp runs the tail of each chunk unfused
        assert!(err <= 5e-7, "{name}: one-pass AdamW differs from the op-by-op form by {err:.2e} of its largest value");
    }
    // the parameters moved: the comparison is not between two untouched stores
    let moved = (&fused["param.text_transformer.encoder.dense.weight"] - store().variables()["text_transformer.encoder.dense.weight"].detach()).abs().max().double_value(&[]);
    assert!(moved > 1e-4, "five steps moved the weight by only {moved:.2e}");
}
