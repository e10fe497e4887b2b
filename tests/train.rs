//! `cargo test --test train`: the training engine on small fixtures (the training golden
//! sets' data and weights, parity/train-*): metrics worked out by hand, pre-training lowers
//! its loss, ablations remove their heads and metrics, resume after kill -9 is exact,
//! gradient accumulation equals one big batch, every task family runs end to end, and bad
//! input stops with an error that names it.
mod common;

use std::path::Path;

use common::*;
use m3ae::train::metrics::{recalls, Accuracy, PhaseMetrics, VqaScore};
use m3ae::train::task::Task;
use m3ae::train::trainer::{fit, Outcome, RunOptions};
use m3ae::weights::read_safetensors;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

#[path = "train/kill_in_write.rs"]
mod kill_in_write;

#[path = "train/adamw.rs"]
mod adamw;

#[path = "train/contrastive.rs"]
mod contrastive;

#[test]
fn metrics_match_values_worked_out_by_hand() {
    // VQA: 4 questions; argmax answers 1, 0, 2, 2; the argmax's target scores 1, 0.3, 0, 1
    let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.0, 0.8, 0.1, 0.1, 0.0, 0.1, 0.9, 0.0, 0.2, 0.3]).view([4, 3]);
    let targets = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.3, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).view([4, 3]);
    let types = Tensor::from_slice(&[0i64, 1, 0, 1]);
    let mut v = VqaScore::default();
    v.update(&logits, &targets, &types);
    assert!((v.compute() - 2.3 / 4.0).abs() < 1e-6, "overall {}", v.compute());
    assert!((v.close() - 1.0 / 2.0).abs() < 1e-6, "closed: questions 0 (1) and 2 (0)");
    assert!((v.open() - 1.3 / 2.0).abs() < 1e-6, "open: questions 1 (0.3) and 3 (1)");
    // accuracy ignores -100 labels: predictions 1, 0, 2, 2 against 1, -100, 0, 2
    let mut a = Accuracy::default();
    a.update(&logits, &Tensor::from_slice(&[1i64, -100, 0, 2]));
    assert_eq!((a.correct, a.total), (2.0, 3.0));
    // recall: 3 images, 5 texts; image 0 owns texts 0 and 1, image 1 texts 2 and 3, image 2 text 4
    let scores = Tensor::from_slice(&[
        0.9f32, 0.1, 0.8, 0.2, 0.3, // image 0: best text 0 (own)
        0.5, 0.4, 0.3, 0.6, 0.1, // image 1: best text 3 (own)
        0.2, 0.9, 0.1, 0.0, 0.4, // image 2: best text 1 (image 0's); own text 4 second
    ])
    .view([3, 5]);
    let (r, short) = recalls(&scores, &[0, 1, 2], &[0, 0, 1, 1, 2]);
    assert!((r.tr_r1 - 2.0 / 3.0).abs() < 1e-9, "tr_r1 {}", r.tr_r1);
    // image retrieval, best image per text: t0 → 0 ✓, t1 → 2 ✗, t2 → 0 ✗, t3 → 1 ✓, t4 → 2 ✓
    assert!((r.ir_r1 - 3.0 / 5.0).abs() < 1e-9, "ir_r1 {}", r.ir_r1);
    // 5 texts and 3 images: R@5 over texts is complete, R@10 and image R@5/10 fall short
    assert!((r.tr_r5 - 1.0).abs() < 1e-9 && (r.ir_r5 - 1.0).abs() < 1e-9);
    assert_eq!(short, ["R@10 over 5 texts", "R@5 over 3 images", "R@10 over 3 images"]);
    // the_metric: VQA score + recalls' r1 sum; upstream's names
    let mut p = PhaseMetrics { vqa_score: v, ..Default::default() };
    p.vqa_loss.update(0.5);
    let on = m3ae::config::LossNames { vqa: 1.0, ..Default::default() };
    let named = p.wrapup("val", &on, Some(&r));
    let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap_or_else(|| panic!("{k} missing"));
    assert!((get("val/the_metric") - (2.3 / 4.0 + 2.0 / 3.0 + 3.0 / 5.0)).abs() < 1e-6);
    assert!((get("vqa/val/score_best_epoch") - 2.3 / 4.0).abs() < 1e-6 && get("vqa/val/loss_epoch") == 0.5);
    assert!((get("val/recalls/ir_r1") - 0.6).abs() < 1e-9);
}

