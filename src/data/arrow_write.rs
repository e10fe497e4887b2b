//! Arrow IPC files in upstream's schemas, as `prepro/make_arrow.py` writes them
//! (`pa.Table.from_pandas(frame)` then `pa.RecordBatchFileWriter`): Python lists are
//! `list<item>` (nullable), ints `int64`, floats `double`, and the schema carries pandas'
//! metadata (a range index, no index column). `str` columns depend on pandas: `string` under
//! upstream's pinned pandas 1.1 / pyarrow 2 ([`Flavor::PANDAS1`], the synthetic data),
//! `large_string` under pandas 3 ([`Flavor::PANDAS3`], what `m3ae data prepare` matches).
//! Each file is written to a temporary name beside it, then renamed: a reader never sees half
//! a file. Used by `data::synth` and `data::prepare`.
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float64Builder, Int64Builder, LargeStringBuilder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};

use crate::{Error, Result};

/// One pre-training or retrieval row (`roco_*`, `medicat_*`, `irtr_roco_*`): upstream's
/// `["image", "caption", "image_id", "split"]`.
#[derive(Debug, Clone)]
pub struct CaptionRow {
    /// Encoded image.
    pub image: Vec<u8>,
    /// Captions of the image.
    pub captions: Vec<String>,
    /// Image id (upstream: the image's path).
    pub image_id: String,
    /// `train`, `val` or `test`.
    pub split: String,
}

/// One VQA row (`vqa_*`): an image with its questions, one list entry per question.
#[derive(Debug, Clone)]
pub struct VqaRow {
    /// Encoded image.
    pub image: Vec<u8>,
    /// Questions.
    pub questions: Vec<String>,
    /// Answer strings per question (`label2ans` of each label).
    pub answers: Vec<Vec<String>>,
    /// Answer labels per question.
    pub answer_labels: Vec<Vec<i64>>,
    /// Soft scores per question and label.
    pub answer_scores: Vec<Vec<f64>>,
    /// Image id.
    pub image_id: String,
    /// Question ids.
    pub question_id: Vec<i64>,
    /// 0 closed, 1 open, per question.
    pub answer_type: Vec<i64>,
    /// `train`, `val` or `test`.
    pub split: String,
}

/// One MELINDA row (`cls_melinda_*`): upstream's `["image", "caption", "image_id", "i_meth",
/// "p_meth", "i_meth_label", "p_meth_label", "split"]`, one list entry per annotation.
#[derive(Debug, Clone)]
pub struct MelindaRow {
    /// Encoded image.
    pub image: Vec<u8>,
    /// Captions.
    pub captions: Vec<String>,
    /// Image id.
    pub image_id: String,
    /// Label ids, per caption.
    pub i_meth: Vec<i64>,
    /// Label ids, per caption.
    pub p_meth: Vec<i64>,
    /// Label ids, per caption.
    pub i_meth_label: Vec<i64>,
    /// Label ids, per caption.
    pub p_meth_label: Vec<i64>,
    /// `train`, `val` or `test`.
    pub split: String,
}

/// The pandas version whose conversion a file reproduces.
#[derive(Debug, Clone, Copy)]
pub struct Flavor {
    /// `str` columns are `large_string` (pandas 3) rather than `string` (pandas 1).
    pub large_strings: bool,
    /// The `creator` in the pandas metadata.
    pub creator: &'static str,
}

impl Flavor {
    /// Upstream's pinned pandas 1.1.5 / pyarrow 2.0.
    pub const PANDAS1: Flavor = Flavor { large_strings: false, creator: "m3ae-rs synth" };
    /// pandas 3 (`str` dtype backed by Arrow `large_string`).
    pub const PANDAS3: Flavor = Flavor { large_strings: true, creator: "m3ae-rs prepare" };

    fn string(self) -> DataType {
        if self.large_strings { DataType::LargeUtf8 } else { DataType::Utf8 }
    }

    fn strings<'a>(self, values: impl Iterator<Item = &'a String>) -> ArrayRef {
        if self.large_strings {
            let mut b = LargeStringBuilder::new();
            values.for_each(|v| b.append_value(v));
            Arc::new(b.finish())
        } else {
            let mut b = StringBuilder::new();
            values.for_each(|v| b.append_value(v));
            Arc::new(b.finish())
        }
    }
}

/// Rows per record batch (keeps each binary column far below its 2 GiB offset limit).
const BATCH_ROWS: usize = 1024;

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t, true)))
}

