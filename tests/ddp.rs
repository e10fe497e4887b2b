//! `cargo test --test ddp`: data-parallel training on the CPU (Gloo over loopback). Two
//! processes reach the losses, metrics and weights of one process with the same batch_size;
//! `--nproc` and torchrun launch the same run; a killed launcher leaves no rank behind, and
//! its run resumes in one process.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use m3ae::train::trainer::RunOptions;
use serde_json::{json, Value};

/// `a` and `b` log the same steps of `name`, equal within `tol` (relative).
fn same_series(a: &Path, b: &Path, name: &str, tol: f64) {
    let (x, y) = (series(a, name), series(b, name));
    assert!(!x.is_empty(), "{name} is not logged in {}", a.display());
    assert_eq!(x.len(), y.len(), "{name}: {x:?} vs {y:?}");
    for ((s, u), (t, v)) in x.iter().zip(&y) {
        assert_eq!(s, t, "{name}: steps differ");
        assert!((u - v).abs() <= tol * u.abs().max(1e-6), "{name} at step {s}: {u} vs {v} ({} and {})", a.display(), b.display());
    }
}

/// `m3ae` for the one-process reference runs, in their own process (torch's generator is
/// global: runs sharing this test process would interleave their draws), with one intra-op
/// thread, as each rank has (`--nproc` and torchrun set OMP_NUM_THREADS=1).
fn alone(o: &RunOptions) -> Command {
    let mut cmd = command(o);
    cmd.env("OMP_NUM_THREADS", "1");
    cmd
}

