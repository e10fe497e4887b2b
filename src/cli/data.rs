//! `m3ae data check DATA_ROOT [--datasets NAME…] [--strict]`, `m3ae data bench IMAGES`,
//! `m3ae data synth --out DIR` (in `data_synth.rs`) and `m3ae data prepare DATASET… --raw-root
//! DIR --out DIR` (in `data_prepare.rs`)
use std::path::PathBuf;

use tch::Device;

use m3ae::data::bench;
use m3ae::data::check;
use m3ae::data::transforms::{Transform, TransformKind};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check upstream's Arrow files: schemas, every image decoded, label ranges.
    Check(CheckArgs),
    /// Measure image pipeline throughput (decode + transform) on the image files of a folder.
    Bench(BenchArgs),
    /// Generate the bundled synthetic radiograph dataset (pre-training, VQA, retrieval) in upstream's schemas.
    Synth(super::data_synth::SynthArgs),
    /// Turn upstream's raw dataset releases into its Arrow files, row for row (upstream's prepro).
    Prepare(super::data_prepare::PrepareArgs),
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Folder of PNG/JPEG/TIFF/BMP/DICOM files.
    pub images: PathBuf,
    /// Output side.
    #[arg(long, default_value_t = 288)]
    pub size: u32,
    /// Upstream transform key.
    #[arg(long, default_value = "clip")]
    pub transform: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Passes over the folder.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Folder holding upstream's `<dataset>_<split>.arrow` files.
    pub data_root: PathBuf,
    /// Only these datasets (roco, medicat, vqa_vqa_rad, vqa_slack, vqa_medvqa_2019, cls_melinda, irtr_roco).
    #[arg(long, num_args = 1..)]
    pub datasets: Vec<String>,
    /// Also fail when any image is unreadable.
    #[arg(long)]
    pub strict: bool,
}

/// Prints the check table; Ok(false) on a schema error, or on unreadable images with --strict.
pub fn run(args: &Args, _device: Device) -> m3ae::Result<bool> {
    match &args.command {
        Command::Check(a) => {
            let report = check::check(&a.data_root, &a.datasets)?;
            print!("{}", report.table());
            Ok(report.passed(a.strict))
        }
        Command::Synth(a) => super::data_synth::run(a),
        Command::Prepare(a) => super::data_prepare::run(a),
        Command::Bench(a) => {
            let files = bench::image_files(&a.images)?;
            if files.is_empty() {
                return Err(m3ae::Error::Config(format!("{}: no image files", a.images.display())));
            }
            let transform = Transform { kind: TransformKind::parse(&a.transform)?, size: a.size };
            let t = bench::measure(&files, transform, a.threads, a.repeats)?;
            println!(
                "rust {} {}px: {} samples in {:.3} s on {} thread(s): {:.1} samples/s",
                a.transform, a.size, t.samples, t.seconds, t.threads, t.per_second()
            );
            Ok(true)
        }
    }
}
