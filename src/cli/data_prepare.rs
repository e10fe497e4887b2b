//! `m3ae data prepare DATASET… --raw-root DIR --out DIR [--force]`: upstream's raw releases to
//! its Arrow files (see `m3ae::data::prepare`), with a summary per file.
use std::path::PathBuf;

use m3ae::data::prepare::{missing_list, parse_datasets, prepare, PrepareOptions};

#[derive(clap::Args)]
pub struct PrepareArgs {
    /// roco, medicat, vqa_vqa_rad, vqa_slack, vqa_medvqa_2019, cls_melinda, irtr_roco, or all.
    #[arg(required = true, num_args = 1..)]
    pub datasets: Vec<String>,
    /// The folder upstream calls `data/` (holding pretrain_data/ and finetune_data/).
    #[arg(long)]
    pub raw_root: PathBuf,
    /// Output folder of the `<dataset>_<split>.arrow` files and `<dataset>_answers.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite output files that exist.
    #[arg(long)]
    pub force: bool,
    /// Images read in parallel before each record batch is written (bounds the memory).
    #[arg(long, default_value_t = 256)]
    pub batch_images: usize,
}

/// How many missing images the table's notes name per file (all are in `<file>.missing.txt`).
const MISSING_SHOWN: usize = 3;

/// Prepares the datasets and prints the summary table.
pub fn run(args: &PrepareArgs) -> m3ae::Result<bool> {
    let datasets = parse_datasets(&args.datasets)?;
    let opts = PrepareOptions { raw_root: args.raw_root.clone(), out: args.out.clone(), force: args.force, batch_images: args.batch_images, progress: true };
    let start = std::time::Instant::now();
    let report = prepare(&datasets, &opts)?;
    println!("{:<40} {:>7} {:>7} {:>8} {:>7} {:>8} {:>9}", "file", "rows", "texts", "missing", "short", "skipped", "non-en");
    let mut notes = Vec::new();
    for f in &report.files {
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let d = &f.dropped;
        println!("{name:<40} {:>7} {:>7} {:>8} {:>7} {:>8} {:>9}", f.rows, f.texts, f.missing.len(), d.short_texts, d.skipped_lines, d.non_english);
        if !f.missing.is_empty() {
            let list = missing_list(&f.path);
            let shown: Vec<&str> = f.missing.iter().take(MISSING_SHOWN).map(String::as_str).collect();
            notes.push(format!("{name}: {} image(s) missing, e.g. {}; all in {}", f.missing.len(), shown.join(", "), list.display()));
        }
    }
    println!("rows = images found and written; texts = captions or questions in them; missing = images the annotations name that do not exist;");
    println!("short = texts under 3 words (dropped, as upstream); skipped = caption lines without exactly one tab; non-en = SLAKE questions not in English");
    for n in notes {
        println!("{n}");
    }
    for (path, n) in &report.answers {
        println!("{}: {n} answers (label2ans, vqa_label_size {n})", path.display());
    }
    println!("{} file(s) in {} in {:.1} s", report.files.len(), opts.out.display(), start.elapsed().as_secs_f64());
    Ok(true)
}
