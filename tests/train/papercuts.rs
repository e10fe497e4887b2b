//! Small things a user meets (issue 18, papercuts): samples/s after a validation, the end-of-run
//! line, `num_workers=0`, and `--resume --set max_steps=N`.
use std::time::{Duration, Instant};

use m3ae::data::loader::Loader;
use m3ae::train::log::{end_line, Throughput};
use m3ae::train::setup::{resolve, Pipeline};
use m3ae::train::state::TrainerState;
use m3ae::train::trainer::{fit, FitSummary, Outcome};
use serde_json::json;

use crate::common::*;

/// 10 samples in 1 s, a 10 s validation, 10 more samples in 1 s: 10 samples/s, not 20/12.
#[test]
fn samples_per_second_leaves_out_the_validation() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut t = Throughput::start(t0);
    t.add(10);
    assert!((t.rate(at(1)) - 10.0).abs() < 1e-9);
    t.exclude(Duration::from_secs(10));
    t.add(10);
    let rate = t.rate(at(12));
    assert!((rate - 10.0).abs() < 1e-9, "{rate} samples/s: the validation's 10 s were counted");
}

/// The end-of-run line prints numbers, never `Some(…)`.
#[test]
fn the_end_line_prints_values_not_options() {
    let mut state = TrainerState::new(6, 1);
    (state.step, state.epoch, state.best_metric, state.best_step) = (6, 2, Some(0.25), Some(3));
    let summary = FitSummary { outcome: Outcome::Finished, state, last_validation: None };
    assert_eq!(end_line(&summary), "finished at step 6 of 6 (epoch 2); best val/the_metric 0.250000 at step 3");
    let summary = FitSummary { outcome: Outcome::EarlyStopped, state: TrainerState::new(4, 1), last_validation: None };
    assert_eq!(end_line(&summary), "stopped early at step 0 of 4 (epoch 0); no finite val/the_metric yet");
}

/// `num_workers=0` is honoured, not turned into 1: the split's loader has no worker thread and
/// builds each batch where it is asked for, the same batches as two workers build.
#[test]
fn num_workers_zero_loads_in_the_calling_thread() {
    let o = vqa_opts(&scratch("workers-zero"), json!({"num_workers": 0}));
    let config = resolve(&o.task, o.config_file.as_deref(), &o.overrides).unwrap().config;
    let pipe = Pipeline::new(&config).unwrap();
    let split = pipe.split("train", true).unwrap();
    assert_eq!(split.loader.workers, 0, "num_workers 0 became {}", split.loader.workers);
    let load = |workers: usize| -> Vec<m3ae::data::collate::Batch> {
        let cfg = m3ae::data::loader::LoaderConfig { workers, ..split.loader.clone() };
        let loader = Loader::new(split.data.clone(), pipe.tokenizer.clone(), split.transforms.clone(), pipe.collator(), cfg, 1).unwrap();
        loader.map(Result::unwrap).collect()
    };
    let (inline, threads) = (load(0), load(2));
    assert!(!inline.is_empty());
    assert_eq!(inline.len(), threads.len());
    for (a, b) in inline.iter().zip(&threads) {
        assert_eq!((&a.indices, &a.seeds), (&b.indices, &b.seeds));
        assert!(a.image.iter().zip(&b.image).all(|(x, y)| x.equal(y)));
        assert!(a.text.ids.equal(&b.text.ids));
    }
}

/// `--resume --set max_steps=N` extends a finished run by N − step steps (also through the
/// command line); any other key, or a budget already spent, is refused.
#[test]
fn resume_can_extend_max_steps_and_nothing_else() {
    let dir = scratch("resume-extend");
    let o = vqa_opts(&dir, json!({"max_steps": 2, "num_workers": 0}));
    assert_eq!(run(&o).state.step, 2);
    let resume = |overrides: serde_json::Value| {
        let mut r = o.clone();
        (r.resume, r.config_file, r.overrides) = (true, None, sets(overrides));
        r
    };
    let e = fit(&resume(json!({"learning_rate": 1.0}))).unwrap_err().to_string();
    assert!(e.contains("`learning_rate` cannot change"), "{e}");
    let e = fit(&resume(json!({"max_steps": 2}))).unwrap_err().to_string();
    assert!(e.contains("max_steps 2 is not beyond the run's step 2"), "{e}");
    let s: FitSummary = run(&resume(json!({"max_steps": 3})));
    assert_eq!((s.state.step, s.state.max_steps), (3, 3));
    // the command line: --resume with --set max_steps=4
    let status = command(&resume(json!({"max_steps": 4}))).status().unwrap();
    assert!(status.success());
    let steps: Vec<u64> = series(&dir, "vqa/train/loss").iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    let mut refused = command(&resume(json!({"max_steps": 6, "seed": 1})));
    let out = refused.stderr(std::process::Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every --set but max_steps=N"));
}
