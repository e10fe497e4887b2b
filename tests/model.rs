//! Behaviour of the module tree beyond the goldens: ablations, freezing, strict loading,
//! bad input, the attention fast path, dropout, the optimizer's grouping and schedule; the
//! CPU kernels (oneDNN linear layers, one-pass dropout, [CLS]-only last fusion layer) in
//! `model/kernels.rs`.
use std::path::Path;

use m3ae::config::{M3aeConfig, TextEncoderConfig, VisionEncoderConfig, Warmup};
use m3ae::model::{InferInput, InferOptions, M3aeTransformerSs};
use m3ae::train::objectives;
use m3ae::train::optim::{lr_factor, param_group, AdamW};
use m3ae::train::pretrain::{pretrain_gradients, PretrainBatch};
use m3ae::weights::{load_state_dict, StateDict};
use m3ae::Error;
use tch::{nn, Device, Kind, Tensor};

/// A small config: 32 px images, two fusion layers, every head on.
pub(crate) fn tiny_config() -> M3aeConfig {
    let mut c = M3aeConfig {
        image_size: 32,
        patch_size: 16,
        hidden_size: 32,
        num_heads: 4,
        num_top_layer: 2,
        input_image_embed_size: 64,
        input_text_embed_size: 48,
        vocab_size: 50,
        max_text_len: 8,
        mim_decoder_hidden_size: 16,
        mim_decoder_num_heads: 2,
        mim_decoder_num_layers: 1,
        label_column_name: "p_meth_label".into(),
        vqa_label_size: 5,
        ..Default::default()
    };
    c.loss_names = m3ae::config::LossNames { mlm: 1.0, mim: 1.0, itm: 1.0, vqa: 1.0, cls: 1.0, irtr: 1.0 };
    c.vision_encoder_config = Some(VisionEncoderConfig { width: 64, layers: 3, patch_size: 16, context_length: 4, vocab_size: 10, transformer_width: 8 });
    c.language_encoder_config = Some(TextEncoderConfig {
        vocab_size: 50,
        hidden_size: 48,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 96,
        max_position_embeddings: 16,
        ..TextEncoderConfig::roberta_base()
    });
    c
}

pub(crate) fn build(c: &M3aeConfig) -> (nn::VarStore, M3aeTransformerSs) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = M3aeTransformerSs::new(&vs.root(), c).expect("valid config");
    (vs, m)
}

pub(crate) struct Batch {
    image: Tensor,
    ids: Tensor,
    masks: Tensor,
}

pub(crate) fn batch(b: i64) -> Batch {
    tch::manual_seed(1);
    let ids = Tensor::randint_low(3, 50, [b, 8], (Kind::Int64, Device::Cpu));
    let masks = Tensor::ones([b, 8], (Kind::Int64, Device::Cpu));
    let _ = masks.narrow(1, 6, 2).fill_(0);
    let _ = ids.narrow(1, 6, 2).fill_(1);
    Batch { image: Tensor::randn([b, 3, 32, 32], (Kind::Float, Device::Cpu)), ids, masks }
}

/// The rest of a 4-sample pre-training batch: a false image, ITM labels [0, 1, 1, 0], MLM ids
/// with text columns 1–2 masked (id 4) and their labels, and MIM noise (drawn in that order).
pub(crate) struct PretrainExtras {
    pub(crate) false_image: Tensor,
    pub(crate) itm_labels: Tensor,
    pub(crate) ids_mlm: Tensor,
    pub(crate) labels_mlm: Tensor,
    pub(crate) noise: Tensor,
}

pub(crate) fn pretrain_extras(b: &Batch) -> PretrainExtras {
    let false_image = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let itm_labels = Tensor::from_slice(&[0i64, 1, 1, 0]);
    let ids_mlm = b.ids.copy();
    let _ = ids_mlm.narrow(1, 1, 2).fill_(4);
    let labels_mlm = b.ids.where_self(&ids_mlm.eq(4), &Tensor::full([4, 8], -100, (Kind::Int64, Device::Cpu)));
    let noise = Tensor::rand([4, 4], (Kind::Float, Device::Cpu));
    PretrainExtras { false_image, itm_labels, ids_mlm, labels_mlm, noise }
}

fn keys(vs: &nn::VarStore) -> Vec<String> {
    let mut k: Vec<String> = vs.variables().into_keys().collect();
    k.sort();
    k
}

