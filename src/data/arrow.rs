//! Typed column access to upstream's Arrow IPC files (`pa.RecordBatchFileWriter` from pandas).
//!
//! Every accessor checks the column's presence and type and returns one value per row, or an
//! error naming the file, the column, and (for bad values) the row.
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, GenericListArray, OffsetSizeTrait, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::convert::fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::{root_as_footer, root_as_message, Block, MessageHeader};
use arrow_schema::DataType;

use crate::{Error, Result};

/// All record batches of one Arrow IPC file, memory-mapped as upstream's `pa.memory_map`
/// reads it: the columns point into the mapping (aligned buffers are not copied), so the
/// images of a multi-gigabyte split stay on disk until a sample reads them.
pub struct ArrowFile {
    /// The file read.
    pub path: PathBuf,
    batches: Vec<RecordBatch>,
    /// `(batch, row within batch)` of each table row.
    rows: Vec<(usize, usize)>,
    /// The mapping the columns point into.
    map: std::sync::Arc<memmap2::Mmap>,
}

/// Deepest list nesting accepted (upstream's deepest column is a list of lists).
const MAX_NESTING: usize = 8;

/// The column types upstream's pandas-written tables use, each fully formed: binary and
/// string (large or not), bool, integers of 8–64 bits, floats, and lists of these (one child):
/// each has a buffer whose size bounds the column's row count.
/// Anything else (dictionaries, unions, decimals, …) is refused with its name.
fn check_field(f: &arrow_ipc::Field, depth: usize) -> std::result::Result<(), String> {
    use arrow_ipc::{Precision, Type};
    if depth > MAX_NESTING {
        return Err(format!("nested deeper than {MAX_NESTING} lists"));
    }
    if f.dictionary().is_some() {
        return Err("dictionary-encoded columns are not supported".into());
    }
    let ok = match f.type_type() {
        // (no Null columns: they have no buffers, so nothing bounds their row count)
        Type::Binary | Type::LargeBinary | Type::Utf8 | Type::LargeUtf8 | Type::Bool => true,
        Type::Int => f.type_as_int().is_some_and(|i| matches!(i.bitWidth(), 8 | 16 | 32 | 64)),
        Type::FloatingPoint => f.type_as_floating_point().is_some_and(|x| matches!(x.precision(), Precision::HALF | Precision::SINGLE | Precision::DOUBLE)),
        Type::List | Type::LargeList => {
            let children = f.children().ok_or("a list without its child")?;
            if children.len() != 1 {
                return Err(format!("a list with {} children", children.len()));
            }
            return check_field(&children.get(0), depth + 1);
        }
        t => return Err(format!("type {t:?} is not one upstream's tables use")),
    };
    if ok { Ok(()) } else { Err(format!("malformed {:?} type", f.type_type())) }
}

/// Checks an IPC message (`meta` bytes of metadata, then `body` bytes) before arrow-rs decodes
/// it: a metadata prefix it can parse, and every buffer of the record or dictionary batch
/// inside the body.
fn check_message(data: &[u8], meta: usize, body: usize, schema: &[arrow_ipc::Field]) -> std::result::Result<(), String> {
    if meta < 8 || meta > data.len() {
        return Err(format!("metadata of {meta} bytes"));
    }
    // an optional 0xFFFFFFFF continuation marker, then the 4-byte length, then the flatbuffer
    let fb = if data[..4] == [0xFF; 4] { &data[8..meta] } else { &data[4..meta] };
    let message = root_as_message(fb).map_err(|e| format!("message: {e}"))?;
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        // the schema has no dictionary-encoded column, so a dictionary batch has no reader
        MessageHeader::DictionaryBatch => return Err("dictionary batches are not supported".into()),
        _ => None,
    };
    let Some(batch) = batch else { return Ok(()) };
    if batch.compression().is_some() {
        return Err("compressed IPC buffers are not supported (upstream's tables are uncompressed)".into());
    }
    let buffers: Vec<arrow_ipc::Buffer> = batch.buffers().iter().flatten().copied().collect();
    for (i, b) in buffers.iter().enumerate() {
        let end = u64::try_from(b.offset()).ok().zip(u64::try_from(b.length()).ok()).and_then(|(o, l)| o.checked_add(l));
        if end.is_none_or(|e| e > body as u64) {
            return Err(format!("buffer {i} (offset {}, length {}) lies outside the {body}-byte body", b.offset(), b.length()));
        }
        // IPC buffers are 8-byte aligned; arrow-rs asserts alignment where it reads them typed
        if b.offset() % 8 != 0 {
            return Err(format!("buffer {i} at offset {} is not 8-byte aligned", b.offset()));
        }
    }
    // every column's nodes and buffers, in the schema's pre-order, as arrow-rs will read them
    let nodes: Vec<arrow_ipc::FieldNode> = batch.nodes().iter().flatten().copied().collect();
    let (mut n, mut b) = (0usize, 0usize);
    for f in schema {
        check_layout(f, &nodes, &buffers, &mut n, &mut b)?;
    }
    Ok(())
}

