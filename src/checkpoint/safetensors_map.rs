//! A safetensors reader that copies each tensor once, straight from the file (positioned
//! reads) into its destination: fresh tensors, or the variables of a ready model.
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::weights::{LoadReport, StateDict};

/// Largest JSON header accepted.
const MAX_HEADER: u64 = 100 << 20;

/// One header entry: where a tensor's bytes lie in the file.
struct Entry {
    kind: Kind,
    shape: Vec<i64>,
    /// Absolute byte offset in the file.
    start: u64,
}

/// An open safetensors file with its validated header.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    entries: BTreeMap<String, Entry>,
}

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

impl SafetensorsFile {
    /// Opens `path` and checks every entry: known dtype, and a byte range that matches its
    /// shape and lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Safetensors { path: path.into(), reason };
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut n = [0u8; 8];
        file.read_exact_at(&mut n, 0).map_err(|e| bad(format!("no header: {e}")))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n + 8 > len {
            return Err(bad(format!("header of {n} bytes does not fit the {len}-byte file")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact_at(&mut header, 8).map_err(|e| Error::io(path, e))?;
        let json: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
        let mut entries = BTreeMap::new();
        for (name, v) in json.into_iter().filter(|(k, _)| k != "__metadata__") {
            let field = |what: &str| bad(format!("tensor `{name}`: bad or missing `{what}`"));
            let kind = v["dtype"].as_str().and_then(kind_of).ok_or_else(|| field("dtype"))?;
            let shape: Vec<i64> = v["shape"].as_array().ok_or_else(|| field("shape"))?.iter().map(|d| d.as_i64().filter(|&d| d >= 0)).collect::<Option<_>>().ok_or_else(|| field("shape"))?;
            let offsets: Vec<u64> = v["data_offsets"].as_array().ok_or_else(|| field("data_offsets"))?.iter().filter_map(|o| o.as_u64()).collect();
            let [s, e] = offsets[..] else { return Err(field("data_offsets")) };
            let nbytes = shape.iter().try_fold(kind.elt_size_in_bytes() as u64, |acc, &d| acc.checked_mul(d as u64));
            if nbytes != e.checked_sub(s) || 8 + n + e > len {
                return Err(bad(format!("tensor `{name}` {shape:?}: bytes {s}..{e} do not match its shape or lie outside the file")));
            }
            entries.insert(name, Entry { kind, shape, start: 8 + n + s });
        }
        Ok(SafetensorsFile { path: path.into(), file, entries })
    }

    /// Fills the contiguous CPU tensor `t` from `e`'s bytes.
    fn read_into(&self, name: &str, e: &Entry, t: &Tensor) -> Result<()> {
        let nbytes = t.numel() * e.kind.elt_size_in_bytes();
        if nbytes == 0 {
            return Ok(());
        }
        // SAFETY: `t` is a contiguous CPU tensor of exactly `nbytes` bytes that nothing else
        // reads or writes during this call.
        let dst = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, nbytes) };
        self.file.read_exact_at(dst, e.start).map_err(|err| Error::Safetensors { path: self.path.clone(), reason: format!("tensor `{name}`: {err}") })
    }

    /// Every tensor's shape, from the header alone.
    pub fn shapes(&self) -> crate::weights::Shapes {
        self.entries.iter().map(|(k, e)| (k.clone(), e.shape.clone())).collect()
    }

    /// Every tensor, read into fresh CPU tensors.
    pub fn read_all(&self) -> Result<StateDict> {
        let mut out = StateDict::new();
        for (name, e) in &self.entries {
            let t = Tensor::f_empty(e.shape.as_slice(), (e.kind, Device::Cpu))?;
            self.read_into(name, e, &t)?;
            out.insert(name.clone(), t);
        }
        Ok(out)
    }

    /// Reads every variable of `vs` in place (strict: each present with its shape and dtype),
    /// without an intermediate state dict; variables off the CPU go through a staging tensor.
    pub fn load_into(&self, vs: &nn::VarStore) -> Result<LoadReport> {
        let vars = vs.variables();
        let mut report = LoadReport::default();
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                let Some(e) = self.entries.get(name) else {
                    report.missing.push(name.clone());
                    continue;
                };
                if e.shape != var.size() {
                    return Err(Error::ShapeMismatch { path: self.path.clone(), key: name.clone(), expected: var.size(), found: e.shape.clone() });
                }
                if e.kind != var.kind() {
                    return Err(Error::DtypeMismatch { path: self.path.clone(), key: name.clone(), expected: format!("{:?}", var.kind()), found: format!("{:?}", e.kind) });
                }
                if var.device() == Device::Cpu && var.is_contiguous() {
                    self.read_into(name, e, var)?;
                } else {
                    let staging = Tensor::f_empty(e.shape.as_slice(), (e.kind, Device::Cpu))?;
                    self.read_into(name, e, &staging)?;
                    var.shallow_clone().f_copy_(&staging)?;
                }
            }
            Ok(())
        })?;
        report.missing.sort();
        report.unexpected = self.entries.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
        if !report.missing.is_empty() {
            return Err(Error::MissingKeys { path: self.path.clone(), count: report.missing.len(), first: report.missing.iter().take(5).cloned().collect() });
        }
        Ok(report)
    }
}
