//! The `torch.save` / `torch.jit.save` container: a zip of stored (uncompressed) records
//! under one top-level folder (`archive/data.pkl`, `archive/data/0`, …), memory-mapped.
use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};
use zip::{CompressionMethod, ZipArchive};

use super::pickle;
use super::value::Value;
use crate::error::{Error, Result};

/// The start of a pre-1.6 `torch.save` file: protocol 2, then the LONG1 magic number.
const LEGACY_MAGIC: [u8; 4] = [0x80, 0x02, 0x8a, 0x0a];

/// Largest pickle record read (real `data.pkl` files are kilobytes to a few megabytes).
const MAX_PICKLE_BYTES: usize = 256 << 20;

/// A memory-mapped torch zip archive with its records indexed by name.
pub struct TorchArchive {
    path: PathBuf,
    map: Mmap,
    /// The shared top-level folder, with its trailing `/`.
    prefix: String,
    /// Record name (without the prefix) → byte range in the file.
    records: HashMap<String, std::ops::Range<usize>>,
    /// Compressed records (TorchScript source code), never read.
    compressed: Vec<String>,
}

impl TorchArchive {
    /// Opens and indexes `path`; refuses legacy (pre-1.6) files and records that reach past
    /// the end of the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped can
        // still fault, as with any memory-mapped reader. Pages are populated up front (one
        // pass instead of a fault per page).
        let map = unsafe { MmapOptions::new().populate().map(&file) }.map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Checkpoint { path: path.into(), reason };
        if map.starts_with(&LEGACY_MAGIC) {
            return Err(bad("legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with torch >= 1.6 \
                            (`torch.save(torch.load(f), f2)`)".into()));
        }
        if !map.starts_with(b"PK\x03\x04") {
            return Err(bad("not a torch.save zip archive (no zip signature)".into()));
        }
        let mut zip = ZipArchive::new(Cursor::new(&map[..])).map_err(|e| bad(format!("corrupt zip: {e}")))?;
        let mut prefix: Option<String> = None;
        let mut records = HashMap::new();
        let mut compressed = Vec::new();
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| bad(format!("corrupt zip entry #{i}: {e}")))?;
            let name = entry.name().to_string();
            if entry.is_dir() {
                continue;
            }
            let (top, rest) = name.split_once('/').ok_or_else(|| bad(format!("record `{name}` is not inside the archive folder")))?;
            let top = format!("{top}/");
            if prefix.get_or_insert_with(|| top.clone()) != &top {
                return Err(bad(format!("records under two folders: `{}` and `{top}`", prefix.unwrap_or_default())));
            }
            if entry.compression() != CompressionMethod::Stored || entry.size() != entry.compressed_size() {
                // torch.jit.save deflates its code/ files; no tensor or pickle record is compressed
                compressed.push(rest.to_string());
                continue;
            }
            let start = entry.data_start();
            let range = usize::try_from(start)
                .ok()
                .and_then(|s| Some(s..s.checked_add(usize::try_from(entry.size()).ok()?)?))
                .filter(|r| r.end <= map.len())
                .ok_or_else(|| bad(format!("record `{name}` reaches past the end of the file")))?;
            records.insert(rest.to_string(), range);
        }
        let prefix = prefix.ok_or_else(|| bad("empty zip archive".into()))?;
        Ok(TorchArchive { path: path.into(), map, prefix, records, compressed })
    }

    /// The archive's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about record `name` of this archive.
    pub fn error(&self, name: &str, reason: String) -> Error {
        Error::Checkpoint { path: self.path.join(format!("{}{name}", self.prefix)), reason }
    }

    pub fn has_record(&self, name: &str) -> bool {
        self.records.contains_key(name)
    }

    /// The bytes of record `name` (relative to the archive folder, e.g. `data/0`).
    pub fn record(&self, name: &str) -> Result<&[u8]> {
        let Some(range) = self.records.get(name) else {
            let why = if self.compressed.iter().any(|c| c == name) { "record is compressed" } else { "record is missing" };
            return Err(self.error(name, why.into()));
        };
        Ok(&self.map[range.clone()])
    }

    /// Decodes pickle record `name` (`data.pkl`, `constants.pkl`) after checking the byte order.
    pub fn unpickle(&self, name: &str) -> Result<Value> {
        if let Ok(order) = self.record("byteorder") {
            if order != b"little" {
                return Err(self.error("byteorder", format!("byte order {:?} is not supported", String::from_utf8_lossy(order))));
            }
        }
        let data = self.record(name)?;
        if data.len() > MAX_PICKLE_BYTES {
            return Err(self.error(name, format!("pickle of {} bytes exceeds the {MAX_PICKLE_BYTES}-byte limit", data.len())));
        }
        pickle::parse(data).map_err(|reason| self.error(name, reason))
    }
}