/// Checks one column's field node (length, null count) and buffers: enough of them, and a
/// validity bitmap covering every row wherever there are nulls (arrow-rs asserts that, and
/// panics, before it validates anything).
fn check_layout(f: &arrow_ipc::Field, nodes: &[arrow_ipc::FieldNode], buffers: &[arrow_ipc::Buffer], n: &mut usize, b: &mut usize) -> std::result::Result<(), String> {
    use arrow_ipc::Type;
    let name = f.name().unwrap_or("?");
    let node = nodes.get(*n).ok_or_else(|| format!("column `{name}`: fewer field nodes than columns"))?;
    *n += 1;
    let (len, nulls) = (node.length(), node.null_count());
    if len < 0 || nulls < 0 || nulls > len {
        return Err(format!("column `{name}`: length {len} with {nulls} nulls"));
    }
    let count = match f.type_type() {
        Type::Null => 0,
        Type::Binary | Type::LargeBinary | Type::Utf8 | Type::LargeUtf8 => 3,
        _ => 2, // validity + values or offsets
    };
    if *b + count > buffers.len() {
        return Err(format!("column `{name}`: fewer buffers than its type needs"));
    }
    if count > 0 && nulls > 0 && (buffers[*b].length() as u64).saturating_mul(8) < len as u64 {
        return Err(format!("column `{name}`: a validity bitmap of {} bytes for {len} rows", buffers[*b].length()));
    }
    // the buffer after the bitmap holds offsets or values: arrow-rs reads it typed and asserts
    // (panics) when it is shorter than the rows need
    let rows = len as u64;
    let need = match f.type_type() {
        Type::Binary | Type::Utf8 | Type::List => rows.saturating_add(1).saturating_mul(4),
        Type::LargeBinary | Type::LargeUtf8 | Type::LargeList => rows.saturating_add(1).saturating_mul(8),
        Type::Bool => rows.div_ceil(8),
        Type::Int => rows.saturating_mul(f.type_as_int().map_or(8, |i| i.bitWidth() as u64 / 8)),
        Type::FloatingPoint => rows.saturating_mul(f.type_as_floating_point().map_or(8, |x| if x.precision() == arrow_ipc::Precision::HALF { 2 } else if x.precision() == arrow_ipc::Precision::SINGLE { 4 } else { 8 })),
        _ => 0,
    };
    // (an empty column still has its one offset: an empty offsets buffer fails arrow-rs's
    // typed read too)
    if count > 1 && (buffers[*b + 1].length() as u64) < need {
        return Err(format!("column `{name}`: {} bytes of offsets or values for {len} rows (needs {need})", buffers[*b + 1].length()));
    }
    // and views the whole buffer as its element type, asserting a whole number of elements
    let width = match f.type_type() {
        Type::Binary | Type::Utf8 | Type::List => 4,
        Type::LargeBinary | Type::LargeUtf8 | Type::LargeList => 8,
        Type::Int | Type::FloatingPoint => need.checked_div(rows).unwrap_or(1).max(1),
        _ => 1,
    };
    if count > 1 && !(buffers[*b + 1].length() as u64).is_multiple_of(width) {
        return Err(format!("column `{name}`: {} bytes is not a whole number of {width}-byte offsets or values", buffers[*b + 1].length()));
    }
    *b += count;
    for child in f.children().iter().flatten() {
        check_layout(&child, nodes, buffers, n, b)?;
    }
    Ok(())
}

