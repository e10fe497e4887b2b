//! The MIM/MLM ablation study and its report (`m3ae demo`, `m3ae ablate`).
//!
//! The study pre-trains one model per variant (`full`: MLM+MIM+ITM, `no-mim`, `no-mlm`,
//! `none`: ITM only) with the real `m3ae pretrain`, fine-tunes each (and a model without
//! pre-training) on the downstream tasks with `m3ae finetune`, evaluates the best checkpoint
//! with `m3ae test`, over several seeds, and writes a report folder.
//!
//! - [`presets`]: the demo's small model and schedule.
//! - [`plan`]: the study as `m3ae` command lines with dependencies.
//! - [`runner`]: runs them as child processes, a few at a time, resumably.
//! - [`results`]: the numbers read back and aggregated over seeds.
//! - [`stats`]: paired-by-seed differences with 95% t-intervals.
//! - [`report`], [`figures`]: `report.md`, `results.json`, `losses.png`, `metrics.png`.
//! - [`model_figures`]: `mim_reconstructions.png`, `attention.png` from the study's checkpoints.
pub mod baselines;
pub mod checks;
pub mod figures;
pub mod model_figures;
pub mod plan;
pub mod presets;
pub mod report;
pub mod results;
pub mod runner;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::config::keys::write_json;
use crate::data::synth::generate;
use crate::error::{Error, Result};
use plan::{plan, StudySpec, Variant};
use report::ReportContext;
use results::StudyResults;
use runner::{run_jobs, RunnerOptions};

/// What a finished study returns.
#[derive(Debug)]
pub struct StudyReport {
    pub results: StudyResults,
    /// The Markdown table printed at the end.
    pub table: String,
    /// The study's targets against what it measured, as Markdown.
    pub checks: String,
    /// Every file of the report folder.
    pub files: Vec<PathBuf>,
    /// Jobs run by this invocation (the rest were done before).
    pub jobs_run: usize,
}

/// `m3ae demo`'s options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The report folder (data and runs go inside it).
    pub out: PathBuf,
    /// Seeds 0..seeds (None: the size's default).
    pub seeds: Option<u64>,
    /// The study's size (quick, standard, long).
    pub size: presets::Size,
    /// Jobs at once (default: one per core).
    pub parallel: Option<usize>,
}

/// The fine-tuning tasks of the demo.
pub const DEMO_TASKS: [&str; 2] = ["vqa_vqa_rad", "irtr_roco"];

