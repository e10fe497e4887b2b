//! Helpers shared by the suites that train (tests/train.rs, tests/ddp.rs): tiny runs built from
//! the training golden sets' fixtures, their metrics, the `m3ae` command line of a run, and
//! the comparison of two runs' weights.
#![allow(dead_code)] // each suite uses its own subset
use std::path::{Path, PathBuf};

use m3ae::train::task::{Task, TaskKind};
use m3ae::train::trainer::{fit, FitSummary, RunOptions};
use m3ae::weights::read_safetensors;
use serde_json::{json, Value};
use tch::{Device, Tensor};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn set(name: &str) -> PathBuf {
    root().join("parity").join(name)
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m3ae-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `{"k": v, …}` as `--set` overrides.
pub fn sets(v: Value) -> Vec<(String, Value)> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A pre-training data folder of the test `tag`'s own (tests of one binary run at once):
/// train-irtr's captioned images as `roco_{train,val,test}`.
pub fn pretrain_data(tag: &str) -> PathBuf {
    let d = scratch(&format!("{tag}-pretrain-data"));
    for split in ["train", "val", "test"] {
        std::fs::copy(set("train-irtr").join(format!("data/irtr_roco_{split}.arrow")), d.join(format!("roco_{split}.arrow"))).unwrap();
    }
    d
}

/// Makes the image of row 0 of `arrow` (train-irtr's `irtr_roco_*`, whose row 0 holds the
/// file's first PNG) undecodable: its PNG signature is overwritten in place, so the Arrow
/// file stays valid and only the image is corrupt.
pub fn corrupt_row_0_image(arrow: &Path) {
    let mut bytes = std::fs::read(arrow).unwrap();
    let at = bytes.windows(4).position(|w| w == b"\x89PNG").expect("a PNG image");
    bytes[at..at + 4].copy_from_slice(b"XXXX");
    std::fs::write(arrow, bytes).unwrap();
}

/// Pre-training options on train-irtr's model and data: tiny MIM decoder, 8-sample batches.
pub fn pretrain_opts(run: &Path, data: &Path, extra: Value) -> RunOptions {
    let s = set("train-irtr");
    let mut o = sets(json!({
        "data_root": data, "tokenizer": s.join("tokenizer"), "load_path": s.join("model"), "datasets": ["roco"],
        "loss_names": {"mlm": 1, "mim": 1, "itm": 1}, "draw_false_image": 1, "draw_false_text": 0, "get_recall_metric": false,
        "mim_decoder_hidden_size": 32, "mim_decoder_num_layers": 1, "mim_decoder_num_heads": 2, "mim_layer": -1,
        "mlm_prob": 0.3, "per_gpu_batchsize": 8, "batch_size": 8, "max_steps": 6, "warmup_steps": 0, "learning_rate": 1e-3,
        "log_every_n_steps": 1, "num_workers": 1,
    }));
    o.extend(sets(extra));
    RunOptions { task: Task::pretrain(), run_dir: run.into(), config_file: Some(s.join("config.json")), overrides: o, resume: false, device: Device::Cpu }
}

/// VQA fine-tuning options on train-vqa (its initial weights, heads included).
pub fn vqa_opts(run: &Path, extra: Value) -> RunOptions {
    let s = set("train-vqa");
    let mut o = sets(json!({
        "data_root": s.join("data"), "tokenizer": s.join("tokenizer"), "load_path": s.join("model"), "test_only": true,
        "log_every_n_steps": 1,
    }));
    o.extend(sets(extra));
    RunOptions { task: Task::finetune("vqa_vqa_rad").unwrap(), run_dir: run.into(), config_file: Some(s.join("config.json")), overrides: o, resume: false, device: Device::Cpu }
}

/// Every line of metrics.jsonl.
pub fn metrics(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    // a line being written by a running child may be incomplete: skip it
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `name` of every line that has it, by step.
pub fn series(run: &Path, name: &str) -> Vec<(u64, f64)> {
    metrics(run).iter().filter_map(|m| Some((m["step"].as_u64()?, m.get(name)?.as_f64()?))).collect()
}

pub fn run(o: &RunOptions) -> FitSummary {
    fit(o).unwrap_or_else(|e| panic!("{}: {e}", o.run_dir.display()))
}

/// The `m3ae` binary for `o`: the command line `m3ae pretrain` (or `finetune TASK`) would get.
pub fn command(o: &RunOptions) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae"));
    match o.task.kind {
        TaskKind::Pretrain => cmd.arg("pretrain"),
        _ => cmd.args(["finetune", o.task.name.as_str()]),
    };
    cmd.arg("--run-dir").arg(&o.run_dir);
    if o.resume {
        cmd.arg("--resume");
    }
    if let Some(c) = &o.config_file {
        cmd.arg("--config").arg(c);
    }
    for (k, v) in &o.overrides {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd
}


/// The largest difference between two runs' `checkpoints/last` weights, relative to each
/// tensor's largest value, with its key; and how many tensors moved away from `start`.
/// Attention key biases are left out: their gradient is zero in exact arithmetic, and Adam
/// turns their rounding noise into full-size steps, which no two summation orders share.
pub fn weight_difference(one: &Path, two: &Path, start: &Path) -> ((f64, String), usize) {
    let a = read_safetensors(&one.join("checkpoints/last/model.safetensors")).unwrap();
    let b = read_safetensors(&two.join("checkpoints/last/model.safetensors")).unwrap();
    let moved = read_safetensors(start).unwrap();
    let mut worst = (0.0f64, String::new());
    let mut changed = 0;
    for (k, t) in &a {
        if k.ends_with("key.bias") {
            continue;
        }
        let (t, u) = if k.ends_with("in_proj_bias") {
            let d = t.size()[0] / 3; // q, k, v: leave k out
            (Tensor::cat(&[t.narrow(0, 0, d), t.narrow(0, 2 * d, d)], 0), Tensor::cat(&[b[k].narrow(0, 0, d), b[k].narrow(0, 2 * d, d)], 0))
        } else {
            (t.shallow_clone(), b[k].shallow_clone())
        };
        let d = f64::try_from((&t - &u).abs().max()).unwrap();
        let scale = f64::try_from(t.abs().max()).unwrap().max(1e-6);
        if d / scale > worst.0 {
            worst = (d / scale, k.clone());
        }
        if moved.get(k).is_some_and(|m| !a[k].equal(m)) {
            changed += 1;
        }
    }
    (worst, changed)
}
