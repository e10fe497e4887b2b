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

#[path = "train/papercuts.rs"]
mod papercuts;
#[path = "train/contrastive.rs"]
mod contrastive;
#[path = "train/onednn.rs"]
mod onednn;

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
    let data = pretrain_data("lowers");
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

/// Where upstream's run goes on, ours does: a micro-batch without any masked token (upstream:
/// a NaN loss with a zero gradient) adds no MLM loss and is counted; a sample whose image is
/// unreadable is replaced by another (upstream's `get_suite`) and counted. With
/// `strict_images` the unreadable image is an error naming its file and row.
#[test]
fn pretraining_goes_on_past_micro_batches_without_mlm_targets_and_corrupt_images() {
    let data = pretrain_data("survive");
    corrupt_row_0_image(&data.join("roco_train.arrow"));
    let dir = scratch("survive");
    // 1-sample micro-batches, one per step: 8 steps an epoch, and the corrupt image's
    // micro-batch has no readable sample at all; few masked tokens
    let extra = json!({"per_gpu_batchsize": 1, "batch_size": 1, "max_steps": 16, "mlm_prob": 0.05});
    let run_dir = dir.join("run");
    assert_eq!(run(&pretrain_opts(&run_dir, &data, extra.clone())).outcome, Outcome::Finished);
    let mlm = series(&run_dir, "mlm/train/loss");
    assert!(mlm.iter().all(|(_, v)| v.is_finite()), "{mlm:?}");
    let without: f64 = series(&run_dir, "train/mlm_batches_without_targets").iter().map(|(_, v)| v).sum();
    assert!(without >= 1.0, "the run must meet micro-batches without masked tokens (mlm_prob 0.05)");
    assert_eq!(mlm.len() as f64 + without, 16.0, "every step logs its MLM loss unless its micro-batch had no target");
    assert_eq!(series(&run_dir, "mim/train/loss").len(), 16, "every step trains: the unreadable sample was replaced");
    // validation too: its micro-batches without targets are counted, its loss stays finite
    assert!(series(&run_dir, "mlm/val/loss_epoch").iter().all(|(_, v)| v.is_finite()));
    assert!(!series(&run_dir, "val/mlm_batches_without_targets").is_empty());
    // row 0 (sample 0) comes once in each of the 2 epochs
    let unreadable = series(&run_dir, "train/unreadable_images");
    assert_eq!(unreadable, [(8, 1.0), (16, 1.0)], "one replaced sample per epoch, counted at its end");
    let strict = fit(&pretrain_opts(&dir.join("strict"), &data, json!({"per_gpu_batchsize": 1, "batch_size": 1, "max_steps": 8, "strict_images": true})));
    let e = strict.expect_err("strict_images: an unreadable image stops the run").to_string();
    assert!(e.contains("roco_train.arrow") && e.contains("row 0"), "{e}");
}

