//! The pre-training passes compute only what their loss reads: the MLM pass's text stream
//! (not the last vision layer) and its head at the labelled positions, the MIM pass up to
//! `mim_layer`. Same losses and gradients as the whole passes.
use m3ae::model::m3ae::fusion_layers_run;
use m3ae::model::{InferInput, InferOptions};
use m3ae::train::objectives::{self, mlm_loss};
use m3ae::train::optim::AdamW;
use tch::{Device, Kind, Tensor};

use crate::{batch, build, tiny_config};

/// d`loss`/dθ for each parameter named `prefix…` that `loss` reaches, by name (through
/// AdamW's accumulation, which leaves no `.grad` behind).
fn grads(opt: &AdamW, loss: &Tensor, prefix: &str) -> Vec<(String, Tensor)> {
    let mut sum = None;
    opt.accumulate(&mut sum, loss).unwrap();
    let names: Vec<String> = opt.groups().map(|(n, _)| n.to_string()).collect();
    names.into_iter().zip(sum.unwrap().tensors().iter()).filter(|(n, g)| n.starts_with(prefix) && g.defined()).map(|(n, g)| (n, g.shallow_clone())).collect()
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

/// The MLM pass runs every fusion layer's language stream but not the last vision one, and
/// positions without a label never reach the head: with NaN features there, the loss and
/// every `mlm_head` gradient stay finite and equal those of the whole-sequence head (whose
/// weight gradients would read the NaN rows, times a zero upstream gradient).
#[test]
fn mlm_head_runs_on_labelled_positions_only() {
    let c = tiny_config();
    let (vs, m) = build(&c);
    let b = batch(3);
    let ids_mlm = b.ids.copy();
    let _ = ids_mlm.narrow(1, 1, 2).fill_(4);
    let minus = Tensor::full([3, 8], -100, (Kind::Int64, Device::Cpu));
    // rows 0 and 2 have two labels each, row 1 none
    let labels = b.ids.where_self(&ids_mlm.eq(4), &minus);
    let _ = labels.get(1).fill_(-100);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: Some(&ids_mlm), mim_noise: None };
    let infer = || m.infer(&input, &InferOptions { mask_text: true, ..Default::default() }).unwrap();
    let text = || m.infer_mlm(&input, None, &InferOptions::default()).unwrap();

    // upstream's head: every position, cross entropy ignoring -100
    let whole = infer();
    let head = m.mlm_head.as_ref().unwrap();
    let full_logits = tch::nn::Module::forward(head, &whole.multi_modal_text_feats); // [3, 8, vocab]
    let expected = mlm_loss(&full_logits, &labels);
    let opt = AdamW::new(&vs, &c);
    let expected_grads = grads(&opt, &expected, "mlm_head.");
    assert!(expected_grads.len() >= 5, "{} mlm_head gradients", expected_grads.len());

    // the port's text stream: every fusion layer's language stream, not the last vision one
    let before = fusion_layers_run();
    let plain = text();
    let after = fusion_layers_run();
    assert_eq!((after.text - before.text, after.image - before.image), (2, 1), "(language, vision) layers run");
    assert!(max_abs(&(&plain - &whole.multi_modal_text_feats)) <= 1e-6, "text stream differs from infer's");
    // the head, on features that are NaN wherever there is no label
    let labelled = labels.ne(-100).unsqueeze(-1);
    let poisoned = plain.where_self(&labelled, &Tensor::from(f64::NAN));
    let out = objectives::mlm_from(&m, poisoned, &labels).unwrap();
    assert_eq!(out.logits.size(), [4, c.vocab_size], "one row per label");
    assert_eq!(out.labels, labels.masked_select(&labels.ne(-100)));
    let d = (f64::try_from(&out.loss).unwrap() - f64::try_from(&expected).unwrap()).abs();
    assert!(d <= 1e-6, "loss {} vs the whole head's {}", out.loss, expected);
    let at_labels = full_logits.view([-1, c.vocab_size]).index_select(0, &labels.view([-1]).ne(-100).nonzero().squeeze_dim(1));
    assert!(max_abs(&(&out.logits - &at_labels)) <= 1e-5, "logits differ from the whole head's at the labelled rows");
    let got = grads(&opt, &out.loss, "mlm_head.");
    assert_eq!(got.len(), expected_grads.len());
    for ((name, g), (_, e)) in got.iter().zip(&expected_grads) {
        let scale = max_abs(e).max(1e-6);
        let diff = max_abs(&(g - e));
        assert!(diff.is_finite() && diff <= 1e-5 * scale, "{name}: gradient differs by {diff} (scale {scale})");
    }

    // no label at all: upstream's NaN loss, and an all-zero gradient
    let none = objectives::mlm_from(&m, text(), &minus).unwrap();
    assert!(f64::try_from(&none.loss).unwrap().is_nan() && none.logits.size() == [0, c.vocab_size]);
    let zero = grads(&opt, &none.loss, "mlm_head.");
    assert_eq!(zero.len(), expected_grads.len());
    for (name, g) in zero {
        assert_eq!(max_abs(&g), 0.0, "{name}");
    }

    // labels of another shape, or outside the vocabulary, are an error naming them
    for bad in [Tensor::zeros([3, 7], (Kind::Int64, Device::Cpu)), labels.ones_like() * c.vocab_size] {
        let err = objectives::mlm_from(&m, text(), &bad).expect_err("bad labels").to_string();
        assert!(err.contains("text_labels_mlm"), "{err}");
    }
}

