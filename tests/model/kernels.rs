//! The port's own CPU kernels against what they replace: oneDNN linear layers against
//! at::linear, the one-pass dropout against ATen's dropout, the [CLS]-only last fusion layer
//! against the full pass, the text cut to its used columns against the padded width.
use m3ae::model::dropout::{dropout, fused_dropout};
use m3ae::model::linear::{self, with_cpu_gemm, CpuGemm};
use m3ae::model::{InferInput, InferOptions};
use m3ae::train::objectives;
use tch::nn::Module;
use tch::{Device, Kind, Tensor};

use crate::{batch, build, tiny_config};

/// SDPA (the production attention path) against the explicit softmax(QKᵀ)V.
#[test]
fn fused_attention_matches_the_explicit_path() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(2);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let fast = m.infer(&input, &InferOptions::default()).unwrap();
    let slow = m.infer(&input, &InferOptions { output_attentions: true, ..Default::default() }).unwrap();
    let err = f64::try_from((fast.multi_modal_cls_feats - &slow.multi_modal_cls_feats).abs().max()).unwrap();
    assert!(err < 1e-6, "SDPA and softmax(QK^T)V paths differ by {err}");
    assert_eq!(slow.attentions.len(), 2);
    // attention rows are distributions; padded text keys get no weight
    let probs = &slow.attentions[0].image_cross; // [B, H, Lv, Lt]
    let row_sums = probs.sum_dim_intlist(-1, false, Kind::Float);
    assert!(row_sums.allclose(&row_sums.ones_like(), 1e-5, 1e-5, false));
    assert_eq!(f64::try_from(probs.narrow(3, 6, 2).abs().max()).unwrap(), 0.0);
}

/// n pseudo-random values in [-amplitude/2, amplitude/2) from a formula (the shader hash
/// fract(sin(i·12.9898 + phase)·43758.5453)), not the global generator: tests here run in
/// parallel and reseed it.
fn noise(n: i64, phase: f64, amplitude: f64) -> Tensor {
    let h = (Tensor::arange(n, (Kind::Double, Device::Cpu)) * 12.9898 + phase).sin() * 43758.5453;
    ((&h - h.floor() - 0.5) * amplitude).to_kind(Kind::Float)
}

/// x [2, 150, 768] (300 rows) → 1024: 236 M multiply-adds, above oneDNN's threshold.
fn big_linear(gemm: CpuGemm) -> (Tensor, Tensor, Tensor, Tensor) {
    let wave = |shape: &[i64], phase: f64, amplitude: f64| {
        let n: i64 = shape.iter().product();
        noise(n, phase, amplitude).view(shape).set_requires_grad(true)
    };
    let (x, w, b) = (wave(&[2, 150, 768], 0.1, 1.0), wave(&[1024, 768], 0.2, 0.03), wave(&[1024], 0.3, 1.0));
    let y = with_cpu_gemm(gemm, || linear::linear(&x, &w, Some(&b)));
    assert_eq!(y.size(), [2, 150, 1024]);
    // a loss whose gradient differs per output column
    (&y * Tensor::arange(1024, (Kind::Float, Device::Cpu)).sin()).sum(Kind::Float).backward();
    (y.detach(), x.grad(), w.grad(), b.grad())
}

/// The scale a float sum's rounding error is measured against: the largest sum of the
/// absolute values of its terms (|x|·|w|ᵀ for y, and so on).
fn abs_sum_scales() -> [f64; 4] {
    let f = |t: Tensor| t.abs().max().double_value(&[]);
    let wave = |shape: &[i64], phase: f64, amplitude: f64| {
        let n: i64 = shape.iter().product();
        noise(n, phase, amplitude).view(shape).abs()
    };
    let (x, w, b) = (wave(&[300, 768], 0.1, 1.0), wave(&[1024, 768], 0.2, 0.03), wave(&[1024], 0.3, 1.0));
    let g = Tensor::arange(1024, (Kind::Float, Device::Cpu)).sin().abs().expand([300, 1024], false);
    [f(x.matmul(&w.tr()) + b), f(g.matmul(&w)), f(g.tr().matmul(&x)), f(g.sum_dim_intlist(0, false, Kind::Float))]
}