#[test]
fn ablations_remove_exactly_their_head() {
    let (vs, _) = build(&tiny_config());
    let all = keys(&vs);
    for head in ["mlm_head.", "mim_head.", "itm_head.", "vqa_head.", "cls_head.", "irtr_head."] {
        assert!(all.iter().any(|k| k.starts_with(head)), "{head} missing with every loss on");
    }
    let mut c = tiny_config();
    c.loss_names.mim = 0.0;
    c.loss_names.mlm = 0.0;
    let (vs, m) = build(&c);
    let ks = keys(&vs);
    assert!(!ks.iter().any(|k| k.starts_with("mim_head.") || k.starts_with("mlm_head.")));
    assert!(m.mim_head.is_none() && m.mlm_head.is_none());
    // everything else is unchanged by the ablation
    let rest: Vec<&String> = all.iter().filter(|k| !k.starts_with("mim_head.") && !k.starts_with("mlm_head.")).collect();
    assert_eq!(rest, ks.iter().collect::<Vec<_>>());
}

#[test]
fn irtr_freezes_itm_and_copies_its_match_row() {
    let (vs, _) = build(&tiny_config());
    let v = vs.variables();
    assert!(!v["itm_head.fc.weight"].requires_grad() && !v["itm_head.fc.bias"].requires_grad());
    assert!(v["irtr_head.weight"].requires_grad());
    assert!(v["irtr_head.weight"].equal(&v["itm_head.fc.weight"].narrow(0, 1, 1)));
    assert!(v["irtr_head.bias"].equal(&v["itm_head.fc.bias"].narrow(0, 1, 1)));
    assert!(!v["mim_head.decoder_pos_embed"].requires_grad(), "the sin-cos table is fixed");
}

#[test]
fn upstream_block_counts() {
    let (vs, _) = build(&tiny_config());
    let ks = keys(&vs);
    let count = |prefix: &str| ks.iter().filter(|k| k.starts_with(prefix) && k.ends_with("attn.in_proj_weight")).count();
    assert_eq!(count("vision_encoder.visual.transformer.resblocks."), 2, "CLIP builds layers - 1 blocks");
    assert_eq!(count("mim_head.decoder.resblocks."), 1, "the decoder has mim_decoder_num_layers blocks");
}

#[test]
fn dropout_follows_the_train_flag() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(2);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let run = |train| m.infer(&input, &InferOptions { train, ..Default::default() }).unwrap().multi_modal_cls_feats;
    assert!(run(false).equal(&run(false)), "eval mode is deterministic");
    // (compared with eval rather than with a second train run: tests share libtorch's global
    // RNG, and another test re-seeding it between two runs could replay the same mask)
    assert!(!run(true).equal(&run(false)), "train mode applies dropout");
}