/// pandas' schema metadata for a frame of `rows` rows with these (column, pandas type) pairs.
fn pandas_metadata(rows: usize, columns: &[(&str, &str)], creator: &str) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            format!(r#"{{"name": "{name}", "field_name": "{name}", "pandas_type": "{ty}", "numpy_type": "object", "metadata": null}}"#)
        })
        .collect();
    format!(
        r#"{{"index_columns": [{{"kind": "range", "name": null, "start": 0, "stop": {rows}, "step": 1}}], "column_indexes": [{{"name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object", "metadata": {{"encoding": "UTF-8"}}}}], "columns": [{}], "creator": {{"library": "{creator}", "version": "{}"}}, "pandas_version": "1.1.5"}}"#,
        cols.join(", "),
        env!("CARGO_PKG_VERSION")
    )
}

/// The schema of `columns` (name, Arrow type, pandas type) for `rows` rows.
fn schema(rows: usize, columns: &[(&str, DataType, &str)], creator: &str) -> Arc<Schema> {
    let fields: Vec<Field> = columns.iter().map(|(n, t, _)| Field::new(*n, t.clone(), true)).collect();
    let pandas: Vec<(&str, &str)> = columns.iter().map(|(n, _, p)| (*n, *p)).collect();
    let meta = [("pandas".to_string(), pandas_metadata(rows, &pandas, creator))].into_iter().collect();
    Arc::new(Schema::new(fields).with_metadata(meta))
}

fn string_lists<'a>(rows: impl Iterator<Item = &'a Vec<String>>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        row.iter().for_each(|v| b.values().append_value(v));
        b.append(true);
    }
    Arc::new(b.finish())
}