/// The oneDNN route of large fp32 linear layers computes at::linear's values and
/// gradients (fp32, another summation order), and is really taken: its bits differ.
#[test]
fn onednn_linear_equals_blas_forward_and_backward() {
    if !linear::forced_route_testable("onednn_linear_equals_blas_forward_and_backward") {
        return;
    }
    assert!(tch::utils::has_mkldnn(), "this libtorch has no oneDNN");
    assert!(linear::uses_onednn(CpuGemm::OneDnn, 300, 768, 1024));
    let blas = big_linear(CpuGemm::Blas);
    let dnn = big_linear(CpuGemm::OneDnn);
    let scales = abs_sum_scales();
    for (i, (name, a, b)) in [("y", &blas.0, &dnn.0), ("x.grad", &blas.1, &dnn.1), ("w.grad", &blas.2, &dnn.2), ("b.grad", &blas.3, &dnn.3)].into_iter().enumerate() {
        let err = (a - b).abs().max().double_value(&[]) / scales[i];
        assert!(err < 1e-6, "{name}: oneDNN differs from at::linear by {err:.2e} of its terms' absolute sum");
    }
    assert!(!blas.0.equal(&dnn.0), "the oneDNN route gave at::linear's exact bits: it was not taken");
    // small GEMMs and GEMV-like heads stay on at::linear
    assert!(!linear::uses_onednn(CpuGemm::OneDnn, 544, 64, 64));
    assert!(!linear::uses_onednn(CpuGemm::OneDnn, 64, 768, 768));
    assert!(linear::uses_onednn(CpuGemm::OneDnn, 160, 768, 768));
    assert!(!linear::uses_onednn(CpuGemm::Blas, 788, 768, 3072));
}

/// A layer without a bias (the MLM decoder's) through the forced route: at::linear's values
/// and gradients, and no fallback (the shim once passed the absent bias as an undefined
/// tensor, which autograd's Function::apply refused).
#[test]
fn onednn_linear_without_a_bias_takes_the_route() {
    if !linear::forced_route_testable("onednn_linear_without_a_bias_takes_the_route") {
        return;
    }
    let x = noise(40 * 96, 0.4, 1.0).view([2, 20, 96]).set_requires_grad(true);
    let w = noise(80 * 96, 0.5, 0.1).view([80, 96]).set_requires_grad(true);
    let g = Tensor::arange(80, (Kind::Float, Device::Cpu)).sin();
    let run = |gemm| {
        let y = with_cpu_gemm(gemm, || linear::linear(&x, &w, None));
        (&y * &g).sum(Kind::Float).backward();
        let out = (y.detach(), x.grad().copy(), w.grad().copy());
        let _ = (x.grad().zero_(), w.grad().zero_());
        out
    };
    let blas = run(CpuGemm::Blas);
    let before = linear::route_counts();
    let dnn = run(CpuGemm::OneDnnAlways);
    linear::check_no_fallback().unwrap();
    assert!(linear::route_counts().onednn > before.onednn, "the call did not go to oneDNN");
    // |x| < 0.5, |w| < 0.05, |g| ≤ 1: a sum of n terms each below t, in any order, is within
    // n·2⁻²⁴·(n·t) of the exact sum; two orders differ by at most twice that
    let bound = |n: f64, t: f64| 2.0 * n * n * t / (1u64 << 24) as f64;
    for (name, a, b, tol) in [("y", &blas.0, &dnn.0, bound(96.0, 0.025)), ("x.grad", &blas.1, &dnn.1, bound(80.0, 0.05)), ("w.grad", &blas.2, &dnn.2, bound(40.0, 0.5))] {
        let err = (a - b).abs().max().double_value(&[]);
        assert!(err < tol, "{name}: oneDNN differs from at::linear by {err:.2e} (bound {tol:.2e})");
    }
}

