//! `m3ae data synth --out DIR [--seed N] [--image-px N] [--scale F]`: the bundled synthetic
//! dataset in upstream's Arrow schemas, with `answers.json` and a trained `tokenizer/`.
use std::path::PathBuf;

use m3ae::data::synth::{generate, SynthOptions};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output folder (created): roco_*, vqa_vqa_rad_*, irtr_roco_* .arrow, answers.json, tokenizer/.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: the same seed writes byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side of the stored square grey PNGs.
    #[arg(long, default_value_t = 128)]
    pub image_px: usize,
    /// Multiplies every count (default: 2000/200/200 pre-training images, 1500/300/300 VQA
    /// questions, 1000/200/200 retrieval pairs for train/val/test).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
}

/// Generates the dataset and prints what was written.
pub fn run(args: &SynthArgs) -> m3ae::Result<bool> {
    let opts = SynthOptions { seed: args.seed, image_px: args.image_px, ..SynthOptions::default() }.scaled(args.scale)?;
    let s = generate(&opts, &args.out)?;
    println!("{:<48} {:>7} {:>7}", "file", "images", "texts");
    for f in &s.files {
        println!("{:<48} {:>7} {:>7}", f.path.display(), f.rows, f.texts);
    }
    println!("{}: {} answer classes (vqa_label_size)", s.answers_path.display(), s.answer_vocab);
    println!("{}: byte-level BPE of {} tokens", s.tokenizer_dir.display(), s.tokenizer_vocab);
    println!("seed {}, {} px, {:.1} s", opts.seed, opts.image_px, s.seconds);
    Ok(true)
}