/// Generates the data when absent, runs the study, writes the report.
pub fn run_demo(o: &DemoOptions) -> Result<StudyReport> {
    let seeds = o.seeds.unwrap_or(o.size.default_seeds());
    if seeds < 1 {
        return Err(Error::Config("--seeds must be at least 1 (the table's spread needs 2)".into()));
    }
    let start = Instant::now();
    let data = o.out.join("data");
    let synth = presets::synth_options(o.size)?;
    let summary_path = data.join("summary.json");
    if !summary_path.is_file() {
        log::info!("generating the demo data into {}", data.display());
        let s = generate(&synth, &data)?;
        let vocab = crate::data::tokenizer::TextTokenizer::load(&s.tokenizer_dir, presets::MAX_TEXT_LEN)?.vocab_size();
        write_json(&s.tokenizer_dir.join("config.json"), &presets::roberta_config(vocab, presets::MAX_TEXT_LEN))?;
        let files: Vec<Value> = s.files.iter().map(|f| json!({"file": f.path.file_name().map(|n| n.to_string_lossy().into_owned()), "images": f.rows, "texts": f.texts})).collect();
        let summary = json!({
            "generator": "m3ae data synth (src/data/synth)", "seed": synth.seed, "image_px": synth.image_px,
            "files": files, "vqa_answers": s.answer_vocab, "tokenizer_vocab": vocab,
        });
        write_json(&summary_path, &summary)?;
    }
    let summary = crate::config::keys::read_json(&summary_path)?;
    let field = |k: &str| summary.get(k).and_then(Value::as_u64).ok_or_else(|| Error::Config(format!("{}: no `{k}`", summary_path.display())));
    let (vqa_labels, vocab) = (field("vqa_answers")? as usize, field("tokenizer_vocab")? as usize);
    let schedule = presets::Schedule::new(o.size);
    let config_file = o.out.join("model.json");
    let tokenizer = data.join("tokenizer");
    write_json(&config_file, &presets::model_config(&data.display().to_string(), &tokenizer.display().to_string(), vocab))?;
    // stage 0's own corpus, and the encoders every run starts from (`vit`, `tokenizer`)
    let encoder_data = o.out.join("data-encoders");
    if !encoder_data.join("roco_val.arrow").is_file() {
        generate(&presets::encoder_synth_options(o.size)?, &encoder_data)?;
    }
    let encoders = o.out.join("runs").join("encoders");
    let path = |p: &Path| p.display().to_string();
    let mut encoder_args = vec!["pretrain-encoders".to_string(), "--out".into(), path(&encoders), "--config".into(), path(&config_file)];
    encoder_args.extend(["--set".into(), format!("data_root={}", Value::from(path(&encoder_data))), "--set".into(), r#"datasets=["roco"]"#.into()]);
    encoder_args.extend(["--epochs".into(), schedule.encoder_epochs.to_string(), "--batch".into(), schedule.encoder_batch.to_string()]);
    let common = vec![("vit".to_string(), Value::from(path(&encoders.join("clip.pt")))), ("tokenizer".to_string(), Value::from(path(&encoders.join("roberta"))))];
    let mut baselines = baselines::chance_levels(synth.irtr_images[2], presets::PATCH_SIZE);
    let words = crate::data::tokenizer::TextTokenizer::load(&tokenizer, presets::MAX_TEXT_LEN)?;
    baselines.insert("MLM acc".into(), baselines::mlm_majority(&data.join("roco_val.arrow"), &words)?);
    let spec = StudySpec {
        out: o.out.clone(),
        variants: Variant::PRETRAINED.to_vec(),
        scratch_baseline: true,
        seeds: (0..seeds).collect(),
        tasks: DEMO_TASKS.iter().map(|t| t.to_string()).collect(),
        config_file: Some(config_file.clone()),
        common,
        pretrain: presets::pretrain_sets(&schedule),
        finetune: DEMO_TASKS.iter().map(|t| (t.to_string(), presets::finetune_sets(t, &schedule, vqa_labels))).collect(),
        encoders: Some(encoder_args),
        baselines,
    };
    let sched = json!({"encoder_epochs": schedule.encoder_epochs, "encoder_batch": schedule.encoder_batch, "batch": schedule.batch, "pretrain_steps": schedule.pretrain_steps, "vqa_steps": schedule.vqa_steps, "irtr_steps": schedule.irtr_steps, "size": format!("{:?}", o.size).to_lowercase()});
    run_study(&spec, o.parallel, summary, sched, start)
}

/// Runs `spec`'s jobs (skipping finished ones) and writes the report.
pub fn run_study(spec: &StudySpec, parallel: Option<usize>, dataset: Value, schedule: Value, start: Instant) -> Result<StudyReport> {
    std::fs::create_dir_all(&spec.out).map_err(|e| Error::io(&spec.out, e))?;
    let jobs = plan(spec);
    let runner = RunnerOptions::for_this_machine(parallel)?;
    log::info!("{} jobs, {} at a time with {} thread(s) each; logs in {}", jobs.len(), runner.parallel, runner.threads, spec.runs().display());
    let jobs_run = run_jobs(&jobs, &spec.runs(), &runner)?;
    let mut results = results::collect(&jobs)?;
    results.baselines = spec.baselines.clone();
    let mut files = Vec::new();
    for (name, draw) in [("losses.png", figures::losses as fn(&StudyResults, &Path) -> Result<()>), ("metrics.png", figures::metrics)] {
        let p = spec.out.join(name);
        draw(&results, &p)?;
        files.push(p);
    }
    files.extend(model_figures::draw(spec, &jobs)?);
    let model = match jobs.iter().find(|j| j.kind == plan::JobKind::Pretrain) {
        Some(j) => {
            let dir = j.run_dir.join("checkpoints/last");
            let config = crate::config::keys::read_json(&dir.join("config.json"))?;
            let arch: serde_json::Map<String, Value> = ["image_size", "patch_size", "vision_encoder_config", "language_encoder_config", "hidden_size", "num_heads", "num_top_layer", "mlp_ratio", "max_text_len", "vocab_size", "mim_decoder_hidden_size", "mim_decoder_num_layers"]
                .iter()
                .filter_map(|k| Some((k.to_string(), config.get(*k)?.clone())))
                .collect();
            json!({"parameters_full_pretraining_model": report::parameter_count(&dir)?, "architecture": arch})
        }
        None => Value::Null,
    };
    let ctx = ReportContext {
        date: report::utc_now(),
        machine: report::machine(),
        dataset,
        model,
        schedule,
        seeds: spec.seeds.clone(),
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    let checks = checks::evaluate(&results);
    let (json_path, md_path) = report::write(spec, &jobs, &results, &checks, &ctx, &files)?;
    files.extend([json_path, md_path]);
    Ok(StudyReport { table: results::markdown_table(&results), checks: checks::markdown(&checks), results, files, jobs_run })
}
