//! The one-pass AdamW kernel (src/train/adamw_fused.cpp) against the op-by-op form.
use std::collections::BTreeMap;

use m3ae::config::M3aeConfig;
use m3ae::train::optim::AdamW;
use tch::{nn, Device, Kind, Tensor};

/// Three parameters: decayed (a weight), not decayed (a bias), and one of an odd length
/// that leaves a tail after the vectorised part of each chunk.
fn store() -> nn::VarStore {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let dense = vs.root() / "text_transformer" / "encoder" / "dense";
    let _ = dense.var("weight", &[300, 257], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
    let _ = dense.var("bias", &[300], nn::Init::Const(0.01));
    let _ = (vs.root() / "vqa_classifier" / "0").var("weight", &[7, 13], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
    vs
}

/// Five steps with the same gradients (one with a non-contiguous gradient, which takes the
/// op-by-op path either way); the parameters and both moments afterwards.
fn run(fused: bool) -> BTreeMap<String, Tensor> {
    let vs = store();
    let c = M3aeConfig { weight_decay: 0.01, learning_rate: 1e-3, ..Default::default() };
    let mut opt = AdamW::new(&vs, &c);
    opt.fused = fused;
    tch::manual_seed(12);
    for step in 0..5 {
        // by name: the store's own map has no fixed order
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let grads: BTreeMap<String, Tensor> = vars
            .into_iter()
            .map(|(name, p)| {
                let g = Tensor::randn(p.size(), (Kind::Float, Device::Cpu)) * 1e-2;
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
