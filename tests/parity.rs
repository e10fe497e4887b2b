//! `cargo test --test parity`: every golden of every bundled set in parity/ must be produced
//! by the port and lie within the tolerance of parity/FORMAT.md. Prints each set's table.
use std::path::{Path, PathBuf};

use m3ae::parity::{check_set_with, golden::GoldenSet, WeightsSource};
use tch::Device;

/// The sets this suite checks; `every_bundled_set_is_checked` keeps the list complete.
const SETS: &[&str] = &["tiny-a", "tiny-b", "preprocess"];

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("parity")
}

fn check(name: &str) {
    check_from(name, WeightsSource::StateDict)
}

fn check_from(name: &str, source: WeightsSource) {
    let dir = parity_dir().join(name);
    let outcome = check_set_with(&dir, source, Device::Cpu, 1.0).unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{}", outcome.table());
    // every golden (inputs aside) has a row: none is skipped
    let golden = GoldenSet::load(&dir).unwrap();
    let expected = golden.goldens.keys().filter(|k| !k.starts_with("input.")).count();
    assert!(outcome.rows.len() >= expected, "{name}: {} rows for {expected} goldens", outcome.rows.len());
    let failures: Vec<String> = outcome
        .failures()
        .iter()
        .map(|r| format!("{} (err {}) {}", r.name, r.err.map(|e| format!("{e:.2e}")).unwrap_or("-".into()), r.note))
        .collect();
    assert!(failures.is_empty(), "{name}: {} tensor(s) out of tolerance:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn tiny_a() {
    check("tiny-a");
}

#[test]
fn tiny_b() {
    check("tiny-b");
}

/// The same goldens with the model loaded from upstream's `model.ckpt` by our own reader
/// (tiny-b: written at 48 px, adapted to 64 px as upstream loads it).
#[test]
fn tiny_a_from_checkpoint() {
    check_from("tiny-a", WeightsSource::Checkpoint);
}

#[test]
fn tiny_b_from_checkpoint() {
    check_from("tiny-b", WeightsSource::Checkpoint);
}

#[test]
fn preprocess() {
    check("preprocess");
}

#[test]
fn every_bundled_set_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(parity_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "parity/ holds sets this suite does not check (or lists sets that are gone)");
}

#[test]
fn bad_set_directories_are_clear_errors() {
    let missing = parity_dir().join("no-such-set");
    let e = check_set_with(&missing, WeightsSource::StateDict, Device::Cpu, 1.0).err().expect("a missing set is an error");
    assert!(e.to_string().contains("manifest.json"), "{e}");
    // a set whose goldens file is gone
    let tmp = std::env::temp_dir().join(format!("m3ae-parity-bad-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(parity_dir().join("tiny-b/manifest.json"), tmp.join("manifest.json")).unwrap();
    let e = check_set_with(&tmp, WeightsSource::StateDict, Device::Cpu, 1.0).err().expect("missing goldens is an error");
    assert!(e.to_string().contains("goldens.safetensors"), "{e}");
    // the tolerance scale must be at least 1
    let e = check_set_with(&parity_dir().join("tiny-b"), WeightsSource::StateDict, Device::Cpu, 0.5).err().expect("scale < 1 refused");
    assert!(e.to_string().contains("must be ≥ 1"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}