/// Runs `cmd` to completion, with its output shown on failure.
fn succeed(cmd: &mut Command, what: &str) {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    assert!(out.status.success(), "{what}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_processes_match_one_process_with_the_same_batch_size() {
    let dir = scratch("ddp-vqa");
    // 5-sample micro-batches, 10 per step: one micro-batch per rank and step; 3 steps cross
    // an epoch end (validation, sharded over the ranks)
    let extra = json!({"per_gpu_batchsize": 5, "batch_size": 10, "max_steps": 3});
    let one = dir.join("one");
    succeed(&mut alone(&vqa_opts(&one, extra.clone())), "one process");
    let two = dir.join("two");
    succeed(command(&vqa_opts(&two, extra)).args(["--nproc", "2"]), "--nproc 2");
    for name in ["vqa/train/loss", "vqa/val/score_epoch", "vqa/val/loss_epoch", "val/the_metric"] {
        same_series(&one, &two, name, 1e-5);
    }
    // rank 1 wrote nothing: every line is rank 0's, once
    assert_eq!(metrics(&one).len(), metrics(&two).len());
    let (worst, changed) = weight_difference(&one, &two, &set("train-vqa").join("model/model.safetensors"));
    assert!(changed > 10, "three steps must move the weights ({changed} tensors changed)");
    assert!(worst.0 <= 1e-5, "2 processes ≠ 1 process: {:e} on {}", worst.0, worst.1);
}

#[test]
fn sharded_retrieval_evaluation_matches_one_process() {
    let dir = scratch("ddp-irtr");
    let t = set("train-irtr");
    let opts = |run: &Path| RunOptions {
        task: m3ae::train::task::Task::finetune("irtr_roco").unwrap(),
        run_dir: run.into(),
        config_file: Some(t.join("config.json")),
        overrides: sets(json!({"data_root": t.join("data"), "tokenizer": t.join("tokenizer"), "load_path": t.join("model"), "max_steps": 1, "log_every_n_steps": 1})),
        resume: false,
        device: tch::Device::Cpu,
    };
    let (one, two) = (dir.join("one"), dir.join("two"));
    succeed(&mut alone(&opts(&one)), "one process");
    succeed(command(&opts(&two)).args(["--nproc", "2"]), "--nproc 2");
    // every image's scores, computed on either rank, gathered into the one ranking
    for name in ["val/recalls/ir_r1", "val/recalls/ir_r5", "val/recalls/tr_r1", "val/recalls/tr_r5", "irtr/val/irtr_loss_epoch", "irtr/train/loss"] {
        same_series(&one, &two, name, 1e-5);
    }
}

/// The pre-training run of `extra` launched by the venv's torchrun (`--no-python`).
fn torchrun(o: &RunOptions) -> Command {
    let torchrun = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    let plain = command(o);
    let mut cmd = Command::new(torchrun);
    cmd.args(["--nproc-per-node", "2", "--master-port", &m3ae::dist::launch::free_port().unwrap().to_string(), "--no-python"]).arg(plain.get_program()).args(plain.get_args());
    cmd
}

#[test]
fn torchrun_and_nproc_launch_the_same_pretraining_as_one_process() {
    let data = pretrain_data("ddp-pretrain");
    // a corrupt image: its replacement is drawn from the sample's own stream, on any rank
    corrupt_row_0_image(&data.join("roco_train.arrow"));
    let dir = scratch("ddp-pretrain");
    // MLM + MIM + ITM: the masks, noise and ITM pairings of each micro-batch are drawn as in
    // one process, whichever rank runs it
    let extra = json!({"per_gpu_batchsize": 4, "batch_size": 8, "max_steps": 2});
    let one = dir.join("one");
    succeed(&mut alone(&pretrain_opts(&one, &data, extra.clone())), "one process");
    let nproc = dir.join("nproc");
    succeed(command(&pretrain_opts(&nproc, &data, extra.clone())).args(["--nproc", "2"]), "--nproc 2");
    let tr = dir.join("torchrun");
    succeed(&mut torchrun(&pretrain_opts(&tr, &data, extra)), "torchrun");
    for name in ["mlm/train/loss", "mim/train/loss", "itm/train/loss", "val/the_metric"] {
        same_series(&one, &nproc, name, 1e-5);
        same_series(&nproc, &tr, name, 1e-5);
    }
    let start = set("train-irtr").join("model/model.safetensors");
    let (worst, _) = weight_difference(&one, &nproc, &start);
    assert!(worst.0 <= 1e-5, "--nproc 2 ≠ 1 process: {:e} on {}", worst.0, worst.1);
    let (worst, changed) = weight_difference(&nproc, &tr, &start);
    assert!(changed > 10 && worst.0 <= 1e-5, "torchrun ≠ --nproc: {:e} on {} ({changed} moved)", worst.0, worst.1);
}

/// The pids of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn alive(pid: u32) -> bool {
    // a zombie is dead: only its exit status remains
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

#[test]
fn a_killed_launcher_leaves_no_rank_and_its_run_resumes_in_one_process() {
    let dir = scratch("ddp-kill");
    let extra = json!({"per_gpu_batchsize": 5, "batch_size": 10, "max_steps": 40, "checkpoint_every_n_steps": 2});
    let one = dir.join("one");
    succeed(&mut alone(&vqa_opts(&one, extra.clone())), "one process");
    let two = dir.join("two");
    let o = vqa_opts(&two, extra);
    let mut launcher = command(&o).args(["--nproc", "2"]).spawn().unwrap();
    let last_step = |d: &Path| -> Option<u64> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(d.join("checkpoints/last/trainer_state.json")).ok()?).ok()?;
        v["state"]["step"].as_u64()
    };
    let start = Instant::now();
    let ranks = loop {
        let ranks = children(launcher.id());
        if last_step(&two).is_some_and(|s| s >= 2) && ranks.len() == 2 {
            break ranks;
        }
        assert!(launcher.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    launcher.kill().unwrap(); // SIGKILL: the launcher cannot clean up; the kernel must
    launcher.wait().unwrap();
    let killed = Instant::now();
    while ranks.iter().any(|&p| alive(p)) {
        // the kernel kills them at once (PR_SET_PDEATHSIG); the run itself needs longer
        assert!(killed.elapsed() < Duration::from_secs(1), "ranks {ranks:?} outlived their launcher");
        std::thread::sleep(Duration::from_millis(20));
    }
    let saved = last_step(&two).unwrap();
    assert!(saved < 40, "killed mid-run (last at step {saved})");
    // the 2-process run resumes in one process and logs what the 1-process run logged
    succeed(&mut alone(&RunOptions { resume: true, overrides: vec![], config_file: None, ..o }), "the resumed run");
    same_series(&one, &two, "vqa/train/loss", 1e-5);
    same_series(&one, &two, "val/the_metric", 1e-5);
}