/// The IPC file format's leading and trailing magic, `ARROW1`.
const MAGIC: &[u8; 6] = b"ARROW1";

impl ArrowFile {
    /// Maps `path` and decodes its footer, schema and every record batch (each block's range
    /// checked against the file before it is read).
    pub fn open(path: &Path) -> Result<ArrowFile> {
        let bad = |reason: String| Error::Dataset { path: path.to_path_buf(), column: "*".into(), reason };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        if len < 2 * MAGIC.len() + 4 {
            return Err(bad(format!("not an Arrow IPC file: {len} bytes")));
        }
        // SAFETY: the mapping is read-only and lives as long as the buffers that point into it
        // (the Buffer owns it); like pa.memory_map, the file must not be truncated while open.
        let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
        let ptr = std::ptr::NonNull::new(map.as_ptr() as *mut u8).ok_or_else(|| bad("empty mapping".into()))?;
        // SAFETY: `ptr` is valid for `len` bytes for as long as `map`, which the buffer keeps.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, map.clone()) };
        if &buffer[..MAGIC.len()] != MAGIC || &buffer[len - MAGIC.len()..] != MAGIC {
            return Err(bad("not an Arrow IPC file: no ARROW1 magic (a stream, not a file?)".into()));
        }
        let mut trailer = [0u8; 10];
        trailer.copy_from_slice(&buffer[len - 10..]);
        let footer_len = read_footer_length(trailer).map_err(|e| bad(format!("footer: {e}")))?;
        let footer_start = len.checked_sub(10 + footer_len).filter(|&s| s >= MAGIC.len()).ok_or_else(|| bad(format!("footer of {footer_len} bytes does not fit")))?;
        let footer = root_as_footer(&buffer[footer_start..len - 10]).map_err(|e| bad(format!("footer: {e}")))?;
        let schema = footer.schema().ok_or_else(|| bad("footer has no schema".into()))?;
        // arrow-rs converts a schema with `panic!` on what it does not support: accept only
        // the column types upstream's tables use, each fully formed, before converting
        let fields = schema.fields().ok_or_else(|| bad("schema has no fields".into()))?;
        for f in fields.iter() {
            check_field(&f, 0).map_err(|why| bad(format!("column `{}`: {why}", f.name().unwrap_or("?"))))?;
        }
        let columns: Vec<arrow_ipc::Field> = fields.iter().collect();
        if columns.is_empty() {
            return Err(bad("the schema has no columns".into()));
        }
        let schema = std::sync::Arc::new(fb_to_schema(schema));
        let mut decoder = FileDecoder::new(schema, footer.version());
        let block_data = |block: &Block, what: &str| -> Result<Buffer> {
            let start = usize::try_from(block.offset()).ok();
            let (meta, body) = (usize::try_from(block.metaDataLength()).ok(), usize::try_from(block.bodyLength()).ok());
            let size = meta.zip(body).and_then(|(m, b)| m.checked_add(b));
            let data = match (start, size) {
                (Some(s), Some(n)) if s.checked_add(n).is_some_and(|end| end <= footer_start) => buffer.slice_with_length(s, n),
                _ => return Err(bad(format!("{what} block at {} (+{} +{}) lies outside the file", block.offset(), block.metaDataLength(), block.bodyLength()))),
            };
            // arrow-rs slices each column buffer out of the body without checking its range
            // (it panics on a bad one): check the message's buffers first
            // the body starts at an 8-byte boundary of the file (and so of the page-aligned map)
            if (start.unwrap_or(0) + meta.unwrap_or(0)) % 8 != 0 {
                return Err(bad(format!("{what} block at {}: its body is not 8-byte aligned", block.offset())));
            }
            check_message(&data, meta.unwrap_or(0), body.unwrap_or(0), &columns).map_err(|why| bad(format!("{what} block at {}: {why}", block.offset())))?;
            Ok(data)
        };
        for (d, block) in footer.dictionaries().iter().flatten().enumerate() {
            decoder.read_dictionary(block, &block_data(block, "dictionary")?).map_err(|e| bad(format!("dictionary {d}: {e}")))?;
        }
        let mut batches = Vec::new();
        let mut rows = Vec::new();
        for (b, block) in footer.recordBatches().iter().flatten().enumerate() {
            let batch = decoder
                .read_record_batch(block, &block_data(block, "record batch")?)
                .map_err(|e| bad(format!("record batch {b}: {e}")))?
                .ok_or_else(|| bad(format!("record batch {b}: empty message")))?;
            rows.extend((0..batch.num_rows()).map(|r| (batches.len(), r)));
            batches.push(batch);
        }
        Ok(ArrowFile { path: path.to_path_buf(), batches, rows, map })
    }

