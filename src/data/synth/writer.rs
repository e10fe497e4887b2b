//! Arrow IPC files in upstream's schemas, as `prepro/make_arrow.py` writes them
//! (`pa.Table.from_pandas(frame)` then `pa.RecordBatchFileWriter`) under its pinned pyarrow 2 /
//! pandas 1.1: `str` columns are `string`, Python lists are `list<item>` (nullable), ints are
//! `int64`, floats `double`, and the schema carries pandas' metadata (a range index, no
//! index column).
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};

use crate::{Error, Result};

/// One pre-training or retrieval row (`roco_*`, `irtr_roco_*`): upstream's
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

/// Rows per record batch (keeps each binary column far below its 2 GiB offset limit).
const BATCH_ROWS: usize = 1024;

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t, true)))
}

/// pandas' schema metadata for a frame of `rows` rows with these (column, pandas type) pairs.
fn pandas_metadata(rows: usize, columns: &[(&str, &str)]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            format!(r#"{{"name": "{name}", "field_name": "{name}", "pandas_type": "{ty}", "numpy_type": "object", "metadata": null}}"#)
        })
        .collect();
    format!(
        r#"{{"index_columns": [{{"kind": "range", "name": null, "start": 0, "stop": {rows}, "step": 1}}], "column_indexes": [{{"name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object", "metadata": {{"encoding": "UTF-8"}}}}], "columns": [{}], "creator": {{"library": "m3ae-rs synth", "version": "{}"}}, "pandas_version": "1.1.5"}}"#,
        cols.join(", "),
        env!("CARGO_PKG_VERSION")
    )
}

/// The schema of `columns` (name, Arrow type, pandas type) for `rows` rows.
fn schema(rows: usize, columns: &[(&str, DataType, &str)]) -> Arc<Schema> {
    let fields: Vec<Field> = columns.iter().map(|(n, t, _)| Field::new(*n, t.clone(), true)).collect();
    let pandas: Vec<(&str, &str)> = columns.iter().map(|(n, _, p)| (*n, *p)).collect();
    let meta = [("pandas".to_string(), pandas_metadata(rows, &pandas))].into_iter().collect();
    Arc::new(Schema::new(fields).with_metadata(meta))
}

/// Writes `batches` (built lazily, `BATCH_ROWS` rows each) to `path`.
fn write(path: &Path, schema: Arc<Schema>, batches: impl Iterator<Item = Vec<ArrayRef>>) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let arrow = |e: arrow_schema::ArrowError| Error::Dataset { path: path.to_path_buf(), column: "*".into(), reason: e.to_string() };
    let file = BufWriter::new(File::create(path).map_err(io)?);
    let mut writer = FileWriter::try_new(file, &schema).map_err(arrow)?;
    for columns in batches {
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(arrow)?;
        writer.write(&batch).map_err(arrow)?;
    }
    writer.finish().map_err(arrow)?;
    let file = writer.into_inner().map_err(arrow)?;
    file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}

fn strings<'a>(values: impl Iterator<Item = &'a String>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
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

/// Writes a pre-training or retrieval table.
pub fn write_captions(path: &Path, rows: &[CaptionRow]) -> Result<()> {
    let schema = schema(
        rows.len(),
        &[
            ("image", DataType::Binary, "bytes"),
            ("caption", list_of(DataType::Utf8), "list[unicode]"),
            ("image_id", DataType::Utf8, "unicode"),
            ("split", DataType::Utf8, "unicode"),
        ],
    );
    write(
        path,
        schema,
        rows.chunks(BATCH_ROWS).map(|c| {
            vec![
                binaries(c.iter().map(|r| &r.image)),
                string_lists(c.iter().map(|r| &r.captions)),
                strings(c.iter().map(|r| &r.image_id)),
                strings(c.iter().map(|r| &r.split)),
            ]
        }),
    )
}

/// Writes a VQA table.
pub fn write_vqa(path: &Path, rows: &[VqaRow]) -> Result<()> {
    let schema = schema(
        rows.len(),
        &[
            ("image", DataType::Binary, "bytes"),
            ("questions", list_of(DataType::Utf8), "list[unicode]"),
            ("answers", list_of(list_of(DataType::Utf8)), "list[list[unicode]]"),
            ("answer_labels", list_of(list_of(DataType::Int64)), "list[list[int64]]"),
            ("answer_scores", list_of(list_of(DataType::Float64)), "list[list[float64]]"),
            ("image_id", DataType::Utf8, "unicode"),
            ("question_id", list_of(DataType::Int64), "list[int64]"),
            ("answer_type", list_of(DataType::Int64), "list[int64]"),
            ("split", DataType::Utf8, "unicode"),
        ],
    );
    write(
        path,
        schema,
        rows.chunks(BATCH_ROWS).map(|c| {
            vec![
                binaries(c.iter().map(|r| &r.image)),
                string_lists(c.iter().map(|r| &r.questions)),
                nested!(c.iter().map(|r| &r.answers), StringBuilder::new(), |b: &mut StringBuilder, v: &String| b.append_value(v)),
                nested!(c.iter().map(|r| &r.answer_labels), Int64Builder::new(), |b: &mut Int64Builder, v: &i64| b.append_value(*v)),
                nested!(c.iter().map(|r| &r.answer_scores), Float64Builder::new(), |b: &mut Float64Builder, v: &f64| b.append_value(*v)),
                strings(c.iter().map(|r| &r.image_id)),
                int_lists(c.iter().map(|r| &r.question_id)),
                int_lists(c.iter().map(|r| &r.answer_type)),
                strings(c.iter().map(|r| &r.split)),
            ]
        }),
    )
}