#[test]
fn mim_masks_three_quarters_and_keeps_the_class_token() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(3);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let out = m.infer(&input, &InferOptions { mask_image: true, ..Default::default() }).unwrap();
    let mim = out.mim.expect("mask_image returns its masking");
    // 4 patches at 32 px / 16: len_keep = int(4 * 0.25) = 1
    assert_eq!(mim.masks.size(), [3, 4]);
    assert_eq!(f64::try_from(mim.masks.sum(Kind::Float)).unwrap(), 9.0);
    assert_eq!(out.multi_modal_image_feats.size(), [3, 2, 32]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(2);
    let wrong_size = Tensor::zeros([2, 3, 48, 48], (Kind::Float, Device::Cpu));
    let input = InferInput { image: &wrong_size, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let e = m.infer(&input, &InferOptions::default()).unwrap_err();
    assert!(matches!(&e, Error::Input { name, .. } if name == "image"), "{e}");
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let e = m.infer(&input, &InferOptions { mask_text: true, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("text_ids_mlm"), "{e}");
    let too_big = b.ids.shallow_clone() + 1000;
    let bad_ids = InferInput { text_ids: &too_big, ..input };
    let e = m.infer(&bad_ids, &InferOptions::default()).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    let long = Tensor::ones([2, 20], (Kind::Int64, Device::Cpu));
    let too_long = InferInput { text_ids: &long, text_masks: &long, ..input };
    let e = m.infer(&too_long, &InferOptions::default()).unwrap_err();
    assert!(e.to_string().contains("position embeddings"), "{e}");
    let noise = Tensor::zeros([2, 5], (Kind::Float, Device::Cpu));
    let input = InferInput { mim_noise: Some(&noise), ..input };
    let e = m.infer(&input, &InferOptions { mask_image: true, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("mim_noise"), "{e}");
}

#[test]
fn invalid_configs_name_the_key() {
    let mut c = tiny_config();
    c.num_heads = 5;
    assert!(M3aeTransformerSs::new(&nn::VarStore::new(Device::Cpu).root(), &c).unwrap_err().to_string().contains("num_heads"));
    let mut c = tiny_config();
    c.mim_layer = 7;
    assert!(c.validate().unwrap_err().to_string().contains("mim_layer"));
    let mut c = tiny_config();
    c.image_size = 40;
    assert!(c.validate().unwrap_err().to_string().contains("image_size"));
}

#[test]
fn strict_loading_names_key_and_shapes() {
    let (vs, _) = build(&tiny_config());
    let mut sd: StateDict = vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
    let src = Path::new("fixture.safetensors");
    assert!(load_state_dict(&vs, &sd, src).is_ok());
    sd.insert("multi_modal_vision_proj.weight".into(), Tensor::zeros([32, 65], (Kind::Float, Device::Cpu)));
    let e = load_state_dict(&vs, &sd, src).unwrap_err();
    assert!(matches!(&e, Error::ShapeMismatch { key, expected, found, .. }
        if key == "multi_modal_vision_proj.weight" && expected == &vec![32, 64] && found == &vec![32, 65]), "{e}");
    // float data of another width is cast into the fp32 parameter, as load_state_dict copies it,
    // and listed; f16 → f32 is exact
    let key = "multi_modal_vision_proj.weight";
    for kind in [Kind::Half, Kind::BFloat16, Kind::Double] {
        sd.insert(key.into(), Tensor::full([32, 64], 0.375, (kind, Device::Cpu)));
        let report = load_state_dict(&vs, &sd, src).unwrap();
        assert_eq!(report.cast, [key], "{kind:?}");
        let var = &vs.variables()[key];
        assert_eq!((var.kind(), var.double_value(&[3, 5])), (Kind::Float, 0.375));
    }
    // integer or bool data where a float parameter is expected is refused, naming the key
    for kind in [Kind::Int64, Kind::Bool] {
        sd.insert(key.into(), Tensor::zeros([32, 64], (kind, Device::Cpu)));
        let e = load_state_dict(&vs, &sd, src).unwrap_err();
        assert!(matches!(&e, Error::DtypeMismatch { key: k, .. } if k == key), "{e}");
    }
    sd.remove("multi_modal_vision_proj.weight");
    let e = load_state_dict(&vs, &sd, src).unwrap_err();
    assert!(e.to_string().contains("multi_modal_vision_proj.weight"), "{e}");
}

#[test]
fn set_schedule_groups() {
    let c = M3aeConfig { learning_rate: 1e-5, weight_decay: 0.01, ..Default::default() };
    let g = |n| param_group(n, &c).map(|g| (g.lr, g.weight_decay));
    assert_eq!(g("vision_encoder.visual.ln_pre.weight"), Some((1e-5, 0.01)), "CLIP ln_* match no no-decay name");
    assert_eq!(g("language_encoder.encoder.layer.0.output.LayerNorm.weight"), Some((1e-5, 0.0)));
    assert_eq!(g("mim_head.decoder_norm.weight"), Some((5e-5, 0.0)), "`norm.weight` is a no-decay name");
    assert_eq!(g("mlm_head.decoder.weight"), Some((5e-5, 0.01)));
    assert_eq!(g("multi_modal_vision_layers.0.output.dense.bias"), Some((5e-5, 0.0)));
    assert_eq!(g("modality_type_embeddings.weight"), Some((1e-5, 0.01)));
}

#[test]
fn polynomial_schedule_with_warmup() {
    let c = M3aeConfig { learning_rate: 1e-5, end_lr: 0.0, decay_power: m3ae::config::DecayPower::Power(1.0), warmup_steps: Warmup::Fraction(0.1), ..Default::default() };
    assert_eq!(lr_factor(&c, 0, 1000), 0.0);
    assert!((lr_factor(&c, 50, 1000) - 0.5).abs() < 1e-12);
    assert!((lr_factor(&c, 100, 1000) - 1.0).abs() < 1e-12);
    assert!((lr_factor(&c, 550, 1000) - 0.5).abs() < 1e-12);
    assert_eq!(lr_factor(&c, 2000, 1000), 0.0);
}

#[test]
fn cached_retrieval_equals_one_forward_per_pair() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(3); // 3 images, 3 texts
    let cached = tch::no_grad(|| m3ae::tasks::retrieval::retrieval_scores(&m, &b.image, &b.ids, &b.masks)).unwrap(); // [I, T]
    let irtr = m.irtr_head.as_ref().unwrap();
    for i in 0..3 {
        for j in 0..3 {
            let (img, ids, masks) = (b.image.narrow(0, i, 1), b.ids.narrow(0, j, 1), b.masks.narrow(0, j, 1));
            let input = InferInput { image: &img, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
            let out = tch::no_grad(|| m.infer(&input, &InferOptions::default())).unwrap();
            let score = f64::try_from(out.multi_modal_cls_feats.apply(irtr).view([-1])).unwrap();
            let got = f64::try_from(cached.get(i).get(j)).unwrap();
            assert!((score - got).abs() < 1e-5, "pair ({i}, {j}): per-pair {score}, cached {got}");
        }
    }
}

#[test]
fn backward_step_equals_a_step_on_autograd_gradients() {
    let c = tiny_config();
    let b = batch(2);
    let loss_of = |m: &M3aeTransformerSs| {
        let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
        m.infer(&input, &InferOptions::default()).unwrap().multi_modal_cls_feats.square().sum(Kind::Float)
    };
    // two identical models (tests share libtorch's global RNG, so copy rather than re-seed)
    let (vs_a, m_a) = build(&c);
    let (mut vs_b, m_b) = build(&c);
    vs_b.copy(&vs_a).unwrap();
    // A: .backward() into .grad, then the golden-gradient path
    loss_of(&m_a).backward();
    let grads: std::collections::BTreeMap<String, Tensor> = vs_a.variables().into_iter().filter(|(_, v)| v.grad().defined()).map(|(k, v)| (k, v.grad().copy())).collect();
    let mut opt_a = AdamW::new(&vs_a, &c);
    opt_a.step_with(&grads, 1.0).unwrap();
    // B: autograd returns the gradients, the optimizer drops them after the update
    let mut opt_b = AdamW::new(&vs_b, &c);
    opt_b.backward_step(&loss_of(&m_b), 1.0).unwrap();
    let (va, vb) = (vs_a.variables(), vs_b.variables());
    let mut moved = 0;
    for (k, a) in &va {
        // The two engine calls may sum gradients in another order (δ ≲ 1e-5·max|g| for these
        // short sums). Adam's first step moves an element by lr·g/(|g| + eps): where |g| is
        // above δ the order changes it by far less than 1% of lr; where |g| is within δ of 0 a
        // rounding can flip the step's sign, a difference of up to 2·lr, which no summation
        // order shares. So: 1e-7 (1% of lr) where |g| > 1e-4·max|g|, 2·lr elsewhere.
        let d = (a - &vb[k]).abs();
        let (big, rest) = match grads.get(k) {
            Some(g) => {
                let clear = g.abs().gt_tensor(&(g.abs().max() * 1e-4));
                (d.masked_select(&clear), d.masked_select(&clear.logical_not()))
            }
            None => (d.view([-1]), Tensor::zeros([0], (Kind::Float, Device::Cpu))),
        };
        let max = |t: &Tensor| if t.numel() == 0 { 0.0 } else { f64::try_from(t.max()).unwrap() };
        assert!(max(&big) <= 1e-7, "{k} differs between the two paths by {} where the gradient is clear of 0", max(&big));
        assert!(max(&rest) <= 2.0 * c.learning_rate, "{k} differs by {} near a zero gradient, beyond 2·lr", max(&rest));
        moved += usize::from(!vb[k].grad().defined());
    }
    assert_eq!(moved, va.len(), "backward_step leaves no .grad behind");
}

#[test]
fn accumulated_objective_gradients_equal_the_gradient_of_their_sum() {
    let c = tiny_config();
    let (vs, m) = build(&c);
    let b = batch(2);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    // two objectives that share the encoders but differ in the heads they reach
    let first = || m.infer(&input, &InferOptions::default()).unwrap().multi_modal_cls_feats.square().sum(Kind::Float);
    let second = || m.infer(&input, &InferOptions::default()).unwrap().multi_modal_text_feats.mean(Kind::Float) * 3.0;
    let opt = AdamW::new(&vs, &c);
    let whole = opt.gradients(&(first() + second())).unwrap();
    let mut acc = None;
    opt.accumulate(&mut acc, &first()).unwrap();
    opt.accumulate(&mut acc, &second()).unwrap();
    let acc = acc.unwrap();
    let names: Vec<&str> = opt.groups().map(|(n, _)| n).collect();
    let mut compared = 0;
    for ((name, w), a) in names.iter().zip(whole.tensors()).zip(acc.tensors()) {
        assert_eq!(w.defined(), a.defined(), "{name}: reached by the sum but not by the parts, or the reverse");
        if w.defined() {
            let scale = f64::try_from(w.abs().max()).unwrap().max(1e-6);
            let diff = f64::try_from((w - a).abs().max()).unwrap();
            assert!(diff <= 1e-5 * scale, "{name}: accumulated gradient differs by {diff} (scale {scale})");
            compared += 1;
        }
    }
    assert!(compared > 20, "only {compared} gradients compared");
    assert!(vs.variables().values().all(|v| !v.grad().defined()), "accumulate leaves no .grad behind");
}

/// The pre-training step against upstream's algorithm, one full `infer` per objective: the
/// same losses and the same summed gradients, for every ablation of mlm and mim.
#[test]
fn pretrain_step_sharing_the_image_encoding_equals_one_infer_per_objective() {
    // (0, 0): ITM alone (`--ablate mlm --ablate mim`) encodes exactly its mixed batch
    for (mlm, mim) in [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0)] {
        let mut c = tiny_config();
        c.loss_names = m3ae::config::LossNames { mlm, mim, itm: 1.0, vqa: 0.0, cls: 0.0, irtr: 0.0 };
        let (vs, m) = build(&c);
        let b = batch(4);
        let PretrainExtras { false_image, itm_labels, ids_mlm, labels_mlm, noise } = pretrain_extras(&b);
        let opt = AdamW::new(&vs, &c);
        let opts = InferOptions::default();

        // upstream: each objective its own infer; ITM on the mixed batch
        let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: Some(&ids_mlm), mim_noise: Some(&noise) };
        let mixed = b.image.where_self(&itm_labels.eq(1).view([4, 1, 1, 1]), &false_image);
        let mut separate = None;
        let mut losses = vec![];
        if mlm > 0.0 {
            losses.push(objectives::compute_mlm(&m, &input, &labels_mlm, &opts).unwrap().loss);
        }
        if mim > 0.0 {
            losses.push(objectives::compute_mim(&m, &input, &opts).unwrap().loss);
        }
        losses.push(objectives::compute_itm(&m, &InferInput { image: &mixed, ..input }, &itm_labels, &opts).unwrap().loss);
        for l in &losses {
            opt.accumulate(&mut separate, l).unwrap();
        }
        let separate = separate.unwrap();

        let batch = PretrainBatch { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: &ids_mlm, text_labels_mlm: &labels_mlm, mim_noise: Some(&noise), itm_labels: &itm_labels, false_image: &false_image };
        let shared = pretrain_gradients(&m, &opt, &batch, false).unwrap();
        let got: Vec<&Tensor> = [&shared.losses.mlm, &shared.losses.mim, &shared.losses.itm].into_iter().flatten().collect();
        assert_eq!(got.len(), losses.len(), "mlm {mlm} mim {mim}: one loss per objective that is on");
        for (a, e) in got.iter().zip(&losses) {
            let d = f64::try_from((*a - e).abs()).unwrap();
            assert!(d <= 1e-6, "mlm {mlm} mim {mim}: loss {a} vs upstream's {e}");
        }
        let names: Vec<&str> = opt.groups().map(|(n, _)| n).collect();
        let mut compared = 0;
        for ((name, e), a) in names.iter().zip(separate.tensors()).zip(shared.gradients.tensors()) {
            assert_eq!(e.defined(), a.defined(), "{name}: reached on one path only");
            if e.defined() {
                let scale = f64::try_from(e.abs().max()).unwrap().max(1e-6);
                let diff = f64::try_from((e - a).abs().max()).unwrap();
                assert!(diff <= 1e-5 * scale, "mlm {mlm} mim {mim}, {name}: gradient differs by {diff} (scale {scale})");
                compared += usize::from(name.starts_with("vision_encoder."));
            }
        }
        assert!(compared > 10, "only {compared} vision gradients compared");

        // bad pairing input is an error that names it
        let short = Tensor::from_slice(&[1i64, 0]);
        let err = pretrain_gradients(&m, &opt, &PretrainBatch { itm_labels: &short, ..batch }, false).expect_err("[2] labels for 4 rows").to_string();
        assert!(err.contains("itm_labels"), "{err}");
        let wrong = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let err = pretrain_gradients(&m, &opt, &PretrainBatch { false_image: &wrong, ..batch }, false).expect_err("16 px false images").to_string();
        assert!(err.contains("false_image"), "{err}");
    }
}

#[test]
fn bench_refuses_bf16_for_workloads_that_run_in_fp32() {
    // train takes --bf16 as CPU autocast (precision "bf16"); these have no bf16 form
    for workload in ["load", "matmul"] {
        let err = m3ae::bench::run(Path::new("/nonexistent-bench-dir"), workload, 1, Device::Cpu, true).expect_err("bf16 accepted").to_string();
        assert!(err.contains("--bf16") && err.contains(workload), "{workload}: {err}");
    }
}

mod model {
    mod bf16;
    mod kernels;
    mod pretrain_paths;
    mod shims;
}