    /// Drops the file's pages from this process's resident set (`madvise(DONTNEED)`): they
    /// stay in the page cache, and a later read faults them back in. Readers call it as they
    /// go, so a pass over a split many times the memory size keeps the RSS flat.
    pub fn release_pages(&self) {
        // SAFETY: the mapping is read-only and file-backed: dropped pages are re-read from the
        // file on the next access, so no reader sees different bytes.
        let _ = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }

    /// Number of table rows.
    pub fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// An error about `column` of this file.
    pub fn error(&self, column: &str, reason: impl Into<String>) -> Error {
        Error::Dataset { path: self.path.clone(), column: column.into(), reason: reason.into() }
    }

    /// The chunks of `column`, one per record batch.
    fn chunks(&self, column: &str) -> Result<Vec<&ArrayRef>> {
        self.batches
            .iter()
            .map(|b| b.column_by_name(column).ok_or_else(|| self.error(column, "missing")))
            .collect()
    }

    /// The type of `column`, or an error when it is absent.
    pub fn data_type(&self, column: &str) -> Result<DataType> {
        match self.batches.first() {
            Some(b) => {
                let field = b.schema().field_with_name(column).map_err(|_| self.error(column, "missing"))?.clone();
                Ok(field.data_type().clone())
            }
            None => Err(self.error(column, "file has no record batches")),
        }
    }

    /// Encoded bytes of the image at `row` of a binary `column`.
    pub fn binary(&self, column: &str, row: usize) -> Result<&[u8]> {
        let &(b, r) = self.rows.get(row).ok_or_else(|| self.error(column, format!("row {row} out of range")))?;
        let array = self.batches[b].column_by_name(column).ok_or_else(|| self.error(column, "missing"))?;
        if array.is_null(r) {
            return Err(self.error(column, format!("row {row} is null")));
        }
        match array.data_type() {
            DataType::Binary => Ok(array.as_binary::<i32>().value(r)),
            DataType::LargeBinary => Ok(array.as_binary::<i64>().value(r)),
            other => Err(self.error(column, format!("expected binary, found {other}"))),
        }
    }

    /// Checks that `column` exists and holds binary values.
    pub fn check_binary(&self, column: &str) -> Result<()> {
        match self.data_type(column)? {
            DataType::Binary | DataType::LargeBinary => Ok(()),
            other => Err(self.error(column, format!("expected binary, found {other}"))),
        }
    }

    /// A `list<string>` column as one `Vec<String>` per row (null rows are empty).
    pub fn string_lists(&self, column: &str) -> Result<Vec<Vec<String>>> {
        self.lists(column, |values, row| strings(self, column, values, row))
    }

    /// A `list<list<string>>` column as nested strings per row (VQA's `answers`).
    pub fn string_list_lists(&self, column: &str) -> Result<Vec<Vec<Vec<String>>>> {
        self.lists(column, |values, row| {
            let mut out = Vec::with_capacity(values.len());
            for_each_list(values, &mut |inner| {
                out.push(strings(self, column, inner, row)?);
                Ok(())
            })
            .map_err(|e| self.error(column, format!("row {row}: {e}")))?;
            Ok(out)
        })
    }