#[test]
fn pretraining_lowers_its_loss_and_each_ablation_removes_its_head_and_metrics() {
    let data = pretrain_data();
    let dir = scratch("pretrain");
    // 12 steps on the same 8-sample batch (full batch, fixed by the seed)
    let full = run(&pretrain_opts(&dir.join("full"), &data, json!({"max_steps": 12})));
    assert_eq!(full.outcome, Outcome::Finished);
    let total: Vec<f64> = metrics(&dir.join("full"))
        .iter()
        .filter(|m| m.get("mlm/train/loss").is_some())
        .map(|m| ["mlm", "mim", "itm"].iter().map(|o| m[format!("{o}/train/loss")].as_f64().unwrap()).sum())
        .collect();
    assert_eq!(total.len(), 12);
    let (first, last) = (total[0], total[11]);
    assert!(last < 0.95 * first, "the summed loss should fall: {total:?}");
    for (ablate, gone, kept) in [("mim", "mim", ["mlm", "itm"]), ("mlm", "mlm", ["mim", "itm"])] {
        let run_dir = dir.join(format!("no-{ablate}"));
        run(&pretrain_opts(&run_dir, &data, json!({ "loss_names": {"mlm": i32::from(ablate != "mlm"), "mim": i32::from(ablate != "mim"), "itm": 1}, "max_steps": 2 })));
        let weights = read_safetensors(&run_dir.join("checkpoints/last/model.safetensors")).unwrap();
        assert!(!weights.keys().any(|k| k.starts_with(&format!("{gone}_head."))), "{gone}_head must not exist");
        for k in kept {
            assert!(weights.keys().any(|w| w.starts_with(&format!("{k}_head."))), "{k}_head must exist");
        }
        let names: Vec<String> = metrics(&run_dir).iter().flat_map(|m| m.as_object().unwrap().keys().cloned().collect::<Vec<_>>()).collect();
        assert!(!names.iter().any(|n| n.starts_with(&format!("{gone}/"))), "no {gone} metric may be logged: {names:?}");
        for k in kept {
            assert!(names.contains(&format!("{k}/train/loss")) && names.contains(&format!("{k}/val/loss_epoch")), "{k} metrics: {names:?}");
        }
    }
}

/// A run killed with SIGKILL mid-flight and resumed (`--resume`) logs exactly the values the
/// uninterrupted run logged. All three runs are `m3ae` processes, as users run them.
#[test]
fn resume_after_kill_reproduces_the_uninterrupted_losses() {
    let data = pretrain_data();
    let dir = scratch("resume");
    // 3-sample micro-batches: three per epoch (3, 3, 2), validation (and `last`) at each
    // epoch's end, `last` also every 2 steps, so some checkpoints sit mid-epoch
    let extra = json!({"max_steps": 16, "checkpoint_every_n_steps": 2, "per_gpu_batchsize": 3, "batch_size": 3});
    assert!(command(&pretrain_opts(&dir.join("a"), &data, extra.clone())).status().unwrap().success());
    // the same run, killed once `last` holds a mid-epoch checkpoint of step 4 or later
    let b = dir.join("b");
    let o = pretrain_opts(&b, &data, extra);
    let mut child = command(&o).spawn().unwrap();
    let start = std::time::Instant::now();
    let last_state = |b: &Path| -> Option<(u64, u64)> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(b.join("checkpoints/last/trainer_state.json")).ok()?).ok()?;
        Some((v["state"]["step"].as_u64()?, v["state"]["batch_in_epoch"].as_u64()?))
    };
    loop {
        if last_state(&b).is_some_and(|(step, batch)| step >= 4 && batch > 0) || start.elapsed().as_secs() > 120 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (saved, batch) = last_state(&b).expect("a checkpoint was written before the kill");
    assert!(saved < 16 && batch > 0, "killed mid-run after a mid-epoch checkpoint (last at step {saved}, batch {batch})");
    let resumed = RunOptions { resume: true, overrides: vec![], config_file: None, ..o };
    assert!(command(&resumed).status().unwrap().success());
    for name in ["mlm/train/loss", "mim/train/loss", "itm/train/loss", "val/the_metric"] {
        let (a, b) = (series(&dir.join("a"), name), series(&b, name));
        assert!(!a.is_empty() && (name.starts_with("val") || a.len() == 16), "{name}: {a:?}");
        assert_eq!(a, b, "{name}: the resumed run (from step {saved}) must log the uninterrupted run's values");
    }
}