/// The MIM pass runs fusion layers below `mim_layer` only (the language stream of the last
/// of them not at all), and none with `mim_layer` 0; its loss, its decoder's input and its
/// gradients equal the whole pass's.
#[test]
fn mim_pass_stops_at_mim_layer() {
    for mim_layer in [-1i64, 0, 1, 2] {
        let mut c = tiny_config();
        c.num_top_layer = 3;
        c.mim_layer = mim_layer;
        let (vs, m) = build(&c);
        let b = batch(2);
        let noise = Tensor::rand([2, 4], (Kind::Float, Device::Cpu));
        let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: Some(&noise) };

        // upstream's: the whole pass (a traced one runs every layer)
        let before = fusion_layers_run();
        let whole = objectives::compute_mim(&m, &input, &InferOptions { keep_intermediates: true, ..Default::default() }).unwrap();
        let after = fusion_layers_run();
        assert_eq!((after.text - before.text, after.image - before.image), (3, 3), "mim_layer {mim_layer}: the whole pass");
        let opt = AdamW::new(&vs, &c);
        let expected = grads(&opt, &whole.loss, "");

        let before = fusion_layers_run();
        let short = objectives::compute_mim(&m, &input, &InferOptions::default()).unwrap();
        let after = fusion_layers_run();
        let stop = if mim_layer < 0 { 3 } else { mim_layer as u64 };
        let ran = (after.text - before.text, after.image - before.image);
        assert_eq!(ran, (stop.saturating_sub(1), stop), "mim_layer {mim_layer}: (language, vision) layers run");
        assert!(short.infer.is_none(), "the short pass has no whole infer");

        let d = (f64::try_from(&short.loss).unwrap() - f64::try_from(&whole.loss).unwrap()).abs();
        assert!(d <= 1e-6, "mim_layer {mim_layer}: loss {} vs {}", short.loss, whole.loss);
        assert!(max_abs(&(&short.masking.image_feats_for_decoder - &whole.masking.image_feats_for_decoder)) <= 1e-6);
        assert_eq!(short.masking.masks, whole.masking.masks);
        let got = grads(&opt, &short.loss, "");
        assert_eq!(got.iter().map(|g| &g.0).collect::<Vec<_>>(), expected.iter().map(|g| &g.0).collect::<Vec<_>>(), "mim_layer {mim_layer}: the same parameters reached");
        for ((name, g), (_, e)) in got.iter().zip(&expected) {
            let scale = max_abs(e).max(1e-6);
            let diff = max_abs(&(g - e));
            assert!(diff <= 1e-5 * scale, "mim_layer {mim_layer}, {name}: gradient differs by {diff} (scale {scale})");
        }
    }
}