/// A run killed with SIGKILL mid-flight and resumed (`--resume`) logs exactly the values the
/// uninterrupted run logged. All three runs are `m3ae` processes, as users run them.
#[test]
fn resume_after_kill_reproduces_the_uninterrupted_losses() {
    let data = pretrain_data("resume");
    // a corrupt image: its replacement is drawn again after the resume
    corrupt_row_0_image(&data.join("roco_train.arrow"));
    let dir = scratch("resume");
    // 3-sample micro-batches: three per epoch (3, 3, 2), validation (and `last`) at each
    // epoch's end, `last` also every 2 steps, so some checkpoints sit mid-epoch
    let extra = json!({"max_steps": 16, "checkpoint_every_n_steps": 2, "per_gpu_batchsize": 3, "batch_size": 3});
    assert!(command(&pretrain_opts(&dir.join("a"), &data, extra.clone())).status().unwrap().success());
    // the same run, killed (SIGKILL, by itself) after step 5: `last` holds step 4, mid-epoch
    let b = dir.join("b");
    let o = pretrain_opts(&b, &data, extra);
    let status = command(&o).env(m3ae::train::test_hooks::SIGNAL_AT_STEP, "5:kill").status().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the run must die by SIGKILL after step 5: {status}");
    let last_state = |b: &Path| -> Option<(u64, u64)> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(b.join("checkpoints/last/trainer_state.json")).ok()?).ok()?;
        Some((v["state"]["step"].as_u64()?, v["state"]["batch_in_epoch"].as_u64()?))
    };
    assert_eq!(series(&b, "mlm/train/loss").len(), 5, "steps 1-5 were logged before the kill");
    let (saved, batch) = last_state(&b).expect("a checkpoint was written before the kill");
    assert_eq!((saved, batch), (4, 1), "killed after a mid-epoch checkpoint (step 4: epoch 1, batch 1 of 3)");
    let resumed = RunOptions { resume: true, overrides: vec![], config_file: None, ..o };
    assert!(command(&resumed).status().unwrap().success());
    assert!(!series(&b, "train/unreadable_images").is_empty());
    for name in ["mlm/train/loss", "mim/train/loss", "itm/train/loss", "val/the_metric"] {
        let (a, b) = (series(&dir.join("a"), name), series(&b, name));
        assert!(!a.is_empty() && (name.starts_with("val") || a.len() == 16), "{name}: {a:?}");
        assert_eq!(a, b, "{name}: the resumed run (from step {saved}) must log the uninterrupted run's values");
    }
}

/// Ctrl-C (SIGINT) saves `last` at the step boundary and exits; `--resume` finishes the run.
#[test]
fn ctrl_c_saves_last_and_the_run_resumes() {
    let data = pretrain_data("sigint");
    let run_dir = scratch("sigint").join("run");
    let o = pretrain_opts(&run_dir, &data, json!({"max_steps": 60}));
    // SIGINT (raised by the run itself, through the same handler) once step 3 is done: the
    // loop sees it at the next step's boundary and saves step 4
    let status = command(&o).env(m3ae::train::test_hooks::SIGNAL_AT_STEP, "3:int").status().unwrap();
    assert_eq!(status.code(), Some(1), "an interrupted run exits 1 after saving");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("checkpoints/last/trainer_state.json")).unwrap()).unwrap();
    let saved = state["state"]["step"].as_u64().unwrap();
    let logged = series(&run_dir, "mlm/train/loss");
    assert_eq!(saved, 4, "saved at the step after the signal");
    assert_eq!(logged.last().unwrap().0, saved, "last holds the last logged step");
    let resumed = RunOptions { resume: true, overrides: vec![], config_file: None, ..o };
    assert!(command(&resumed).status().unwrap().success());
    assert_eq!(series(&run_dir, "mlm/train/loss").len(), 60);
}

