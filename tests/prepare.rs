//! `m3ae data prepare` against upstream's prepro: small raw releases of every dataset (written
//! by tests/prepare/raw.rs, in each dataset's format with its quirks) are prepared, and every
//! output file is compared with the Arrow file upstream's own prepro wrote from the same
//! release (tests/fixtures/prepare/, parity/prepare/make_golden.py): file names, column names
//! and types, rows, order, image bytes, texts and labels; plus `label2ans`, CPython's Mersenne
//! Twister and `normalize_word` against committed CPython output, and the error paths.
#[path = "prepare/raw.rs"]
mod raw;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_ipc::reader::FileReader;
use arrow_schema::DataType;
use m3ae::data::prepare::glossary::normalize_word;
use m3ae::data::prepare::pyrandom::PyRandom;
use m3ae::data::prepare::{prepare, PrepareOptions, PrepareReport, DATASETS};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prepare")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m3ae-prepare-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(raw: &Path, out: &Path) -> PrepareOptions {
    PrepareOptions { raw_root: raw.to_path_buf(), out: out.to_path_buf(), force: false, batch_images: 7, progress: false }
}

/// The raw release and `prepare all` of it, made once per test binary.
fn prepared() -> &'static (PathBuf, PathBuf, PrepareReport) {
    static ONCE: OnceLock<(PathBuf, PathBuf, PrepareReport)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let raw = scratch("raw");
        raw::write(&raw);
        let out = scratch("out");
        let report = prepare(&DATASETS, &opts(&raw, &out)).unwrap();
        (raw, out, report)
    })
}

/// One cell, whatever its Arrow type (strings of both widths compare by value; the types
/// are compared separately).
#[derive(Debug, PartialEq)]
enum Cell {
    Bytes(Vec<u8>),
    Str(String),
    Int(i64),
    Float(f64),
    List(Vec<Cell>),
}

fn cell(a: &ArrayRef, i: usize) -> Cell {
    match a.data_type() {
        DataType::Binary => Cell::Bytes(a.as_binary::<i32>().value(i).to_vec()),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i).to_string()),
        DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::List(_) => {
            let inner = a.as_list::<i32>().value(i);
            Cell::List((0..inner.len()).map(|j| cell(&inner, j)).collect())
        }
        t => panic!("unexpected column type {t}"),
    }
}

/// Column (name, type) pairs and the rows of an Arrow IPC file.
fn table(path: &Path) -> (Vec<(String, DataType)>, Vec<Vec<Cell>>) {
    let reader = FileReader::try_new(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())), None).unwrap();
    let columns = reader.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for i in 0..batch.num_rows() {
            assert!(batch.columns().iter().all(|c| !c.is_null(i)), "{}: a null in row {i}", path.display());
            rows.push(batch.columns().iter().map(|c| cell(c, i)).collect());
        }
    }
    (columns, rows)
}

/// Our files for `dataset` equal upstream's, column types and rows; returns the row counts.
fn assert_same(dataset: &str) -> Vec<usize> {
    let (_, out, _) = prepared();
    let mut counts = Vec::new();
    for split in ["train", "val", "test"] {
        let name = format!("{dataset}_{split}.arrow");
        let (want_cols, want_rows) = table(&fixtures().join("arrows").join(&name));
        let (got_cols, got_rows) = table(&out.join(&name));
        assert_eq!(got_cols, want_cols, "{name}: columns");
        assert_eq!(got_rows.len(), want_rows.len(), "{name}: row count");
        for (i, (g, w)) in got_rows.iter().zip(&want_rows).enumerate() {
            assert_eq!(g, w, "{name}: row {i}");
        }
        counts.push(got_rows.len());
    }
    counts
}

fn answers(dir: &Path, dataset: &str) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{dataset}_answers.json"))).unwrap()).unwrap()
}

#[test]
fn raw_release_is_the_one_the_goldens_were_made_from() {
    let (raw, _, _) = prepared();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap()).unwrap();
    let want = manifest["raw_files"].as_object().unwrap();
    let mut got = Vec::new();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().display().to_string(), format!("{:016x}", raw::fnv1a(&std::fs::read(&p).unwrap()))));
            }
        }
    }
    walk(raw, raw, &mut got);
    assert_eq!(got.len(), want.len(), "number of raw files");
    for (path, hash) in got {
        assert_eq!(want.get(&path).and_then(Value::as_str), Some(hash.as_str()), "{path}");
    }
}

#[test]
fn vqa_rad_matches_upstream() {
    let counts = assert_same("vqa_vqa_rad");
    assert_eq!(counts, vec![4, 2, 2]);
    let (_, out, report) = prepared();
    assert_eq!(answers(out, "vqa_vqa_rad"), answers(&fixtures().join("answers"), "vqa_vqa_rad"));
    let test = report.files.iter().find(|f| f.path.ends_with("vqa_vqa_rad_test.arrow")).unwrap();
    assert_eq!(test.missing, vec!["data/finetune_data/vqa_rad//images/synpic199.jpg".to_string()]);
    let list = std::fs::read_to_string(out.join("vqa_vqa_rad_test.missing.txt")).unwrap();
    assert_eq!(list, "data/finetune_data/vqa_rad//images/synpic199.jpg\n");
    assert!(!out.join("vqa_vqa_rad_train.missing.txt").exists());
}