/// The route's probe agrees with torch 2.11's rule for `mkldnn_matmul` (its
/// `mkldnn_bf16_device_check`, applied to fp32 calls too): it runs on x86 CPUs with avx512bw,
/// avx512vl and avx512dq, or avx_ne_convert. Where it does not run, a call forced onto it
/// still gives at::linear's values and is reported as an error, not lost.
#[test]
fn onednn_route_is_probed_by_the_cpus_features() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let flags: Vec<&str> = cpuinfo.lines().find(|l| l.starts_with("flags")).expect("a flags line").split_whitespace().collect();
    let has = |f: &str| flags.contains(&f);
    let expected = (has("avx512bw") && has("avx512vl") && has("avx512dq")) || has("avx_ne_convert");
    let probe = linear::onednn_available();
    assert_eq!(probe.is_ok(), expected, "probe {probe:?}; CPU flags avx512bw/vl/dq, avx_ne_convert: {}", ["avx512bw", "avx512vl", "avx512dq", "avx_ne_convert"].map(has).map(|b| b.to_string()).join("/"));
    if let Err(why) = probe {
        assert!(why.contains("mkldnn_matmul"), "the reason names torch's refusal: {why}");
        assert_eq!(linear::cpu_gemm(), CpuGemm::Blas, "no layer takes a route that cannot run");
        let x = noise(6 * 8, 0.1, 1.0).view([6, 8]);
        let w = noise(4 * 8, 0.2, 1.0).view([4, 8]);
        let forced = with_cpu_gemm(CpuGemm::OneDnnAlways, || linear::linear(&x, &w, None));
        assert!(forced.equal(&x.linear::<Tensor>(&w, None)), "the forced call's values are at::linear's");
        let err = linear::check_no_fallback().expect_err("a forced call that failed is reported");
        assert!(err.to_string().contains("mkldnn_matmul"), "{err}");
    }
}

/// n values in [1, 2): no zeros, so a zero in the output marks a dropped element.
fn positive(n: i64, phase: f64) -> Tensor {
    noise(n, phase, 1.0) + 1.5
}

/// Kept where the output is not 0 (the input has no zeros).
fn kept(y: &Tensor) -> Tensor {
    y.ne(0.0)
}

