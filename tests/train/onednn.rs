//! The oneDNN route of linear layers over whole demo-sized runs: the demo's model and data
//! (`demo::presets`, `m3ae data synth`), every linear layer forced onto oneDNN, where a
//! fallback to at::linear is an error. Pre-training, then VQA and retrieval fine-tuning from
//! its checkpoint, each a few steps with a validation, must finish without one.
use m3ae::data::synth::{generate, SynthOptions};
use m3ae::data::tokenizer::TextTokenizer;
use m3ae::demo::presets::{self, Schedule};
use m3ae::model::linear::{self, with_cpu_gemm, CpuGemm};
use m3ae::train::task::Task;
use m3ae::train::trainer::{fit, Outcome, RunOptions};
use serde_json::{json, Value};
use tch::Device;

use super::common::{scratch, sets};

#[test]
fn demo_sized_runs_take_the_onednn_route_without_a_fallback() {
    if !linear::forced_route_testable("demo_sized_runs_take_the_onednn_route_without_a_fallback") {
        return;
    }
    let dir = scratch("onednn-demo");
    let data = dir.join("data");
    // the demo's generator at a few dozen images (its tokenizer, 128-px PNGs)
    let synth = SynthOptions { pretrain_images: [24, 8, 1], vqa_questions: [16, 8, 1], irtr_images: [8, 4, 1], ..SynthOptions::default() };
    let s = generate(&synth, &data).unwrap();
    let vocab = TextTokenizer::load(&s.tokenizer_dir, presets::MAX_TEXT_LEN).unwrap().vocab_size();
    let write = |path: &std::path::Path, v: &Value| std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    write(&s.tokenizer_dir.join("config.json"), &presets::roberta_config(vocab, presets::MAX_TEXT_LEN));
    let model = dir.join("model.json");
    write(&model, &presets::model_config(&data.display().to_string(), &s.tokenizer_dir.display().to_string(), vocab));
    let schedule = Schedule { batch: 8, ..Schedule::new(presets::Size::Quick) };
    let opts = |task: Task, name: &str, mut o: Vec<(String, Value)>, extra: Value| {
        o.extend(sets(json!({"num_workers": 0, "log_every_n_steps": 1})));
        o.extend(sets(extra));
        RunOptions { task, run_dir: dir.join(name), config_file: Some(model.clone()), overrides: o, resume: false, device: Device::Cpu }
    };
    let pretrain = dir.join("pretrain").join("checkpoints/last");
    let runs = [
        opts(Task::pretrain(), "pretrain", presets::pretrain_sets(&schedule), json!({"max_steps": 3})),
        opts(Task::finetune("vqa_vqa_rad").unwrap(), "vqa", presets::finetune_sets("vqa_vqa_rad", &schedule, s.answer_vocab), json!({"max_steps": 2, "load_path": pretrain})),
        opts(Task::finetune("irtr_roco").unwrap(), "irtr", presets::finetune_sets("irtr_roco", &schedule, s.answer_vocab), json!({"max_steps": 2, "load_path": pretrain})),
    ];
    for run in &runs {
        let before = linear::route_counts();
        let summary = with_cpu_gemm(CpuGemm::OneDnnAlways, || fit(run)).unwrap_or_else(|e| panic!("{}: {e}", run.run_dir.display()));
        assert_eq!(summary.outcome, Outcome::Finished);
        assert!(summary.last_validation.is_some(), "{}: the run validates at its end", run.run_dir.display());
        linear::check_no_fallback().unwrap();
        let after = linear::route_counts();
        // every layer of every forward (training and validation) went to oneDNN
        assert!(after.onednn > before.onednn + 20, "{}: {before:?} -> {after:?}", run.run_dir.display());
    }
}

/// `M3AE_ONEDNN_FALLBACK` takes `warn` or `error`; anything else stops `m3ae` before any work,
/// naming the variable.
#[test]
fn a_misspelt_fallback_switch_is_an_error() {
    let plot = |value: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae")).args(["plot", "/nonexistent-run"]).env("M3AE_ONEDNN_FALLBACK", value).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = plot("eror");
    assert_eq!(code, Some(2));
    assert!(err.contains("M3AE_ONEDNN_FALLBACK=\"eror\": expected \"warn\" or \"error\""), "{err}");
    // accepted values go on to the command (whose own error names the missing run)
    for value in ["warn", "error"] {
        let (_, err) = plot(value);
        assert!(err.contains("nonexistent-run/metrics.jsonl") && !err.contains("M3AE_ONEDNN_FALLBACK"), "{value}: {err}");
    }
}

/// `M3AE_CPU_GEMM=onednn` asks for a route: where oneDNN's fp32 matmul does not run on this
/// CPU, `m3ae` refuses before any work, naming the variable, the reason and the way out; where
/// it runs, the command goes on (here to its own error, the missing run).
#[test]
fn asking_for_onednn_where_it_cannot_run_is_an_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae")).args(["plot", "/nonexistent-run"]).env("M3AE_CPU_GEMM", "onednn").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    match linear::onednn_available() {
        Ok(()) => assert!(err.contains("nonexistent-run/metrics.jsonl") && !err.contains("M3AE_CPU_GEMM"), "{err}"),
        Err(why) => {
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("M3AE_CPU_GEMM=onednn") && err.contains(&why) && err.contains("unset it or use blas"), "{err}");
        }
    }
}