#[test]
fn slake_matches_upstream() {
    assert_same("vqa_slack");
    let (_, out, report) = prepared();
    assert_eq!(answers(out, "vqa_slack"), answers(&fixtures().join("answers"), "vqa_slack"));
    let non_english: Vec<usize> = report.files.iter().filter(|f| f.path.to_string_lossy().contains("vqa_slack_")).map(|f| f.dropped.non_english).collect();
    assert_eq!(non_english, vec![1, 1, 0]);
}

#[test]
fn medvqa_2019_matches_upstream() {
    assert_same("vqa_medvqa_2019");
    let (_, out, _) = prepared();
    assert_eq!(answers(out, "vqa_medvqa_2019"), answers(&fixtures().join("answers"), "vqa_medvqa_2019"));
}

#[test]
fn roco_matches_upstream() {
    assert_same("roco");
    let (_, _, report) = prepared();
    let train = report.files.iter().find(|f| f.path.ends_with("roco_train.arrow")).unwrap();
    // "no tab on this line" and the three-field line; the blank line is not counted
    assert_eq!(train.dropped.skipped_lines, 2);
    assert_eq!(train.missing, vec!["data/pretrain_data/roco/train/radiology/images/ROCO_00005.jpg".to_string()]);
}

#[test]
fn irtr_roco_matches_upstream() {
    let counts = assert_same("irtr_roco");
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
}

#[test]
fn medicat_matches_upstream() {
    let counts = assert_same("medicat");
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
}

#[test]
fn melinda_matches_upstream() {
    assert_same("cls_melinda");
}

#[test]
fn mersenne_twister_matches_cpython() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("pyrandom.json")).unwrap()).unwrap();
    let ints = |k: &str| -> Vec<u64> { v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect() };
    let mut r = PyRandom::seed(42);
    assert_eq!((0..8).map(|_| r.getrandbits(32)).collect::<Vec<_>>(), ints("seed42_getrandbits32"));
    let mut r = PyRandom::seed(12345678901);
    assert_eq!((0..4).map(|_| r.getrandbits(32)).collect::<Vec<_>>(), ints("seed12345678901_getrandbits32"));
    let mut r = PyRandom::seed(42);
    for want in v["seed42_shuffles_carried"].as_array().unwrap() {
        let want: Vec<u64> = want.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        let mut x: Vec<u64> = (0..want.len() as u64).collect();
        r.shuffle(&mut x);
        assert_eq!(x, want, "shuffle of {}", want.len());
    }
}

#[test]
fn normalize_word_matches_upstream() {
    let v: Vec<(String, String)> = serde_json::from_str(&std::fs::read_to_string(fixtures().join("normalize.json")).unwrap()).unwrap();
    assert!(v.len() > 20);
    for (input, want) in v {
        assert_eq!(normalize_word(&input), want, "normalize_word({input:?})");
    }
}

#[test]
fn existing_output_is_refused_without_force() {
    let (raw, _, _) = prepared();
    let out = scratch("force");
    prepare(&["vqa_vqa_rad"], &opts(raw, &out)).unwrap();
    let err = prepare(&["vqa_vqa_rad"], &opts(raw, &out)).unwrap_err().to_string();
    assert!(err.contains("--force") && err.contains("vqa_vqa_rad_train.arrow"), "{err}");
    let forced = PrepareOptions { force: true, ..opts(raw, &out) };
    prepare(&["vqa_vqa_rad"], &forced).unwrap();
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".tmp")));
}

#[test]
fn bad_input_names_the_file_and_line() {
    let raw = scratch("bad");
    raw::write(&raw);
    let out = scratch("bad-out");
    let refs = raw.join("pretrain_data/medicat/net/nfs2.corp/allennlp/sanjays/roco_files/roco_val_references.jsonl");
    std::fs::write(&refs, "{\"roco_image_id\": \"PMC205_g1.jpg\"}\n{\"roco_image_id\": oops}\n").unwrap();
    let err = prepare(&["roco"], &opts(&raw, &out)).unwrap_err().to_string();
    assert!(err.contains("roco_val_references.jsonl:2: invalid JSON"), "{err}");
    let rad = raw.join("finetune_data/vqa_rad/valset.json");
    std::fs::write(&rad, r#"[{"image_name": "synpic104.jpg", "qid": 1, "question": "q", "answer": "a"}]"#).unwrap();
    let err = prepare(&["vqa_vqa_rad"], &opts(&raw, &out)).unwrap_err().to_string();
    assert!(err.contains("valset.json") && err.contains("question 1") && err.contains("`answer_type` is missing"), "{err}");
    let med = raw.join("finetune_data/medvqa_2019/val/QA/Organ.csv");
    std::fs::write(&med, "synpic1|no answer field\n").unwrap();
    let err = prepare(&["vqa_medvqa_2019"], &opts(&raw, &out)).unwrap_err().to_string();
    assert!(err.contains("Organ.csv:1: expected `image|question|answer`"), "{err}");
    let mel = raw.join("finetune_data/melinda/dev.csv");
    std::fs::write(&mel, "figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label\nPMC2_f1.jpg,NA,exp,Microscopy,10,3\n").unwrap();
    let err = prepare(&["cls_melinda"], &opts(&raw, &out)).unwrap_err().to_string();
    assert!(err.contains("dev.csv:2: column `caption` is `NA`"), "{err}");
}

/// Writes the raw release for parity/prepare/make_golden.py into `$M3AE_PREPARE_RAW`.
#[test]
#[ignore]
fn write_raw_release() {
    let dir = PathBuf::from(std::env::var("M3AE_PREPARE_RAW").expect("set M3AE_PREPARE_RAW to the folder to write"));
    let _ = std::fs::remove_dir_all(&dir);
    raw::write(&dir);
}
