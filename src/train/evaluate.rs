//! Evaluation of a split (upstream's `validation_step` / `test_step` and `epoch_wrapup`):
//! every batch in order, no graph, then the epoch's metrics under upstream's names, and the
//! retrieval recalls when asked. In a multi-process run the batches (and the recall's images)
//! are dealt out over the ranks round robin and the sums and score rows gathered.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::metrics::{recalls, Named, PhaseMetrics, Recalls};
use super::setup::{Pipeline, SplitData};
use super::step::run_micro;
use super::task::TaskKind;
use crate::data::image_io::decode_rgba;
use crate::data::loader::Loader;
use crate::dist::ddp::Ddp;
use crate::error::{Error, Result};
use crate::model::M3aeTransformerSs;
use crate::tasks::retrieval::EncodedTexts;

/// Images decoded and scored at a time while ranking.
const IMAGE_CHUNK: usize = 16;

/// What an evaluation found.
#[derive(Debug)]
pub struct Evaluation {
    /// Upstream's names with their values (`{phase}/the_metric` last).
    pub values: Named,
    /// Samples whose image could not be decoded (left out; see [`crate::data::loader`]).
    pub unreadable_images: u64,
}

impl Evaluation {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// Evaluates `model` on `split` as `phase` (`val` or `test`). `with_recall` adds the
/// retrieval recalls of the split (every image against every text). `metrics` keeps the VQA
/// best epoch across calls. `ddp` shares the work among the run's processes.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(model: &M3aeTransformerSs, task: TaskKind, pipe: &Pipeline, split: &SplitData, phase: &str, with_recall: bool, metrics: &mut PhaseMetrics, ddp: &Ddp) -> Result<Evaluation> {
    let c = &pipe.config;
    let mut loader = Loader::new(split.data.clone(), pipe.tokenizer.clone(), split.transforms.clone(), pipe.collator(), split.loader.clone(), 0)?;
    loader.set_shard(ddp.shard(ddp.world()));
    let bar = indicatif::ProgressBar::new(loader.len() as u64);
    if !ddp.is_main() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_message(phase.to_string());
    // upstream's irtr loss scores each image against false texts: without them only the recalls
    let irtr_without_false_texts = task == TaskKind::Irtr && split.loader.draw_false_text == 0;
    if irtr_without_false_texts {
        log::warn!("{phase}: the irtr loss is left out: it needs false texts, and draw_false_text is 0 (--set draw_false_text=15 computes it); the recalls are computed");
        loader.skip_to(loader.len());
    }
    while let Some((n, batch)) = loader.next_slot() {
        if let Some(batch) = batch {
            let batch = batch?;
            // upstream draws MIM noise and ITM pairings in evaluation too: keyed by (seed, batch)
            tch::manual_seed(super::step::stream_seed(c.seed, u64::MAX, n as u64));
            let mut rng = ChaCha8Rng::seed_from_u64(super::step::stream_seed(c.seed ^ 0x5eed_e7a1, u64::MAX, n as u64) as u64);
            run_micro(model, None, &batch, task, metrics, &mut rng)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut unreadable = [loader.unreadable().len() as f64];
    super::sync::reduce_metrics(ddp, metrics, &mut unreadable)?;
    let rec = if with_recall { Some(split_recalls(model, pipe, split, ddp)?) } else { None };
    Ok(Evaluation { values: metrics.wrapup(phase, &c.loss_names, rec.as_ref()), unreadable_images: unreadable[0] as u64 })
}

/// Recall@k over a split: each image row against every (image, text) sample's text, the way
/// `compute_irtr_recall` ranks them (its image index is the table row). The images are dealt
/// out over `ddp`'s ranks round robin and their score rows gathered back into image order.
pub fn split_recalls(model: &M3aeTransformerSs, pipe: &Pipeline, split: &SplitData, ddp: &Ddp) -> Result<Recalls> {
    let transform = *split.transforms.first().ok_or_else(|| Error::Config("no val transform".into()))?;
    let (mut ids, mut masks, mut text_iids) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0i64;
    let mut images = Vec::new(); // (global image id, dataset, row)
    for ds in &split.data.sets {
        for (i, &(row, _)) in ds.index.iter().enumerate() {
            let enc = pipe.tokenizer.encode(ds.text(i))?;
            ids.extend(enc.input_ids);
            masks.extend(enc.attention_mask);
            text_iids.push(offset + row as i64);
        }
        for row in 0..ds.table.num_rows() {
            images.push((offset + row as i64, ds, row));
        }
        offset += ds.table.num_rows() as i64;
    }
    let l = pipe.config.max_text_len;
    let (ids, masks) = (Tensor::from_slice(&ids).view([-1, l]).to_device(model.device()), Tensor::from_slice(&masks).view([-1, l]).to_device(model.device()));
    tch::no_grad(|| -> Result<Recalls> {
        let texts = EncodedTexts::new(model, &ids, &masks);
        let bar = indicatif::ProgressBar::new(images.len() as u64);
        if !ddp.is_main() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let shard = ddp.shard(ddp.world());
        let mine: Vec<_> = images.iter().enumerate().filter(|(n, _)| shard.owns(*n)).map(|(_, image)| *image).collect();
        let (mut rows, mut iids) = (Vec::new(), Vec::new());
        for chunk in mine.chunks(IMAGE_CHUNK) {
            bar.inc((chunk.len() * ddp.world()) as u64);
            let mut tensors = Vec::new();
            for &(iid, ds, row) in chunk {
                let name = format!("{}, row {row}", ds.table.path.display());
                // the val transform draws nothing; a stream per image keeps any draw independent of the ranks
                let mut rng = ChaCha8Rng::seed_from_u64(pipe.config.seed ^ (iid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                match ds.image_bytes(row).and_then(|b| decode_rgba(b, &name)).and_then(|img| transform.apply(&img, &mut rng)) {
                    Ok(t) => {
                        tensors.push(t);
                        iids.push(iid);
                    }
                    Err(e) => log::warn!("recall: skipping unreadable image: {e}"),
                }
            }
            if !tensors.is_empty() {
                rows.push(texts.scores(model, &Tensor::stack(&tensors, 0).to_device(model.device()))?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
            }
        }
        bar.finish_and_clear();
        let n_texts = text_iids.len() as i64;
        let my_rows = if rows.is_empty() { Tensor::zeros([0, n_texts], (Kind::Float, tch::Device::Cpu)) } else { Tensor::cat(&rows, 0) };
        let (scores, iids) = (ddp.gather_rows(&my_rows)?, ddp.gather_rows(&Tensor::from_slice(&iids))?);
        // image ids grow with the image order: sorting restores one process's rows
        let order = iids.argsort(0, false);
        let (scores, iids) = (scores.index_select(0, &order), Vec::<i64>::try_from(iids.index_select(0, &order))?);
        if iids.is_empty() {
            return Err(Error::Config("recall: no readable image in the split".into()));
        }
        let (r, short) = recalls(&scores, &iids, &text_iids);
        if !short.is_empty() {
            log::warn!("recall: fewer candidates than k ({}); every candidate counts as within the top k (upstream's topk would fail)", short.join(", "));
        }
        Ok(r)
    })
}

/// `m3ae test`'s options.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub task: super::task::Task,
    pub run_dir: std::path::PathBuf,
    /// `best`, `last` (under the run's `checkpoints/`) or a path: a model folder or a `.ckpt`.
    pub checkpoint: String,
    /// The split evaluated: `test` (default) or `val`.
    pub split: String,
    pub overrides: Vec<(String, serde_json::Value)>,
    pub device: tch::Device,
}

/// Evaluates a checkpoint on a split as upstream's `trainer.test` does (`test_only`: the
/// heads load from the checkpoint), logging `{task}/test/…` to the run's `metrics.jsonl` and
/// `test_metrics.json`. Recalls come from the split given (upstream computes them on val;
/// `--split val` reproduces its figures).
pub fn test(o: &TestOptions) -> Result<Evaluation> {
    use super::setup::{load_for_eval, Pipeline};
    let path = match o.checkpoint.as_str() {
        "best" | "last" => o.run_dir.join("checkpoints").join(&o.checkpoint),
        p => std::path::PathBuf::from(p),
    };
    if !path.exists() {
        return Err(Error::Config(format!("--checkpoint: {} does not exist", path.display())));
    }
    let mut overrides = vec![("test_only".to_string(), serde_json::Value::Bool(true))];
    overrides.extend(o.overrides.iter().cloned());
    let (config, built) = load_for_eval(&path, Some(&o.run_dir.join("config.json")), &overrides, o.device)?;
    let pipe = Pipeline::new(&config)?;
    let split = pipe.split(&o.split, false)?;
    let with_recall = o.task.kind == TaskKind::Irtr || config.get_recall_metric;
    // the run's precision, as Lightning's precision plugin runs test_step
    let compute = super::precision::compute_mode(&config, o.device)?;
    let ev = super::precision::autocast(compute, || evaluate(&built.model, o.task.kind, &pipe, &split, "test", with_recall, &mut PhaseMetrics::default(), &Ddp::single(o.device)))??;
    std::fs::create_dir_all(&o.run_dir).map_err(|e| Error::io(&o.run_dir, e))?;
    let step = super::state::saved_step(&path).unwrap_or(0);
    let mut values = ev.values.clone();
    values.push(("test/split_is_val".into(), f64::from(u8::from(o.split == "val"))));
    super::log::MetricsLog::open(&o.run_dir.join("metrics.jsonl"), None)?.write(step, 0, &values)?;
    let out = o.run_dir.join("test_metrics.json");
    let map: serde_json::Map<String, serde_json::Value> = ev.values.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
    crate::config::keys::write_json(&out, &serde_json::json!({ "checkpoint": path, "split": o.split, "metrics": map }))?;
    Ok(ev)
}
