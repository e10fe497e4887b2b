//! Parity for training and evaluation against upstream's own code (parity/train-vqa,
//! parity/train-irtr; format in parity/FORMAT.md "Training sets"): `m3ae test` reproduces
//! upstream's VQA scores and IRTR recalls exactly, and `m3ae finetune` its `vqa/train/loss`
//! within 1e-4 relative, through the real pipeline (Arrow files, tokenizer, transforms).
use std::path::{Path, PathBuf};

use m3ae::model::linear::{with_cpu_gemm, CpuGemm};
use m3ae::train::evaluate::{test, TestOptions};
use m3ae::train::task::Task;
use m3ae::train::trainer::{fit, Outcome, RunOptions};
use serde_json::{json, Value};
use tch::Device;

fn set(name: &str) -> PathBuf {
    super::super::parity_dir().join(name)
}

fn manifest(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(set(name).join("manifest.json")).unwrap()).unwrap()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m3ae-train-parity-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The set's data and tokenizer folders, as absolute paths (its config names them relatively).
fn paths(name: &str) -> Vec<(String, Value)> {
    let s = set(name);
    vec![("data_root".into(), json!(s.join("data"))), ("tokenizer".into(), json!(s.join("tokenizer")))]
}

/// upstream computed in float32: compare as float32, exactly.
fn f32_eq(ours: f64, theirs: &Value) -> bool {
    ours as f32 == theirs.as_f64().unwrap() as f32
}

fn rel(ours: f64, theirs: &Value) -> f64 {
    let t = theirs.as_f64().unwrap();
    (ours - t).abs() / t.abs().max(1e-12)
}

fn test_vqa(checkpoint: &Path, tag: &str) -> m3ae::train::evaluate::Evaluation {
    let o = TestOptions {
        task: Task::finetune("vqa_vqa_rad").unwrap(),
        run_dir: scratch(tag),
        checkpoint: checkpoint.display().to_string(),
        split: "test".into(),
        overrides: paths("train-vqa"),
        device: Device::Cpu,
    };
    test(&o).unwrap()
}

fn check_vqa_scores(ev: &m3ae::train::evaluate::Evaluation, expected: &Value) {
    for (ours, theirs) in [("vqa/test/score_epoch", "vqa/test/score"), ("vqa/test/close_score_epoch", "vqa/test/close_score"), ("vqa/test/open_score_epoch", "vqa/test/open_score")] {
        let v = ev.get(ours).unwrap();
        assert!(f32_eq(v, &expected[theirs]), "{ours} {v} vs upstream {}", expected[theirs]);
    }
    let loss = ev.get("vqa/test/loss_epoch").unwrap();
    assert!(rel(loss, &expected["vqa/test/loss"]) <= 1e-4, "loss {loss} vs {}", expected["vqa/test/loss"]);
}

#[test]
fn vqa_test_scores_of_the_initial_weights_equal_upstreams() {
    let ev = test_vqa(&set("train-vqa").join("model"), "vqa-test");
    check_vqa_scores(&ev, &manifest("train-vqa")["expected"]["test"]);
}

/// Full-batch fine-tuning with dropout off: each step's `vqa/train/loss` (before its update)
/// within 1e-4 of upstream's, and the test scores after the last step equal.
#[test]
fn vqa_finetune_losses_and_scores_after_equal_upstreams() {
    finetune_against_upstream("vqa-finetune");
}

/// The same run with every linear layer on the oneDNN route of large models.
#[test]
fn vqa_finetune_through_onednn_equals_upstreams() {
    if !m3ae::model::linear::forced_route_testable("vqa_finetune_through_onednn_equals_upstreams") {
        return;
    }
    with_cpu_gemm(CpuGemm::OneDnnAlways, || finetune_against_upstream("vqa-finetune-onednn"));
    m3ae::model::linear::check_no_fallback().unwrap();
}

/// The same run in `precision: "bf16"` (CPU autocast): each step's loss and the test loss
/// after it within the bf16 forward bound of tests/parity/bf16.rs (6·√(3D)·2⁻⁸ relative, D
/// the model's GEMM depth) of upstream's fp32 values.
#[test]
fn vqa_finetune_in_bf16_tracks_upstreams_fp32() {
    let run = scratch("vqa-finetune-bf16");
    let d = super::bf16::depth(&super::bf16::layers_of(&set("train-vqa").join("model/model.safetensors")));
    let bound = super::bf16::forward_bound(d);
    // accuracy is what this checks: a CPU without bf16 instructions emulates the same
    // roundings (its refusal is bf16_without_bf16_instructions_is_refused_unless_allowed's)
    m3ae::train::cpu_bf16::set_allow_slow(true);
    let logged = finetune_vqa_set(&run, &[("precision", json!("bf16"))]);
    let m = manifest("train-vqa");
    let steps = m["expected"]["train"]["steps"].as_array().unwrap();
    assert_eq!(logged.len(), steps.len(), "one vqa/train/loss per step");
    let mut worst: f64 = 0.0;
    for (i, (ours, step)) in logged.iter().zip(steps).enumerate() {
        let r = rel(*ours, &step["loss"]);
        worst = worst.max(r);
        assert!(r <= bound, "step {i}: bf16 vqa/train/loss {ours} vs upstream's fp32 {} (rel {r:.1e} > {bound:.3})", step["loss"]);
    }
    // `m3ae test` reads the run's config.json: bf16 too
    let o = TestOptions { task: Task::finetune("vqa_vqa_rad").unwrap(), run_dir: run.clone(), checkpoint: "last".into(), split: "test".into(), overrides: paths("train-vqa"), device: Device::Cpu };
    let ev = test(&o).unwrap();
    let after = &m["expected"]["test_after"];
    let loss = ev.get("vqa/test/loss_epoch").unwrap();
    let r = rel(loss, &after["vqa/test/loss"]);
    println!("bf16 fine-tune, depth {d}: worst step loss rel {worst:.2e}, test loss rel {r:.2e} (bound {bound:.3}); score {} vs fp32 {}", ev.get("vqa/test/score_epoch").unwrap(), after["vqa/test/score"]);
    assert!(r <= bound, "bf16 test loss {loss} vs upstream's fp32 {} (rel {r:.1e})", after["vqa/test/loss"]);
    // and it was bf16: fp32 reproduces upstream's losses within 1e-4
    assert!(worst > 1e-4, "the largest step-loss difference {worst:.1e} is fp32's: autocast did not run");
}

