//! Tensor references decoded from a pickle (storage record, offset, shape, strides) and
//! their materialisation from the archive's `data/<key>` records into tch tensors.
use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::zip_archive::TorchArchive;
use crate::error::Result;

/// Most dimensions accepted for one tensor.
const MAX_DIMS: usize = 64;

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The record name under `data/`.
    pub key: String,
    pub kind: Kind,
    /// Declared length in elements of `kind`.
    pub numel: u64,
    /// Where it was saved from (`cpu`, `cuda:0`); read onto the CPU regardless.
    pub location: String,
}

/// A strided view of a storage, as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// The element kind of a `torch.<Name>Storage` class.
fn storage_kind(module: &str, name: &str) -> Option<Kind> {
    if module != "torch" {
        return None;
    }
    crate::weights::dtype::from_storage_class(name)
}

impl StorageRef {
    pub fn new(module: &str, name: &str, key: String, location: String, numel: u64) -> std::result::Result<Self, String> {
        let kind = storage_kind(module, name).ok_or_else(|| format!("unsupported storage type {module}.{name}"))?;
        Ok(StorageRef { key, kind, numel, location })
    }

    /// Declared size in bytes, if it does not overflow.
    fn nbytes(&self) -> Option<u64> {
        self.numel.checked_mul(self.kind.elt_size_in_bytes() as u64)
    }
}

impl TensorRef {
    /// Validates the view against its storage: non-negative sizes, strides and offset, and
    /// every addressed element inside the declared storage (so no shape can ask for more
    /// memory than the storage record holds).
    pub fn new(storage: StorageRef, offset: i64, size: Vec<i64>, stride: Vec<i64>) -> std::result::Result<Self, String> {
        let bad = |why: String| Err(format!("tensor on storage `{}` (size {size:?}, stride {stride:?}, offset {offset}): {why}", storage.key));
        if size.len() != stride.len() || size.len() > MAX_DIMS {
            return bad(format!("{} sizes for {} strides (at most {MAX_DIMS})", size.len(), stride.len()));
        }
        if offset < 0 || size.iter().chain(&stride).any(|&d| d < 0) {
            return bad("negative size, stride or offset".into());
        }
        // last addressed element = offset + Σ (size_i − 1)·stride_i, checked for overflow
        let numel = size.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let Some(numel) = numel else { return bad("element count overflows".into()) };
        if numel > 0 {
            let last = size.iter().zip(&stride).try_fold(offset as u64, |acc, (&d, &s)| acc.checked_add((d as u64 - 1).checked_mul(s as u64)?));
            match last {
                Some(last) if last < storage.numel => {}
                _ => return bad(format!("the view reaches past the storage's {} elements", storage.numel)),
            }
        }
        Ok(TensorRef { storage, offset, size, stride })
    }
}

/// Reads tensors out of an archive, each storage record once.
pub struct TensorReader<'a> {
    archive: &'a TorchArchive,
    storages: HashMap<String, Tensor>,
}

impl<'a> TensorReader<'a> {
    pub fn new(archive: &'a TorchArchive) -> Self {
        TensorReader { archive, storages: HashMap::new() }
    }

    /// The 1-D storage tensor of `s`, read from `data/<key>` (little-endian).
    fn storage(&mut self, s: &StorageRef) -> Result<&Tensor> {
        if !self.storages.contains_key(&s.key) {
            let name = format!("data/{}", s.key);
            let bytes = self.archive.record(&name)?;
            let need = s.nbytes().filter(|&n| n <= bytes.len() as u64).ok_or_else(|| {
                self.archive.error(&name, format!("storage declares {} elements of {:?} but the record holds {} bytes", s.numel, s.kind, bytes.len()))
            })?;
            let t = Tensor::f_from_data_size(&bytes[..need as usize], &[s.numel as i64], s.kind)?;
            self.storages.insert(s.key.clone(), t);
        }
        Ok(&self.storages[&s.key])
    }

    /// A contiguous CPU tensor holding the view `t` describes (strides and offset honoured).
    /// A view of a whole storage shares it; any other view is copied out.
    pub fn read(&mut self, t: &TensorRef) -> Result<Tensor> {
        let v = self.storage(&t.storage)?.f_as_strided(&t.size, &t.stride, Some(t.offset))?;
        let whole = v.numel() as u64 == t.storage.numel;
        Ok(if !v.is_contiguous() { v.f_contiguous()? } else if whole { v } else { v.copy() })
    }
}
