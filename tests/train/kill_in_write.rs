//! A process killed while it writes a checkpoint leaves `last` loadable, and the resumed run
//! logs the uninterrupted run's values.
use std::path::Path;
use std::time::{Duration, Instant};

use m3ae::train::state;
use serde_json::json;

use super::{command, pretrain_data, pretrain_opts, scratch, series};
use m3ae::train::trainer::RunOptions;

/// Whether the `last` link exists (whatever it points at: a dangling link counts).
fn has_last(ckpts: &Path) -> bool {
    ckpts.join("last").symlink_metadata().is_ok()
}

/// Whether `dir` holds a checkpoint folder still being written (`.tmp-*`).
fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))).unwrap_or(false)
}

#[test]
fn kill_during_a_checkpoint_write_leaves_last_loadable_and_resume_exact() {
    let data = pretrain_data("kill-in-write");
    let dir = scratch("kill-in-write");
    // a checkpoint after every step, so the process spends much of its time writing them
    let extra = json!({"max_steps": 14, "checkpoint_every_n_steps": 1, "per_gpu_batchsize": 3, "batch_size": 3});
    assert!(command(&pretrain_opts(&dir.join("a"), &data, extra.clone())).status().unwrap().success());
    let b = dir.join("b");
    let ckpts = b.join("checkpoints");
    let first = pretrain_opts(&b, &data, extra);
    let resumed = RunOptions { resume: true, overrides: vec![], config_file: None, ..first.clone() };
    let (mut mid_write, mut attempts) = (0, 0);
    // kill as soon as a `.tmp-*` folder appears, after the first checkpoint exists
    while mid_write < 2 && attempts < 12 {
        let o = if has_last(&ckpts) { &resumed } else { &first };
        let mut child = command(o).spawn().unwrap();
        let start = Instant::now();
        let mut finished = false;
        loop {
            if has_last(&ckpts) && writing(&ckpts) {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint write seen");
            std::thread::sleep(Duration::from_micros(200));
        }
        if finished {
            break; // the run completed before another write could be caught
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        attempts += 1;
        if writing(&ckpts) {
            mid_write += 1;
        }
        // whatever instant the kill hit, `last` is a complete checkpoint
        let ck = state::load(&ckpts.join("last")).unwrap_or_else(|e| panic!("after kill {attempts}: {e}"));
        assert!(ck.state.step >= 1 && ck.state.step < 14);
        eprintln!("kill {attempts}: last at step {}, mid-write {mid_write}", ck.state.step);
    }
    assert!(mid_write >= 1, "no kill landed inside a checkpoint write in {attempts} attempts");
    if !series(&b, "mlm/train/loss").iter().any(|&(s, _)| s == 14) {
        assert!(command(&resumed).status().unwrap().success());
    }
    // the resume removed the partial folders
    assert!(!writing(&ckpts), "a .tmp- folder survived the resume");
    for name in ["mlm/train/loss", "mim/train/loss", "itm/train/loss", "val/the_metric"] {
        let (a, b) = (series(&dir.join("a"), name), series(&b, name));
        assert_eq!(a, b, "{name}: after {attempts} kills ({mid_write} inside a write)");
    }
}
