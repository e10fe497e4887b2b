//! MELINDA: upstream's `prepro_cls_melinda` and `make_arrow_melinda`. Each CSV row is one
//! caption with four labels; rows are grouped by figure like the caption datasets, and each
//! label column is numbered by its sorted distinct values over all three files (numerically
//! when pandas reads the column as integers, by code point otherwise).
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::captions::{group, locate};
use super::csv::Csv;
use super::python::path_join;
use super::{Ctx, Dropped, FileSummary, PerSplit, PrepareReport};
use crate::data::arrow_write::{Flavor, MelindaRow, TableWriter};
use crate::data::dataset::SPLITS;
use crate::{Error, Result};

/// The label columns, in the output's order.
pub const LABELS: [&str; 4] = ["i_meth", "p_meth", "i_meth_label", "p_meth_label"];

/// A label as pandas types it: an integer column's value or a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Label {
    Int(i64),
    Str(String),
}

struct Sample {
    img_path: String,
    caption: String,
    labels: [Label; 4],
}

/// `prepro_cls_melinda`: `cls_melinda_{train,val,test}.arrow`.
pub fn prepare(ctx: &Ctx, report: &mut PrepareReport) -> Result<()> {
    let image_root = "data/finetune_data/melinda/melinda_images";
    let mut data: PerSplit<Vec<Sample>> = Default::default();
    let mut integer_columns: [Vec<(PathBuf, bool)>; 4] = Default::default();
    let mut source = PathBuf::new();
    for (s, file) in ["train.csv", "dev.csv", "test.csv"].iter().enumerate() {
        source = ctx.raw(&format!("data/finetune_data/melinda/{file}"));
        let csv = Csv::read(&source)?;
        let (figure, caption) = (csv.column("figure_file")?, csv.column("caption")?);
        for (name, c) in [("figure_file", figure), ("caption", caption)] {
            if csv.all_integers(c) {
                return Err(Error::prepare(&source, 0, format!("column `{name}` holds only integers, which pandas reads as numbers, not text")));
            }
        }
        let label_columns: Vec<usize> = LABELS.iter().map(|l| csv.column(l)).collect::<Result<_>>()?;
        let ints: Vec<bool> = label_columns.iter().map(|&c| csv.all_integers(c)).collect();
        for (k, &int) in ints.iter().enumerate() {
            integer_columns[k].push((source.clone(), int));
        }
        for row in 0..csv.rows.len() {
            let mut labels: Vec<Label> = Vec::with_capacity(4);
            for (k, &c) in label_columns.iter().enumerate() {
                let v = csv.value(row, c, LABELS[k])?;
                labels.push(if ints[k] {
                    Label::Int(v.parse().map_err(|_| Error::prepare(&source, csv.rows[row].0, format!("`{}` {v} does not fit in int64", LABELS[k])))?)
                } else {
                    Label::Str(v.to_string())
                });
            }
            data[s].push(Sample {
                img_path: path_join(image_root, csv.value(row, figure, "figure_file")?),
                caption: csv.value(row, caption, "caption")?.to_string(),
                labels: [labels[0].clone(), labels[1].clone(), labels[2].clone(), labels[3].clone()],
            });
        }
    }
    for (k, files) in integer_columns.iter().enumerate() {
        if files.iter().any(|f| f.1) && files.iter().any(|f| !f.1) {
            let ints: Vec<String> = files.iter().filter(|f| f.1).map(|f| f.0.display().to_string()).collect();
            return Err(Error::prepare(&files[0].0, 0, format!("column `{}` is integers in {} only: pandas types it differently per file and upstream's sorted() fails", LABELS[k], ints.join(", "))));
        }
    }
    let ids: Vec<HashMap<Label, i64>> = (0..4)
        .map(|k| {
            let set: BTreeSet<&Label> = data.iter().flatten().map(|s| &s.labels[k]).collect();
            set.into_iter().enumerate().map(|(i, l)| (l.clone(), i as i64)).collect()
        })
        .collect();
    let (found, missing) = locate(ctx, group(data, |s| s.img_path.as_str()), &source)?;
    for (split, (rows, missing)) in found.into_iter().zip(missing).enumerate() {
        let path = ctx.out(&format!("cls_melinda_{}.arrow", SPLITS[split]));
        let files: Vec<PathBuf> = rows.iter().map(|(_, f)| f.clone()).collect();
        let texts = rows.iter().map(|(g, _)| g.samples.len()).sum();
        let mut writer = TableWriter::melinda(&path, files.len(), Flavor::PANDAS3)?;
        let make = |i: usize, image: Vec<u8>| {
            let g = &rows[i].0;
            let col = |k: usize| g.samples.iter().map(|s| ids[k][&s.labels[k]]).collect();
            MelindaRow {
                image,
                captions: g.samples.iter().map(|s| s.caption.clone()).collect(),
                image_id: g.img_path.clone(),
                i_meth: col(0),
                p_meth: col(1),
                i_meth_label: col(2),
                p_meth_label: col(3),
                split: SPLITS[split].to_string(),
            }
        };
        ctx.write_in_batches(&files, &format!("cls_melinda_{}", SPLITS[split]), make, |r| writer.write_melinda(r))?;
        writer.finish()?;
        report.files.push(FileSummary { path, rows: files.len(), texts, missing, dropped: Dropped::default() });
    }
    Ok(())
}