    /// A plain `string` column (e.g. `image_id`), one value per row (null rows are empty).
    pub fn string_column(&self, column: &str) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(self.num_rows());
        for chunk in self.chunks(column)? {
            out.extend(strings(self, column, chunk, out.len())?);
        }
        Ok(out)
    }

    /// A `list<list<number>>` column as nested `f64`s per row.
    pub fn number_list_lists(&self, column: &str) -> Result<Vec<Vec<Vec<f64>>>> {
        self.lists(column, |values, row| {
            let mut out = Vec::with_capacity(values.len());
            for_each_list(values, &mut |inner| {
                out.push(numbers(self, column, inner, row)?);
                Ok(())
            })
            .map_err(|e| self.error(column, format!("row {row}: {e}")))?;
            Ok(out)
        })
    }

    /// A `list<number>` column as `f64`s per row.
    pub fn number_lists(&self, column: &str) -> Result<Vec<Vec<f64>>> {
        self.lists(column, |values, row| numbers(self, column, values, row))
    }

    /// A `list<T>` column as `Vec<_>` per row, each row's values converted by `convert`.
    fn lists<T>(&self, column: &str, convert: impl Fn(&ArrayRef, usize) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.num_rows());
        for chunk in self.chunks(column)? {
            let mut row_values = |values: ArrayRef| -> Result<()> {
                out.push(convert(&values, out.len())?);
                Ok(())
            };
            match chunk.data_type() {
                DataType::List(_) => list_rows(chunk.as_list::<i32>(), &mut row_values)?,
                DataType::LargeList(_) => list_rows(chunk.as_list::<i64>(), &mut row_values)?,
                other => return Err(self.error(column, format!("expected a list column, found {other}"))),
            }
        }
        Ok(out)
    }
}

/// Calls `f` with each row's values (an empty array for null rows).
fn list_rows<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    f: &mut dyn FnMut(ArrayRef) -> Result<()>,
) -> Result<()> {
    for row in 0..list.len() {
        let values = if list.is_null(row) { list.values().slice(0, 0) } else { list.value(row) };
        f(values)?;
    }
    Ok(())
}

/// Calls `f` with each element of a list array (a nested list level).
fn for_each_list(values: &ArrayRef, f: &mut dyn FnMut(&ArrayRef) -> Result<()>) -> std::result::Result<(), String> {
    let mut call = |v: ArrayRef| f(&v);
    let result = match values.data_type() {
        DataType::List(_) => list_rows(values.as_list::<i32>(), &mut call),
        DataType::LargeList(_) => list_rows(values.as_list::<i64>(), &mut call),
        other => return Err(format!("expected nested lists, found {other}")),
    };
    result.map_err(|e| e.to_string())
}

fn strings(file: &ArrowFile, column: &str, values: &ArrayRef, row: usize) -> Result<Vec<String>> {
    let get = |i: usize, s: &str| if values.is_null(i) { String::new() } else { s.to_string() };
    match values.data_type() {
        DataType::Utf8 => Ok(values.as_string::<i32>().iter().enumerate().map(|(i, s)| get(i, s.unwrap_or(""))).collect()),
        DataType::LargeUtf8 => Ok(values.as_string::<i64>().iter().enumerate().map(|(i, s)| get(i, s.unwrap_or(""))).collect()),
        other => Err(file.error(column, format!("row {row}: expected strings, found {other}"))),
    }
}

fn numbers(file: &ArrowFile, column: &str, values: &ArrayRef, row: usize) -> Result<Vec<f64>> {
    let out: Vec<Option<f64>> = match values.data_type() {
        DataType::Int64 => values.as_primitive::<Int64Type>().iter().map(|v| v.map(|x| x as f64)).collect(),
        DataType::Int32 => values.as_primitive::<Int32Type>().iter().map(|v| v.map(f64::from)).collect(),
        DataType::Float64 => values.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => values.as_primitive::<Float32Type>().iter().map(|v| v.map(f64::from)).collect(),
        other => return Err(file.error(column, format!("row {row}: expected numbers, found {other}"))),
    };
    out.into_iter().collect::<Option<Vec<f64>>>().ok_or_else(|| file.error(column, format!("row {row}: null value")))
}
