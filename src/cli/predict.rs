//! `m3ae predict vqa|match|retrieve --model DIR …`: inference on one's own images.
use std::path::{Path, PathBuf};

use m3ae::config::PrecisionMode;
use m3ae::data::image_set::ImageSet;
use m3ae::tasks::{itm, retrieval, vqa, LoadOptions, M3ae};
use m3ae::train::precision;
use serde::Serialize;
use tch::Device;

/// `m3ae predict`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Which prediction.
    #[command(subcommand)]
    pub command: Command,
}

/// What every prediction needs.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A model folder (model.safetensors + config.json): `m3ae convert`'s output or a run's checkpoints/best.
    #[arg(long)]
    pub model: PathBuf,
    /// The tokenizer (tokenizer.json or an HF tokenizer folder), when the model's config names one that is not here.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute under bf16 autocast (the CPU's, on a CPU with avx512_bf16 or amx_bf16; CUDA's
    /// with --cuda): the GEMMs in bf16, the weights as they are (README, "bf16").
    #[arg(long)]
    pub bf16: bool,
}

/// The three predictions.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Answer a question about an image (PNG, JPEG, TIFF, BMP or DICOM) with a VQA-fine-tuned model.
    Vqa {
        #[command(flatten)]
        model: ModelArgs,
        /// The image file.
        #[arg(long)]
        image: PathBuf,
        /// Which frame of a multi-frame DICOM image, from 0 (other images have only frame 0).
        #[arg(long, default_value_t = 0)]
        frame: usize,
        /// The question, in words.
        #[arg(long)]
        question: String,
        /// The answer vocabulary (a JSON list, index = label) when the model folder has no answers.json.
        #[arg(long)]
        answers: Option<PathBuf>,
        /// How many answers to list.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// The probability that a text describes an image (needs the ITM head).
    Match {
        #[command(flatten)]
        model: ModelArgs,
        /// The image file.
        #[arg(long)]
        image: PathBuf,
        /// Which frame of a multi-frame DICOM image, from 0 (other images have only frame 0).
        #[arg(long, default_value_t = 0)]
        frame: usize,
        /// The caption to score.
        #[arg(long)]
        text: String,
    },
    /// Rank the images of a folder or an upstream Arrow file for a text query.
    Retrieve {
        #[command(flatten)]
        model: ModelArgs,
        /// A folder of image files, or an Arrow file with an `image` column.
        #[arg(long)]
        images: PathBuf,
        /// The text to rank the images for.
        #[arg(long)]
        query: String,
        /// How many images to list.
        #[arg(long, default_value_t = 10)]
        top_k: usize,
    },
}

fn load(a: &ModelArgs, answers: Option<&Path>, device: Device) -> m3ae::Result<M3ae> {
    let opts = LoadOptions { tokenizer: a.tokenizer.clone(), answers: answers.map(Path::to_path_buf) };
    M3ae::load_with(&a.model, device, &opts)
}

fn print_json(v: &impl Serialize) -> m3ae::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|source| m3ae::Error::Json { path: "<stdout>".into(), source })?;
    println!("{text}");
    Ok(())
}

/// Runs the prediction and prints it (a table, or JSON with `--json`), under bf16 autocast
/// with `--bf16`.
pub fn run(args: &Args, device: Device) -> m3ae::Result<bool> {
    let model = match &args.command {
        Command::Vqa { model, .. } | Command::Match { model, .. } | Command::Retrieve { model, .. } => model,
    };
    let mode = if model.bf16 { PrecisionMode::Bf16 } else { PrecisionMode::Fp32 };
    let compute = precision::compute_for(mode, device)?;
    precision::autocast(compute, || predict(args, device))?
}

fn predict(args: &Args, device: Device) -> m3ae::Result<bool> {
    match &args.command {
        Command::Vqa { model, image, frame, question, answers, top_k } => {
            let m = load(model, answers.as_deref(), device)?;
            let found = vqa::vqa(&m, &m.image_from_file_frame(image, *frame)?, question, *top_k)?;
            if model.json {
                return print_json(&serde_json::json!({ "image": image, "question": question, "answers": found })).map(|_| true);
            }
            println!("Q: {question}");
            println!("{:>4}  {:>6}  {:>11}  answer", "rank", "label", "probability");
            for (i, a) in found.iter().enumerate() {
                println!("{:>4}  {:>6}  {:>11.4}  {}", i + 1, a.label, a.probability, a.answer.as_deref().unwrap_or("?"));
            }
            if m.answers.is_none() {
                println!("(no answers.json in {}: pass --answers FILE to name the labels)", model.model.display());
            }
        }
        Command::Match { model, image, frame, text } => {
            let m = load(model, None, device)?;
            let s = itm::itm(&m, &m.image_from_file_frame(image, *frame)?, text)?;
            if model.json {
                return print_json(&serde_json::json!({ "image": image, "text": text, "match": s })).map(|_| true);
            }
            println!("match probability {:.4}  (itm logits: no match {:.4}, match {:.4})", s.probability, s.logits[0], s.logits[1]);
        }
        Command::Retrieve { model, images, query, top_k } => {
            let m = load(model, None, device)?;
            let set = ImageSet::open(images)?;
            let r = retrieval::retrieve(&m, &set, query, *top_k)?;
            if model.json {
                return print_json(&serde_json::json!({ "query": query, "retrieval": r })).map(|_| true);
            }
            println!("query: {query}  ({} images ranked by {})", r.ranked, r.scorer);
            println!("{:>4}  {:>10}  image", "rank", "score");
            for h in &r.hits {
                println!("{:>4}  {:>10.4}  {}", h.rank, h.score, h.name);
            }
            for (name, why) in &r.unreadable {
                println!("unreadable, left out: {name}: {why}");
            }
        }
    }
    Ok(true)
}