fn mean(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// Each element is kept with probability 1-p, independently of its position and of its
/// neighbour, and kept values are x · (1/(1-p)) with ATen's float scale, bit for bit.
#[test]
fn fused_dropout_keeps_one_minus_p_at_atens_scale() {
    let n = 1 << 20;
    let x = positive(n, 0.4);
    for p in [0.1, 0.5, 0.9] {
        let y = fused_dropout(&x, p).unwrap();
        let k = kept(&y);
        let q = 1.0 - p;
        // six standard deviations of a binomial mean
        let sd = |m: i64| (q * p / m as f64).sqrt() * 6.0;
        let frac = mean(&k);
        assert!((frac - q).abs() < sd(n), "p {p}: kept {frac}, expected {q} ± {}", sd(n));
        // position: each of 64 blocks keeps its share
        let blocks = k.view([64, -1]).to_kind(Kind::Double).mean_dim(1, false, Kind::Double);
        let worst = (blocks - q).abs().max().double_value(&[]);
        assert!(worst < sd(n / 64), "p {p}: a block of {} keeps {worst} away from {q}", n / 64);
        // neighbours: P(i and i+1 kept) = q²
        let both = mean(&k.narrow(0, 0, n - 1).logical_and(&k.narrow(0, 1, n - 1)));
        assert!((both - q * q).abs() < 6.0 * (q * q * (1.0 - q * q) / n as f64).sqrt(), "p {p}: neighbours both kept {both}, expected {}", q * q);
        // ATen: noise = bernoulli(1-p).div_(1-p) (a float), x * noise
        let scaled = &x * f64::from(1.0f32 / q as f32);
        assert!(y.masked_select(&k).equal(&scaled.masked_select(&k)), "p {p}: kept values are not x · (1/(1-p))");
    }
    // two calls draw two masks
    let (a, b) = (kept(&fused_dropout(&x, 0.5).unwrap()), kept(&fused_dropout(&x, 0.5).unwrap()));
    let same = mean(&a.eq_tensor(&b));
    assert!((same - 0.5).abs() < 0.01, "two draws agree on {same} of the elements, expected 0.5");
}

/// d(Σ g·y)/dx = g · (1/(1-p)) where kept, 0 where dropped: the forward's own mask.
#[test]
fn fused_dropout_backward_uses_the_forward_mask() {
    let x = positive(4 * 197 * 768, 0.7).view([4, 197, 768]).set_requires_grad(true);
    let g = noise(4 * 197 * 768, 0.9, 2.0).view([4, 197, 768]);
    let y = fused_dropout(&x, 0.1).unwrap();
    (&y * &g).sum(Kind::Float).backward();
    let expected = (&g * f64::from(1.0f32 / 0.9f32)) * kept(&y.detach()).to_kind(Kind::Float);
    assert!(x.grad().equal(&expected), "the gradient is not the forward's mask times the scale");
}

/// What `dropout` does around the kernel: nothing in eval or at p = 0, the kernel for fp32
/// CPU (also on a non-contiguous input), nothing kept at p = 1, NaN kept as ATen keeps it.
#[test]
fn dropout_edges() {
    let x = positive(6 * 5, 0.2).view([6, 5]);
    assert!(dropout(&x, 0.3, false).equal(&x), "eval changes nothing");
    assert!(dropout(&x, 0.0, true).equal(&x), "p = 0 changes nothing");
    assert_eq!(dropout(&x, 1.0, true).count_nonzero(None).int64_value(&[]), 0, "p = 1 keeps nothing");
    let t = positive(64 * 48, 0.3).view([64, 48]).tr(); // [48, 64], non-contiguous
    let y = dropout(&t, 0.5, true);
    assert_eq!(y.size(), [48, 64]);
    let k = kept(&y);
    assert!(y.masked_select(&k).equal(&(&t * 2.0).masked_select(&k)), "a transposed input's kept values are not x · 2");
    // x · 0 is NaN for a NaN: a dropped NaN still shows (ATen multiplies by its mask too)
    let nan = Tensor::full([1 << 12], f64::NAN, (Kind::Float, Device::Cpu));
    assert_eq!(dropout(&nan, 0.5, true).isnan().all().int64_value(&[]), 1, "a dropped NaN became a number");
}

/// The [CLS]-only last fusion layer (fine-tuning heads, ITM, retrieval) computes the full
/// pass's pooled features and the same gradients.
#[test]
fn cls_only_fusion_equals_the_full_pass() {
    let (vs, m) = build(&tiny_config());
    let b = batch(3);
    let input = InferInput { image: &b.image, text_ids: &b.ids, text_masks: &b.masks, text_ids_mlm: None, mim_noise: None };
    let full = m.infer(&input, &InferOptions::default()).unwrap();
    let cls = m.infer(&input, &InferOptions { cls_only: true, ..Default::default() }).unwrap();
    assert_eq!(cls.multi_modal_text_feats.size(), [3, 1, 32]);
    assert_eq!(cls.multi_modal_image_feats.size(), [3, 1, 32]);
    let err = (&full.multi_modal_cls_feats - &cls.multi_modal_cls_feats).abs().max().double_value(&[]);
    assert!(err < 1e-6, "cls_feats differ by {err}");
    let row0 = (full.multi_modal_image_feats.narrow(1, 0, 1) - &cls.multi_modal_image_feats).abs().max().double_value(&[]);
    assert!(row0 < 1e-6, "the image stream's [CLS] row differs by {row0}");
    // attentions need every position: the option is ignored with them
    let attn = m.infer(&input, &InferOptions { cls_only: true, output_attentions: true, ..Default::default() }).unwrap();
    assert_eq!(attn.multi_modal_text_feats.size(), [3, 8, 32]);
    // gradients: compute_vqa (cls_only) against the full pass through the same head
    let targets = noise(3 * 5, 0.5, 1.0).abs().view([3, 5]);
    let grads = |loss: Tensor| {
        for (_, mut v) in vs.variables() {
            v.zero_grad();
        }
        loss.backward();
        let mut g: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, if v.grad().defined() { v.grad().copy() } else { v.grad() })).collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    };
    let fast = grads(objectives::compute_vqa(&m, &input, &targets, &InferOptions::default()).unwrap().loss);
    let logits = m.vqa_head.as_ref().unwrap().forward(&m.infer(&input, &InferOptions::default()).unwrap().multi_modal_cls_feats);
    let slow = grads(objectives::vqa_loss(&logits, &targets));
    let largest = |t: &Tensor| if t.defined() && t.numel() > 0 { t.abs().max().double_value(&[]) } else { 0.0 };
    let overall = slow.iter().map(|(_, g)| largest(g)).fold(0.0, f64::max);
    let mut checked = 0;
    for ((k, a), (_, b)) in fast.iter().zip(&slow) {
        if !a.defined() || a.numel() == 0 {
            assert!(!b.defined() || largest(b) == 0.0, "{k}: the full pass has a gradient, the [CLS]-only one none");
            continue;
        }
        // (some gradients are 0 in exact arithmetic, e.g. a key bias under softmax, and
        // only rounding in float: those are measured against the model's largest gradient)
        let scale = largest(b).max(overall * 1e-3);
        let err = (a - b).abs().max().double_value(&[]) / scale;
        assert!(err < 1e-5, "{k}: gradients differ by {err:.2e} of their largest value");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} gradients compared");
}

