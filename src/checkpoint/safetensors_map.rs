//! A memory-mapped safetensors reader: tensors are copied once, straight from the page cache.
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::weights::StateDict;

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// Reads every tensor of a safetensors file onto the CPU through a read-only memory map.
pub fn read_safetensors_mapped(path: &Path) -> Result<StateDict> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map; the bytes are copied into tensors before it is dropped.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Safetensors { path: path.into(), reason };
    let st = SafeTensors::deserialize(&map).map_err(|e| bad(e.to_string()))?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| bad(format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}
