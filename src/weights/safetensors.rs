//! safetensors files: a reader that copies each tensor once, straight from the file
//! (positioned reads) into its destination (fresh tensors, or the variables of a ready
//! model), and the writer.
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};

use super::dtype;
use super::strict::{self, Fit, ParamSpec, Tally};
use super::{LoadReport, Shapes, StateDict};
use crate::error::{Error, Result};

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
        let entries = parse_header(&header, len - 8 - n).map_err(bad)?;
        let entries = entries.into_iter().map(|(k, mut e)| {
            e.start += 8 + n;
            (k, e)
        });
        Ok(SafetensorsFile { path: path.into(), file, entries: entries.collect() })
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
    pub fn shapes(&self) -> Shapes {
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

    /// Reads every variable of `vs` in place, strictly ([`strict::check`]), without an
    /// intermediate state dict. Variables off the CPU, and float data of another width, go
    /// through a staging tensor.
    pub fn load_into(&self, vs: &nn::VarStore) -> Result<LoadReport> {
        let vars = vs.variables();
        let mut tally = Tally::default();
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                let Some(e) = self.entries.get(name) else {
                    tally.missing(name);
                    continue;
                };
                let fit = strict::check(name, &ParamSpec { shape: var.size(), kind: var.kind() }, &e.shape, e.kind, &self.path)?;
                if fit == Fit::Exact && var.device() == Device::Cpu && var.is_contiguous() {
                    self.read_into(name, e, var)?;
                } else {
                    let staging = Tensor::f_empty(e.shape.as_slice(), (e.kind, Device::Cpu))?;
                    self.read_into(name, e, &staging)?;
                    var.shallow_clone().f_copy_(&staging)?;
                }
                tally.filled(name, fit);
            }
            Ok(())
        })?;
        tally.finish(self.entries.keys(), |k| vars.contains_key(k), &self.path)
    }
}

/// Parses a safetensors JSON header whose data section holds `data_len` bytes: every entry a
/// known dtype, a shape of non-negative dims, and a byte range that matches the shape and lies
/// inside the data. Offsets in the result are relative to the data section.
fn parse_header(header: &[u8], data_len: u64) -> std::result::Result<BTreeMap<String, Entry>, String> {
    let json: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    let mut entries = BTreeMap::new();
    for (name, v) in json.into_iter().filter(|(k, _)| k != "__metadata__") {
        let field = |what: &str| format!("tensor `{name}`: bad or missing `{what}`");
        let kind = v["dtype"].as_str().and_then(dtype::from_safetensors_name).ok_or_else(|| field("dtype"))?;
        let shape: Vec<i64> = v["shape"]
            .as_array()
            .ok_or_else(|| field("shape"))?
            .iter()
            .map(|d| d.as_i64().filter(|&d| d >= 0))
            .collect::<Option<_>>()
            .ok_or_else(|| field("shape"))?;
        let offsets: Vec<u64> = v["data_offsets"].as_array().ok_or_else(|| field("data_offsets"))?.iter().filter_map(|o| o.as_u64()).collect();
        let [s, e] = offsets[..] else { return Err(field("data_offsets")) };
        let nbytes = shape.iter().try_fold(kind.elt_size_in_bytes() as u64, |acc, &d| acc.checked_mul(d as u64));
        if nbytes != e.checked_sub(s) || e > data_len {
            return Err(format!("tensor `{name}` {shape:?}: bytes {s}..{e} do not match its shape or lie outside the file"));
        }
        entries.insert(name, Entry { kind, shape, start: s });
    }
    Ok(entries)
}

/// Validates a safetensors header without a file: what the fuzz target drives. `data_len` is
/// the size of the data section that follows the header.
pub fn check_header(header: &[u8], data_len: u64) -> std::result::Result<Shapes, String> {
    Ok(parse_header(header, data_len)?.into_iter().map(|(k, e)| (k, e.shape)).collect())
}

/// Reads every tensor of a safetensors file onto the CPU, one copy per tensor, with the
/// header validated first (names the file and tensor on any inconsistency).
pub fn read_safetensors(path: &Path) -> Result<StateDict> {
    SafetensorsFile::open(path)?.read_all()
}

/// Writes tensors (contiguous, CPU) to a safetensors file.
pub fn write_safetensors<'a>(path: &Path, tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<()> {
    let mut owned: Vec<(String, Vec<u8>, safetensors::Dtype, Vec<usize>)> = Vec::new();
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let dtype = dtype::to_safetensors(t.kind()).ok_or_else(|| Error::input(name, format!("cannot store dtype {:?}", t.kind())))?;
        let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        owned.push((name.to_string(), data, dtype, t.size().iter().map(|&d| d as usize).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, dt, s)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), d).map_err(|e| Error::input(n, e.to_string()))?)))
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, &None, path).map_err(|e| Error::Safetensors { path: path.into(), reason: e.to_string() })
}