fn binaries<'a>(values: impl Iterator<Item = &'a Vec<u8>>) -> ArrayRef {
    let mut b = BinaryBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn int_lists<'a>(rows: impl Iterator<Item = &'a Vec<i64>>) -> ArrayRef {
    let mut b = ListBuilder::new(Int64Builder::new());
    for row in rows {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// `list<list<T>>` from nested rows, `push` appending one innermost value.
macro_rules! nested {
    ($rows:expr, $builder:expr, $push:expr) => {{
        let mut b = ListBuilder::new(ListBuilder::new($builder));
        for row in $rows {
            for inner in row {
                for v in inner {
                    $push(b.values().values(), v);
                }
                b.values().append(true);
            }
            b.append(true);
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

/// An Arrow file being written batch by batch to `<path>.tmp`, renamed to `path` by
/// [`TableWriter::finish`]; dropped unfinished, the temporary file is removed.
pub struct TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    schema: Arc<Schema>,
    flavor: Flavor,
    writer: Option<FileWriter<BufWriter<File>>>,
}

fn arrow_error(path: &Path, e: arrow_schema::ArrowError) -> Error {
    Error::Dataset { path: path.to_path_buf(), column: "*".into(), reason: e.to_string() }
}

impl TableWriter {
    fn create(path: &Path, rows: usize, flavor: Flavor, columns: &[(&str, DataType, &str)]) -> Result<TableWriter> {
        let schema = schema(rows, columns, flavor.creator);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = BufWriter::new(File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
        let writer = FileWriter::try_new(file, &schema).map_err(|e| arrow_error(&tmp, e))?;
        Ok(TableWriter { path: path.to_path_buf(), tmp, schema, flavor, writer: Some(writer) })
    }

    /// A pre-training or retrieval table of `rows` rows.
    pub fn captions(path: &Path, rows: usize, flavor: Flavor) -> Result<TableWriter> {
        let s = flavor.string();
        let columns = [
            ("image", DataType::Binary, "bytes"),
            ("caption", list_of(DataType::Utf8), "list[unicode]"),
            ("image_id", s.clone(), "unicode"),
            ("split", s, "unicode"),
        ];
        TableWriter::create(path, rows, flavor, &columns)
    }

    /// A VQA table of `rows` rows.
    pub fn vqa(path: &Path, rows: usize, flavor: Flavor) -> Result<TableWriter> {
        let s = flavor.string();
        let columns = [
            ("image", DataType::Binary, "bytes"),
            ("questions", list_of(DataType::Utf8), "list[unicode]"),
            ("answers", list_of(list_of(DataType::Utf8)), "list[list[unicode]]"),
            ("answer_labels", list_of(list_of(DataType::Int64)), "list[list[int64]]"),
            ("answer_scores", list_of(list_of(DataType::Float64)), "list[list[float64]]"),
            ("image_id", s.clone(), "unicode"),
            ("question_id", list_of(DataType::Int64), "list[int64]"),
            ("answer_type", list_of(DataType::Int64), "list[int64]"),
            ("split", s, "unicode"),
        ];
        TableWriter::create(path, rows, flavor, &columns)
    }

    /// A MELINDA table of `rows` rows.
    pub fn melinda(path: &Path, rows: usize, flavor: Flavor) -> Result<TableWriter> {
        let s = flavor.string();
        let ints = || list_of(DataType::Int64);
        let columns = [
            ("image", DataType::Binary, "bytes"),
            ("caption", list_of(DataType::Utf8), "list[unicode]"),
            ("image_id", s.clone(), "unicode"),
            ("i_meth", ints(), "list[int64]"),
            ("p_meth", ints(), "list[int64]"),
            ("i_meth_label", ints(), "list[int64]"),
            ("p_meth_label", ints(), "list[int64]"),
            ("split", s, "unicode"),
        ];
        TableWriter::create(path, rows, flavor, &columns)
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| arrow_error(&self.tmp, e))?;
        let writer = self.writer.as_mut().ok_or_else(|| Error::io(&self.tmp, std::io::Error::other("written after finish")))?;
        writer.write(&batch).map_err(|e| arrow_error(&self.tmp, e))
    }

    /// Appends caption rows (one record batch per `BATCH_ROWS`).
    pub fn write_captions(&mut self, rows: &[CaptionRow]) -> Result<()> {
        let f = self.flavor;
        for c in rows.chunks(BATCH_ROWS) {
            self.write(vec![
                binaries(c.iter().map(|r| &r.image)),
                string_lists(c.iter().map(|r| &r.captions)),
                f.strings(c.iter().map(|r| &r.image_id)),
                f.strings(c.iter().map(|r| &r.split)),
            ])?;
        }
        Ok(())
    }

    /// Appends VQA rows.
    pub fn write_vqa(&mut self, rows: &[VqaRow]) -> Result<()> {
        let f = self.flavor;
        for c in rows.chunks(BATCH_ROWS) {
            self.write(vec![
                binaries(c.iter().map(|r| &r.image)),
                string_lists(c.iter().map(|r| &r.questions)),
                nested!(c.iter().map(|r| &r.answers), StringBuilder::new(), |b: &mut StringBuilder, v: &String| b.append_value(v)),
                nested!(c.iter().map(|r| &r.answer_labels), Int64Builder::new(), |b: &mut Int64Builder, v: &i64| b.append_value(*v)),
                nested!(c.iter().map(|r| &r.answer_scores), Float64Builder::new(), |b: &mut Float64Builder, v: &f64| b.append_value(*v)),
                f.strings(c.iter().map(|r| &r.image_id)),
                int_lists(c.iter().map(|r| &r.question_id)),
                int_lists(c.iter().map(|r| &r.answer_type)),
                f.strings(c.iter().map(|r| &r.split)),
            ])?;
        }
        Ok(())
    }

    /// Appends MELINDA rows.
    pub fn write_melinda(&mut self, rows: &[MelindaRow]) -> Result<()> {
        let f = self.flavor;
        for c in rows.chunks(BATCH_ROWS) {
            self.write(vec![
                binaries(c.iter().map(|r| &r.image)),
                string_lists(c.iter().map(|r| &r.captions)),
                f.strings(c.iter().map(|r| &r.image_id)),
                int_lists(c.iter().map(|r| &r.i_meth)),
                int_lists(c.iter().map(|r| &r.p_meth)),
                int_lists(c.iter().map(|r| &r.i_meth_label)),
                int_lists(c.iter().map(|r| &r.p_meth_label)),
                f.strings(c.iter().map(|r| &r.split)),
            ])?;
        }
        Ok(())
    }

    /// Closes the file, syncs it and renames it into place.
    pub fn finish(mut self) -> Result<()> {
        let tmp = self.tmp.clone();
        let io = |e: std::io::Error| Error::io(&tmp, e);
        if let Some(mut writer) = self.writer.take() {
            writer.finish().map_err(|e| arrow_error(&tmp, e))?;
            let file = writer.into_inner().map_err(|e| arrow_error(&tmp, e))?;
            file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a pre-training or retrieval table in one go.
pub fn write_captions(path: &Path, rows: &[CaptionRow], flavor: Flavor) -> Result<()> {
    let mut w = TableWriter::captions(path, rows.len(), flavor)?;
    w.write_captions(rows)?;
    w.finish()
}

/// Writes a VQA table in one go.
pub fn write_vqa(path: &Path, rows: &[VqaRow], flavor: Flavor) -> Result<()> {
    let mut w = TableWriter::vqa(path, rows.len(), flavor)?;
    w.write_vqa(rows)?;
    w.finish()
}
