//! CPU bf16 autocast (`precision: "bf16"`): the GEMMs compute in bf16, the oneDNN route and
//! the one-pass dropout step aside for it, the weights, gradients and AdamW's state stay
//! fp32, and the thread's autocast state is restored after it.
use m3ae::model::dropout::dropout;
use m3ae::model::linear::{linear, with_cpu_gemm, CpuGemm};
use m3ae::model::{InferInput, InferOptions};
use m3ae::train::cpu_bf16::{autocast, autocast_active};
use m3ae::train::optim::AdamW;
use m3ae::train::pretrain::{pretrain_gradients, PretrainBatch};
use tch::{Device, Kind, Tensor};

use crate::{batch, build, pretrain_extras, tiny_config, PretrainExtras};

#[test]
fn linear_layers_compute_in_bf16_and_the_onednn_route_steps_aside() {
    if !m3ae::model::linear::forced_route_testable("linear_layers_compute_in_bf16_and_the_onednn_route_steps_aside") {
        return;
    }
    tch::manual_seed(0);
    let x = Tensor::randn([64, 96], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([80, 96], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([80], (Kind::Float, Device::Cpu));
    let exact = x.to_kind(Kind::Double).matmul(&w.to_kind(Kind::Double).tr()) + b.to_kind(Kind::Double);
    with_cpu_gemm(CpuGemm::OneDnnAlways, || {
        assert!(!autocast_active());
        let fp32 = linear(&x, &w, Some(&b));
        assert_eq!(fp32.kind(), Kind::Float);
        let bf16 = autocast(|| {
            assert!(autocast_active());
            // nested, as a validation inside a training step's autocast would be
            let inner = autocast(|| linear(&x, &w, Some(&b))).unwrap();
            assert!(autocast_active(), "leaving a nested autocast must not end the outer one");
            assert_eq!(inner.kind(), Kind::BFloat16);
            linear(&x, &w, Some(&b))
        })
        .unwrap();
        assert!(!autocast_active(), "the thread's autocast state is restored");
        assert_eq!(bf16.kind(), Kind::BFloat16, "under autocast the layer is autocast's bf16 at::linear");
        // bf16's error, not fp32's: |x|·|w| sums of 96 products of operands rounded to 8 bits
        let scale = f64::try_from(exact.abs().max()).unwrap();
        let err32 = f64::try_from((fp32.to_kind(Kind::Double) - &exact).abs().max()).unwrap() / scale;
        let err16 = f64::try_from((bf16.to_kind(Kind::Double) - &exact).abs().max()).unwrap() / scale;
        assert!(err32 < 1e-5, "fp32 err {err32}");
        assert!(err16 > 1e-4 && err16 < 3.0 * 6.0 / 256.0, "bf16 err {err16}");
    });
}

#[test]
fn dropout_runs_on_bf16_activations_at_its_rate() {
    tch::manual_seed(0);
    let x = Tensor::ones([256, 256], (Kind::BFloat16, Device::Cpu));
    let y = autocast(|| dropout(&x, 0.25, true)).unwrap();
    assert_eq!(y.kind(), Kind::BFloat16);
    let kept = f64::try_from(y.ne(0.0).to_kind(Kind::Double).mean(Kind::Double)).unwrap();
    // 65,536 draws: a standard error of 0.0017 on the kept fraction
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    // every kept element is 1/(1-p) = 4/3, rounded to bf16 (within u = 2^-8 relative)
    let kept_values = y.masked_select(&y.ne(0.0)).to_kind(Kind::Double);
    let off = f64::try_from((kept_values - 4.0 / 3.0).abs().max()).unwrap();
    assert!(off <= 4.0 / 3.0 / 256.0, "kept values off 4/3 by {off}");
}

#[test]
fn a_bf16_step_keeps_fp32_weights_gradients_and_adamw_state() {
    let c = tiny_config();
    let (vs, m) = build(&c);
    let b = batch(4);
    let PretrainExtras { false_image, itm_labels, ids_mlm, labels_mlm, noise } = pretrain_extras(&b);
    let batch = PretrainBatch { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: &ids_mlm, text_labels_mlm: &labels_mlm, mim_noise: Some(&noise), itm_labels: &itm_labels, false_image: &false_image };
    let mut opt = AdamW::new(&vs, &c);

    // the forward really is bf16: the fusion output and the pooled features come out of bf16 GEMMs
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let out = autocast(|| tch::no_grad(|| m.infer(&input, &InferOptions::default()))).unwrap().unwrap();
    assert_eq!(out.multi_modal_cls_feats.kind(), Kind::BFloat16);

    let fp32 = pretrain_gradients(&m, &opt, &batch, false).unwrap();
    let step = autocast(|| pretrain_gradients(&m, &opt, &batch, false)).unwrap().unwrap();
    for (name, v) in vs.variables() {
        assert_eq!(v.kind(), Kind::Float, "{name}: the weight stays fp32");
    }
    for g in step.gradients.tensors().iter().filter(|g| g.defined()) {
        assert_eq!(g.kind(), Kind::Float, "gradients of fp32 leaves are fp32");
    }
    // the losses agree with fp32's within the forward bound of tests/parity/bf16.rs: this
    // model is D = 48 GEMMs deep (3 vision blocks + conv 19, projection 1, 2 fusion layers
    // 20, MIM decoder 8), 6·√(3D)·2⁻⁸ = 0.281 relative
    let bound = 6.0 * (3.0f64 * 48.0).sqrt() / 256.0;
    for (a, e) in [(&step.losses.mlm, &fp32.losses.mlm), (&step.losses.mim, &fp32.losses.mim), (&step.losses.itm, &fp32.losses.itm)] {
        let (a, e) = (f64::try_from(a.as_ref().unwrap()).unwrap(), f64::try_from(e.as_ref().unwrap()).unwrap());
        assert!((a - e).abs() <= bound * e.abs(), "bf16 loss {a} vs fp32 {e}");
    }
    opt.apply(step.gradients, 1.0);
    for (k, t) in opt.state().tensors {
        assert_eq!(t.kind(), Kind::Float, "{k}: AdamW's state stays fp32");
    }
}
