//! Helpers for the checkpoint tests: fixture paths, hand-made archives and pickles, comparisons.
use std::io::Write;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/checkpoint").join(name)
}

/// A fresh scratch folder for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m3ae-ckpt-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A torch-style zip (`archive/<name>` records, stored) written to `path`.
pub fn write_archive(path: &Path, records: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in records {
        zip.start_file(format!("archive/{name}"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// `LONG1` with 8 bytes: any i64.
fn long(i: i64) -> Vec<u8> {
    let mut v = vec![0x8a, 8];
    v.extend(i.to_le_bytes());
    v
}

fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.bytes());
    v
}

/// `{"state_dict": {"w": _rebuild_tensor_v2(storage '0' of `numel` floats, offset, size, stride)}}`.
pub fn tensor_pickle(numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(unicode("state_dict"));
    p.extend(b"}(");
    p.extend(unicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(unicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(long(numel));
    p.extend(b"tQ");
    p.extend(long(offset));
    for dims in [size, stride] {
        p.push(b'(');
        dims.iter().for_each(|&d| p.extend(long(d)));
        p.push(b't');
    }
    p.extend(b"\x89ccollections\nOrderedDict\n)RtRuu.");
    p
}

/// FORMAT.md's err: max|a − b| / max(max|b|, 1e-6).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    if b.numel() == 0 {
        return 0.0;
    }
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    (a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-6)
}

/// Exact equality, bit for bit (dtype, shape and bytes).
pub fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    if a.kind() != b.kind() || a.size() != b.size() {
        return false;
    }
    let bytes = |t: &Tensor| {
        let t = t.contiguous();
        let mut v = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut v, t.numel());
        v
    };
    bytes(a) == bytes(b)
}

/// The project's Python, when present.
pub fn python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    p.exists().then_some(p)
}