/// The trainer cuts a step's texts after the last column they use (`Batch::cut_text`): the
/// VQA and MLM losses and the pooled features of texts of different lengths (and a masked
/// hole) are those of the full, padded width.
#[test]
fn cutting_unused_text_columns_changes_no_loss() {
    let (_vs, m) = build(&tiny_config());
    let b = batch(3);
    let masks = Tensor::from_slice2(&[[1i64, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0, 0, 0]]);
    let ids = b.ids.where_self(&masks.ne(0), &Tensor::from(1i64));
    let labels = Tensor::full([3, 8], -100, (Kind::Int64, Device::Cpu));
    let _ = labels.get(0).get(4).fill_(7);
    let _ = labels.get(2).get(1).fill_(9);
    let ids_mlm = ids.where_self(&labels.eq(-100), &Tensor::from(4i64));
    let targets = noise(3 * 5, 0.5, 1.0).abs().view([3, 5]);
    let losses = |n: i64| {
        let (ids, masks, ids_mlm, labels) = (ids.narrow(1, 0, n), masks.narrow(1, 0, n), ids_mlm.narrow(1, 0, n), labels.narrow(1, 0, n).contiguous());
        let input = InferInput { image: &b.image, text_ids: &ids, text_masks: &masks, text_ids_mlm: Some(&ids_mlm), mim_noise: None };
        let opts = InferOptions::default();
        let vqa = objectives::compute_vqa(&m, &input, &targets, &opts).unwrap().loss.double_value(&[]);
        let mlm = objectives::compute_mlm(&m, &input, &labels, &opts).unwrap().loss.double_value(&[]);
        let cls = m.infer(&input, &opts).unwrap().multi_modal_cls_feats;
        (vqa, mlm, cls)
    };
    let (vqa8, mlm8, cls8) = losses(8);
    let (vqa5, mlm5, cls5) = losses(5);
    assert!((vqa8 - vqa5).abs() <= 1e-6 * vqa8.abs(), "vqa loss {vqa8} at width 8, {vqa5} at 5");
    assert!((mlm8 - mlm5).abs() <= 1e-6 * mlm8.abs(), "mlm loss {mlm8} at width 8, {mlm5} at 5");
    let err = (cls8 - cls5).abs().max().double_value(&[]);
    assert!(err < 1e-6, "cls_feats differ by {err}");
}