/// Ctrl-C (SIGINT) saves `last` at the step boundary and exits; `--resume` finishes the run.
#[test]
fn ctrl_c_saves_last_and_the_run_resumes() {
    let data = pretrain_data();
    let run_dir = scratch("sigint").join("run");
    let o = pretrain_opts(&run_dir, &data, json!({"max_steps": 60}));
    let child = command(&o).spawn().unwrap();
    let start = std::time::Instant::now();
    while series(&run_dir, "mlm/train/loss").len() < 3 && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: signalling our own child process
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an interrupted run exits 1 after saving");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("checkpoints/last/trainer_state.json")).unwrap()).unwrap();
    let saved = state["state"]["step"].as_u64().unwrap();
    let logged = series(&run_dir, "mlm/train/loss");
    assert!((3..60).contains(&saved), "saved at step {saved}");
    assert_eq!(logged.last().unwrap().0, saved, "last holds the last logged step");
    let resumed = RunOptions { resume: true, overrides: vec![], config_file: None, ..o };
    assert!(command(&resumed).status().unwrap().success());
    assert_eq!(series(&run_dir, "mlm/train/loss").len(), 60);
}

#[test]
fn gradient_accumulation_over_two_micro_batches_equals_one_batch() {
    let dir = scratch("accumulate");
    let one = dir.join("one");
    let two = dir.join("two");
    run(&vqa_opts(&one, json!({"per_gpu_batchsize": 10, "batch_size": 10, "max_steps": 2})));
    run(&vqa_opts(&two, json!({"per_gpu_batchsize": 5, "batch_size": 10, "max_steps": 2})));
    let (worst, changed) = weight_difference(&one, &two, &set("train-vqa").join("model/model.safetensors"));
    assert!(changed > 10, "two steps must move the weights ({changed} tensors changed)");
    assert!(worst.0 <= 1e-5, "accumulated update differs from the one-batch update: {:e} on {}", worst.0, worst.1);
    assert_eq!(series(&one, "vqa/train/loss").len(), 2);
}

#[test]
fn every_task_family_runs_end_to_end() {
    let dir = scratch("families");
    // VQA: best and last checkpoints, loadable folders that export and plot
    let vqa = dir.join("vqa");
    let s = run(&vqa_opts(&vqa, json!({"max_steps": 3})));
    assert!(s.state.best_step.is_some());
    for ck in ["last", "best"] {
        for f in ["model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json"] {
            assert!(vqa.join("checkpoints").join(ck).join(f).is_file(), "{ck}/{f}");
        }
    }
    assert!(!series(&vqa, "val/the_metric").is_empty() && !series(&vqa, "vqa/val/score_epoch").is_empty());
    // a 1-step run: best and last of one step share their files (hard links), not two copies
    let one = dir.join("vqa-1");
    assert_eq!(run(&vqa_opts(&one, json!({"max_steps": 1}))).state.best_step, Some(1));
    use std::os::unix::fs::MetadataExt;
    let ino = |ck: &str, f: &str| std::fs::metadata(one.join("checkpoints").join(ck).join(f)).unwrap().ino();
    for f in ["model.safetensors", "optimizer.safetensors"] {
        assert_eq!(ino("best", f), ino("last", f), "{f}");
    }
    let n = m3ae::checkpoint::export::export_model_dir(&vqa.join("checkpoints/last"), &dir.join("vqa.ckpt")).unwrap();
    assert!(n > 100);
    let plots = m3ae::report::plot::plot_run(&vqa).unwrap();
    assert!(plots.iter().all(|p| std::fs::metadata(p).unwrap().len() > 1000), "{plots:?}");
    // IRTR with recall at validation
    let irtr = dir.join("irtr");
    let t = set("train-irtr");
    let o = RunOptions {
        task: Task::finetune("irtr_roco").unwrap(),
        run_dir: irtr.clone(),
        config_file: Some(t.join("config.json")),
        overrides: sets(json!({"data_root": t.join("data"), "tokenizer": t.join("tokenizer"), "load_path": t.join("model"), "max_steps": 2, "log_every_n_steps": 1})),
        resume: false,
        device: Device::Cpu,
    };
    run(&o);
    for k in ["val/recalls/ir_r1", "val/recalls/tr_r10", "irtr/val/irtr_loss_epoch", "irtr/train/loss"] {
        assert!(!series(&irtr, k).is_empty(), "{k} not logged");
    }
    // CLS (MELINDA p_meth_label), on the classification fixture, from train-vqa's encoders
    let data = dir.join("cls-data");
    std::fs::create_dir_all(&data).unwrap();
    for split in ["train", "val", "test"] {
        std::fs::copy(root().join("tests/fixtures/data/arrow/cls_melinda_train.arrow"), data.join(format!("cls_melinda_{split}.arrow"))).unwrap();
    }
    let cls = dir.join("cls");
    let v = set("train-vqa");
    let o = RunOptions {
        task: Task::finetune("cls_melinda_p_meth_label").unwrap(),
        run_dir: cls.clone(),
        config_file: Some(v.join("config.json")),
        overrides: sets(json!({"data_root": data, "tokenizer": v.join("tokenizer"), "load_path": v.join("model"), "loss_names": {"cls": 1}, "datasets": ["cls_melinda"], "label_column_name": "p_meth_label", "per_gpu_batchsize": 2, "batch_size": 2, "max_steps": 2})),
        resume: false,
        device: Device::Cpu,
    };
    run(&o);
    let last = read_safetensors(&cls.join("checkpoints/last/model.safetensors")).unwrap();
    assert_eq!(last["cls_head.3.weight"].size(), [7, 64], "a fresh cls_head of melinda_label_size.p_meth_label classes");
    assert!(!last.contains_key("vqa_head.3.weight"), "the vqa head is not part of a CLS model");
    assert!(!series(&cls, "cls/val/accuracy_epoch").is_empty());
}