/// Fine-tunes on train-vqa from its initial weights with `extra` overrides; returns each
/// step's `vqa/train/loss`.
fn finetune_vqa_set(run: &Path, extra: &[(&str, Value)]) -> Vec<f64> {
    let s = set("train-vqa");
    let mut overrides = paths("train-vqa");
    overrides.extend([
        ("load_path".to_string(), json!(s.join("model"))),
        // the set's initial weights include its vqa_head: load them as upstream's test_only does
        ("test_only".to_string(), json!(true)),
        ("log_every_n_steps".to_string(), json!(1)),
    ]);
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let opts = RunOptions { task: Task::finetune("vqa_vqa_rad").unwrap(), run_dir: run.to_path_buf(), config_file: Some(s.join("config.json")), overrides, resume: false, device: Device::Cpu };
    let summary = fit(&opts).unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).unwrap().get("vqa/train/loss").and_then(Value::as_f64))
        .collect()
}

fn finetune_against_upstream(tag: &str) {
    let run = scratch(tag);
    let logged = finetune_vqa_set(&run, &[]);
    let m = manifest("train-vqa");
    let steps = m["expected"]["train"]["steps"].as_array().unwrap();
    assert_eq!(logged.len(), steps.len(), "one vqa/train/loss per step");
    for (i, (ours, step)) in logged.iter().zip(steps).enumerate() {
        let r = rel(*ours, &step["loss"]);
        assert!(r <= 1e-4, "step {i}: vqa/train/loss {ours} vs upstream {} (rel {r:.1e})", step["loss"]);
    }
    let ev = test_vqa(&run.join("checkpoints/last"), &format!("{tag}-after"));
    check_vqa_scores(&ev, &m["expected"]["test_after"]);
}

/// Recall@k of the initial weights on the val split (as upstream's test computes them), equal
/// to upstream's `compute_irtr_recall`, with several captions per image.
#[test]
fn irtr_recalls_equal_upstreams() {
    let o = TestOptions {
        task: Task::finetune("irtr_roco").unwrap(),
        run_dir: scratch("irtr"),
        checkpoint: set("train-irtr").join("model").display().to_string(),
        split: "val".into(),
        overrides: paths("train-irtr"),
        device: Device::Cpu,
    };
    let ev = test(&o).unwrap();
    let expected = &manifest("train-irtr")["expected"]["recalls"];
    for k in ["ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10"] {
        let v = ev.get(&format!("test/recalls/{k}")).unwrap();
        assert!(f32_eq(v, &expected[k]), "{k}: {v} vs upstream {}", expected[k]);
    }
}

/// `precision: "bf16"` on a CPU without bf16 instructions (features injected through
/// M3AE_TEST_CPU_FEATURES) stops before training with an error naming the missing features
/// and the way out; `--allow-slow-bf16` runs it, and the start-up log names the features
/// and the route.
#[test]
fn bf16_without_bf16_instructions_is_refused_unless_allowed() {
    let s = set("train-vqa");
    let run = |tag: &str, extra: &[&str]| {
        let dir = scratch(tag);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae"));
        cmd.args(extra).args(["finetune", "vqa_vqa_rad", "--run-dir"]).arg(&dir).arg("--config").arg(s.join("config.json")).arg("--set");
        for (k, v) in paths("train-vqa").into_iter().chain([("load_path".to_string(), json!(s.join("model")))]) {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(["test_only=true", "max_steps=1", "precision=\"bf16\""]).env(m3ae::train::cpu_bf16::TEST_FEATURES_ENV, "avx512f,avx2,fma");
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), dir)
    };
    let (code, err, dir) = run("bf16-refused", &[]);
    assert_eq!(code, Some(2), "{err}");
    for part in ["amx_bf16", "avx512_bf16", "--allow-slow-bf16", "precision"] {
        assert!(err.contains(part), "the refusal should name `{part}`: {err}");
    }
    assert!(!dir.join("checkpoints").exists(), "refused before any training");
    let (code, log, _) = run("bf16-allowed", &["--allow-slow-bf16"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("CPU bf16 features (M3AE_TEST_CPU_FEATURES): amx_bf16 no, avx512_bf16 no") && log.contains("emulated"), "{log}");
}