/// Two micro-batches of 5, accumulated, hand AdamW the gradient one batch of 10 gives: the
/// gradient of step 1 (the same starting weights), as the trainer passes it to the optimizer.
///
/// The bound comes from the arithmetic, not from one CPU. The two runs compute the same sums
/// in other orders and other GEMM blockings (M = 5·L vs 10·L rows); each fp32 reduction of k
/// terms errs by about √k·u relative to its terms' magnitude (u = 2⁻²⁴ ≈ 6.0e-8, k ≤ 640
/// here: √k·u ≤ 1.5e-6), and a gradient passes through ~40 such reductions (forward and
/// backward through 2 text layers, 2 ViT blocks and 2 fusion layers with two streams), so
/// ‖Δg‖/‖g‖ ≲ 40 × 1.5e-6 = 6e-5; the bound is 1e-4. Weights after AdamW are not compared:
/// where a gradient element is near zero, a rounding difference flips the sign of its whole
/// step (±lr), which no summation order shares.
#[test]
fn gradient_accumulation_over_two_micro_batches_equals_one_batch() {
    let dir = scratch("accumulate");
    let step_one = |name: &str, per_gpu: usize| -> std::collections::BTreeMap<String, Tensor> {
        let grads = dir.join(format!("{name}-grads"));
        let o = vqa_opts(&dir.join(name), json!({"per_gpu_batchsize": per_gpu, "batch_size": 10, "max_steps": 1}));
        let status = command(&o).env(m3ae::train::test_hooks::DUMP_GRADIENTS, &grads).status().unwrap();
        assert!(status.success(), "{name}: {status}");
        read_safetensors(&grads.join("step-1.safetensors")).unwrap()
    };
    let (one, two) = (step_one("one", 10), step_one("two", 5));
    assert!(one.len() > 10 && one.len() == two.len(), "{} vs {} gradients", one.len(), two.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    let mut worst = (0.0f64, String::new());
    for (k, g) in &one {
        let d = (g - &two[k]).square().sum(Kind::Double).double_value(&[]);
        let n = g.square().sum(Kind::Double).double_value(&[]);
        (diff, norm) = (diff + d, norm + n);
        if n > 0.0 && (d / n).sqrt() > worst.0 {
            worst = ((d / n).sqrt(), k.clone());
        }
    }
    let rel = (diff / norm).sqrt();
    println!("accumulated vs one-batch gradient of step 1: ‖Δg‖/‖g‖ = {rel:e}, largest per tensor {:e} on {}", worst.0, worst.1);
    assert!(norm > 0.0 && rel <= 1e-4, "accumulated gradient differs from the one-batch gradient: ‖Δg‖/‖g‖ = {rel:e} (largest per tensor {:e} on {})", worst.0, worst.1);
    let losses = |name: &str| series(&dir.join(name), "vqa/train/loss");
    let (a, b) = (losses("one"), losses("two"));
    assert_eq!(a.len(), 1);
    assert!((a[0].1 - b[0].1).abs() <= 1e-4 * a[0].1.abs(), "step 1 loss: {a:?} vs {b:?}");
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
    // `m3ae test` without false texts: the recalls, and no loss (it needs false texts)
    use m3ae::train::evaluate::{test, TestOptions};
    let to = TestOptions { task: Task::finetune("irtr_roco").unwrap(), run_dir: irtr.clone(), checkpoint: "last".into(), split: "val".into(), overrides: sets(json!({"draw_false_text": 0})), device: Device::Cpu };
    let ev = test(&to).unwrap_or_else(|e| panic!("irtr test without false texts: {e}"));
    let (ir, tr) = (ev.get("test/recalls/ir_r1").expect("recalls"), ev.get("test/recalls/tr_r1").unwrap());
    assert!(ev.get("irtr/test/irtr_loss_epoch").is_none(), "{:?}", ev.values);
    assert_eq!(ev.get("test/the_metric"), Some(ir + tr));
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
/// ×2 after 2000 good steps; the CPU computes fp16 in fp32 and bf16 under its own autocast; bf16 sets CUDA autocast's dtype
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
    // the CPU runs bf16 under its autocast where it has bf16 instructions, and refuses it, naming them, where not
    let f = m3ae::train::cpu_bf16::CpuFeatures::detect();
    match compute_mode(&bf, Device::Cpu) {
        Ok(c) => assert!(c == Compute::CpuBf16Autocast && (f.has("amx_bf16") || f.has("avx512_bf16")), "{c:?} with {}", f.describe()),
        Err(e) => assert!(!f.has("amx_bf16") && !f.has("avx512_bf16") && e.to_string().contains("avx512_bf16"), "{e}"),
    }
    assert_eq!(compute_mode(&bf, Device::Cuda(0)).unwrap(), Compute::Bf16Autocast);
    assert!(m3ae::train::precision::cuda_autocast_is_bf16(), "the shim set CUDA autocast to bf16");
    m3ae::train::precision::set_cuda_autocast_dtype(false).unwrap();
    assert!(!m3ae::train::precision::cuda_autocast_is_bf16());
    let bad = m3ae::M3aeConfig { precision: m3ae::config::Precision::Bits(8), ..Default::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("precision"));
}