#[test]
fn bad_input_stops_with_an_error_that_names_it() {
    let dir = scratch("bad");
    let err = |o: RunOptions| fit(&o).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{} should fail", o.run_dir.display()));
    // an answer label beyond vqa_label_size: the file, the row and the label
    let e = err(vqa_opts(&dir.join("labels"), json!({"vqa_label_size": 3, "test_only": false})));
    assert!(e.contains("vqa_vqa_rad_train.arrow") && e.contains("row") && e.contains("label") && e.contains("vqa_label_size"), "{e}");
    // a missing split: its path
    let data = dir.join("no-val");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(set("train-vqa").join("data/vqa_vqa_rad_train.arrow"), data.join("vqa_vqa_rad_train.arrow")).unwrap();
    let e = err(vqa_opts(&dir.join("split"), json!({"data_root": data})));
    assert!(e.contains("vqa_vqa_rad_val.arrow"), "{e}");
    // a config that cannot work: mim_layer beyond num_top_layer
    let e = err(pretrain_opts(&dir.join("mim"), &data, json!({"mim_layer": 5})));
    assert!(e.contains("mim_layer"), "{e}");
    // an unknown task lists the tasks
    let e = Task::finetune("vqa_pathvqa").unwrap_err().to_string();
    assert!(e.contains("vqa_vqa_rad") && e.contains("irtr_roco"), "{e}");
    // a diverging run stops naming the step and what went non-finite; last stays loadable
    let e = err(vqa_opts(&dir.join("nan"), json!({"learning_rate": 1e30, "max_steps": 5, "checkpoint_every_n_steps": 1})));
    assert!(e.contains("training stopped at step") && (e.contains("vqa loss") || e.contains("gradient of")), "{e}");
    assert!(read_safetensors(&dir.join("nan/checkpoints/last/model.safetensors")).is_ok());
    // a run folder that already holds a run, without --resume
    let e = err(vqa_opts(&dir.join("nan"), json!({})));
    assert!(e.contains("--resume"), "{e}");
    let _ = Kind::Float;
}

/// fp16's dynamic loss scaling follows GradScaler: ×½ on an overflow (the step is skipped),
/// ×2 after 2000 good steps; the CPU always computes in fp32; bf16 sets CUDA autocast's dtype
/// through the C++ shim (checked by reading it back).
#[test]
fn loss_scaler_follows_grad_scaler() {
    use m3ae::train::precision::{compute_mode, Compute, LossScaler, GROWTH_INTERVAL};
    let mut s = LossScaler::default();
    assert_eq!(s.scale, 65536.0);
    s.update(true);
    assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    for _ in 0..GROWTH_INTERVAL - 1 {
        s.update(false);
    }
    assert_eq!(s.scale, 32768.0);
    s.update(false);
    assert_eq!((s.scale, s.good_steps), (65536.0, 0));
    let c = m3ae::M3aeConfig { precision: m3ae::config::Precision::Bits(16), ..Default::default() };
    assert_eq!(compute_mode(&c, Device::Cpu).unwrap(), Compute::Fp32);
    assert_eq!(compute_mode(&c, Device::Cuda(0)).unwrap(), Compute::Fp16Autocast);
    assert!(!m3ae::train::precision::cuda_autocast_is_bf16(), "fp16 is autocast's default");
    let bf = m3ae::M3aeConfig { precision: m3ae::config::Precision::Named("bf16".into()), ..Default::default() };
    assert_eq!(compute_mode(&bf, Device::Cpu).unwrap(), Compute::Fp32);
    assert_eq!(compute_mode(&bf, Device::Cuda(0)).unwrap(), Compute::Bf16Autocast);
    assert!(m3ae::train::precision::cuda_autocast_is_bf16(), "the shim set CUDA autocast to bf16");
    m3ae::train::precision::set_cuda_autocast_dtype(false).unwrap();
    assert!(!m3ae::train::precision::cuda_autocast_is_bf16());
    let bad = m3ae::M3aeConfig { precision: m3ae::config::Precision::Bits(8), ..Default::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("precision"));
}
