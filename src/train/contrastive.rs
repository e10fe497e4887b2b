//! Stage 0 (`m3ae pretrain-encoders`): ConVIRT/CLIP-style contrastive pre-training of the two
//! unimodal towers M3AE starts from, for users with no CLIP or RoBERTa download.
//!
//! The towers are the port's own (`model::vision::Clip` under `vision_encoder.`, `RobertaModel`
//! under `language_encoder.`: the modules M3AE builds). The image feature is the ViT's CLS row
//! after `ln_post`, the text feature RoBERTa's `<s>` row after its last layer (as M3AE's
//! `infer` computes both); each goes through a bias-free projection (CLIP's `visual.proj` and
//! `text_projection`), is L2-normalised, and a symmetric InfoNCE loss with a learnable
//! temperature (CLIP's `logit_scale`, started at 1/0.07, its exponential capped at 100) pulls
//! each image to its own caption among the batch. [`crate::weights::encoders`] saves the
//! result where `vit` and `tokenizer` load it.
use tch::nn::{self, Init, OptimizerConfig};
use tch::{Kind, Tensor};

use super::setup::Pipeline;
use crate::config::M3aeConfig;
use crate::data::loader::Loader;
use crate::error::{Error, Result};
use crate::model::bert::extended_attention_mask;
use crate::model::text::RobertaModel;
use crate::model::vision::Clip;

/// CLIP's cap on `exp(logit_scale)`.
pub const MAX_LOGIT_SCALE: f64 = 100.0;

/// The recipe of stage 0.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContrastiveOptions {
    /// Passes over the training pairs.
    pub epochs: usize,
    /// Pairs per step: each image's caption is told apart from `batch - 1` others.
    pub batch: usize,
    /// AdamW's learning rate (constant).
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Width of the shared embedding space.
    pub proj_dim: i64,
    /// The starting temperature (CLIP: 0.07).
    pub init_temperature: f64,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions { epochs: 12, batch: 64, lr: 1e-3, weight_decay: 0.01, proj_dim: 64, init_temperature: 0.07 }
    }
}

impl ContrastiveOptions {
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("pretrain-encoders: {what}")));
        if self.epochs == 0 || self.batch < 2 {
            return bad(format!("epochs {} must be ≥ 1 and batch {} ≥ 2 (a contrast needs two pairs)", self.epochs, self.batch));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("lr {} must be > 0 and weight decay {} ≥ 0", self.lr, self.weight_decay));
        }
        if self.proj_dim < 1 || !(self.init_temperature > 1.0 / MAX_LOGIT_SCALE && self.init_temperature.is_finite()) {
            return bad(format!("proj_dim {} must be ≥ 1 and the temperature {} above 1/{MAX_LOGIT_SCALE}", self.proj_dim, self.init_temperature));
        }
        Ok(())
    }
}

/// The two towers, their projections and the temperature, in one VarStore whose keys are
/// M3AE's (`vision_encoder.…`, `language_encoder.…`) plus `visual_proj`, `text_projection`
/// and `logit_scale`.
pub struct Towers {
    pub vs: nn::VarStore,
    pub vision: Clip,
    pub text: RobertaModel,
    /// [vision width, proj_dim]: CLIP's `visual.proj`.
    pub visual_proj: Tensor,
    /// [text width, proj_dim]: CLIP's `text_projection`.
    pub text_projection: Tensor,
    /// Scalar, the log of the inverse temperature.
    pub logit_scale: Tensor,
}

impl Towers {
    /// Fresh towers of the shapes `config` describes (its encoder configs resolved), drawn
    /// from `config.seed`; the projections get CLIP's initialisation (normal, std width^-½).
    pub fn new(config: &M3aeConfig, opts: &ContrastiveOptions) -> Result<Towers> {
        let (vision_cfg, text_cfg) = (config.vision()?, config.text()?);
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let vision = Clip::new(&root / "vision_encoder", &vision_cfg, config.image_size);
        let text = RobertaModel::new(&root / "language_encoder", &text_cfg);
        let proj = |name: &str, width: i64| root.var(name, &[width, opts.proj_dim], Init::Randn { mean: 0.0, stdev: (width as f64).powf(-0.5) });
        let visual_proj = proj("visual_proj", vision_cfg.width);
        let text_projection = proj("text_projection", text_cfg.hidden_size);
        let logit_scale = root.var("logit_scale", &[], Init::Const((1.0 / opts.init_temperature).ln()));
        Ok(Towers { vs, vision, text, visual_proj, text_projection, logit_scale })
    }

    /// Refuses pairs the towers cannot read: an image of another size, a text longer than
    /// the RoBERTa position table.
    pub fn check(&self, pairs: &Pairs, what: &str) -> Result<()> {
        let (len, positions) = (pairs.ids.size()[1], self.text.config.max_position_embeddings);
        if len + 1 >= positions {
            return Err(Error::Config(format!(
                "pretrain-encoders: the {what} texts are {len} tokens wide but RoBERTa has {positions} position embeddings: lower `max_text_len` below {} or raise `max_position_embeddings` in the RoBERTa config",
                positions - 1
            )));
        }
        let (img, grid) = (pairs.image.size(), self.vision.visual.positional_embedding.size()[0]);
        let p = self.vision.visual.patch_size;
        if img.len() != 4 || img[2] % p != 0 || (img[2] / p) * (img[3] / p) + 1 != grid {
            return Err(Error::Config(format!("pretrain-encoders: the {what} images are {img:?}, the vision tower's position table has {grid} rows (patch {p}): check `image_size`")));
        }
        Ok(())
    }

    /// The unit-norm image and text embeddings [B, proj_dim] of a batch of pairs.
    pub fn embed(&self, image: &Tensor, ids: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
        let v = self.vision.visual.forward(image, None).select(1, 0).matmul(&self.visual_proj);
        let t = self.text.forward_t(ids, &extended_attention_mask(mask, Kind::Float), train).select(1, 0).matmul(&self.text_projection);
        (normalize(&v), normalize(&t))
    }
}

fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [-1], true).clamp_min(1e-12)
}

/// The symmetric InfoNCE loss of unit-norm embeddings `image`, `text` [B, D] (row i of each is
/// a pair): logits = min(exp(logit_scale), 100) · image·textᵀ, the mean of the cross-entropy
/// over each row (image → text) and over each column (text → image). Also returns the
/// in-batch top-1 accuracy, averaged over both directions.
pub fn clip_loss(image: &Tensor, text: &Tensor, logit_scale: &Tensor) -> (Tensor, f64) {
    let n = image.size()[0];
    let logits = image.matmul(&text.tr()) * logit_scale.exp().clamp_max(MAX_LOGIT_SCALE);
    let labels = Tensor::arange(n, (Kind::Int64, image.device()));
    let ce = |l: &Tensor| l.log_softmax(-1, Kind::Float).nll_loss(&labels);
    let loss = (ce(&logits) + ce(&logits.tr())) / 2.0;
    let hits = |l: &Tensor| l.argmax(-1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    let acc = (hits(&logits) + hits(&logits.tr())) / 2.0;
    (loss, acc)
}

/// Image–caption pairs held in memory: the images through the split's evaluation transform
/// (deterministic), one caption each, tokenized and padded.
pub struct Pairs {
    pub image: Tensor,
    pub ids: Tensor,
    pub mask: Tensor,
}

impl Pairs {
    /// Every pair of `split` (its first caption per text sample, as the datasets index them).
    pub fn load(pipe: &Pipeline, split: &str) -> Result<Pairs> {
        let data = pipe.split(split, false)?;
        let mut cfg = data.loader.clone();
        (cfg.draw_false_image, cfg.draw_false_text, cfg.shuffle, cfg.batch_size) = (0, 0, false, 128);
        let mut loader = Loader::new(data.data.clone(), pipe.tokenizer.clone(), data.transforms.clone(), pipe.collator(), cfg, 0)?;
        let (mut images, mut ids, mut masks) = (Vec::new(), Vec::new(), Vec::new());
        while let Some((_, batch)) = loader.next_slot() {
            let Some(batch) = batch else { continue };
            let b = batch?;
            images.push(b.image.first().ok_or_else(|| Error::Config(format!("split `{split}`: a batch without images")))?.shallow_clone());
            ids.push(b.text.ids);
            masks.push(b.text.masks);
        }
        if images.is_empty() {
            return Err(Error::Config(format!("pretrain-encoders: split `{split}` of `datasets` {:?} under {} holds no pairs", pipe.config.datasets, pipe.config.data_root)));
        }
        Ok(Pairs { image: Tensor::cat(&images, 0), ids: Tensor::cat(&ids, 0), mask: Tensor::cat(&masks, 0) })
    }

    pub fn len(&self) -> i64 {
        self.image.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rows(&self, idx: &Tensor) -> (Tensor, Tensor, Tensor) {
        (self.image.index_select(0, idx), self.ids.index_select(0, idx), self.mask.index_select(0, idx))
    }
}

/// Validation of the towers on `pairs`: the mean loss and in-batch accuracy over full batches
/// of `batch` (as in training), and full-split recall@1 (every image against every caption).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContrastiveEval {
    pub loss: f64,
    pub inbatch_acc: f64,
    /// Chance of the in-batch accuracy: 1 / batch.
    pub inbatch_chance: f64,
    pub r1: f64,
    pub n: i64,
}

pub fn evaluate(towers: &Towers, pairs: &Pairs, batch: usize) -> ContrastiveEval {
    tch::no_grad(|| {
        let (i, t) = towers.embed(&pairs.image, &pairs.ids, &pairs.mask, false);
        let n = pairs.len();
        let b = (batch as i64).min(n);
        let (mut losses, mut accs) = (Vec::new(), Vec::new());
        for s in (0..=n - b).step_by(b as usize) {
            let (l, a) = clip_loss(&i.narrow(0, s, b), &t.narrow(0, s, b), &towers.logit_scale);
            losses.push(l.double_value(&[]));
            accs.push(a);
        }
        let labels = Tensor::arange(n, (Kind::Int64, i.device()));
        let sim = i.matmul(&t.tr());
        let r1 = |s: &Tensor| s.argmax(-1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        ContrastiveEval { loss: mean(&losses), inbatch_acc: mean(&accs), inbatch_chance: 1.0 / b as f64, r1: (r1(&sim) + r1(&sim.tr())) / 2.0, n }
    })
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub train_inbatch_acc: f64,
    pub temperature: f64,
    pub val: ContrastiveEval,
}

/// Trains `towers` on `train` for `opts.epochs` (each epoch a fresh permutation, drawn from
/// torch's generator after `Towers::new` seeded it; incomplete last batch dropped), with
/// torch's AdamW at a constant rate, validating on `val` after each epoch (`on_epoch` sees it).
pub fn train(towers: &Towers, train: &Pairs, val: &Pairs, opts: &ContrastiveOptions, mut on_epoch: impl FnMut(&EpochLog)) -> Result<Vec<EpochLog>> {
    opts.check()?;
    towers.check(train, "training")?;
    towers.check(val, "validation")?;
    let b = opts.batch as i64;
    if train.len() < b {
        return Err(Error::Config(format!("pretrain-encoders: {} training pairs, fewer than one batch of {b}", train.len())));
    }
    let mut opt = nn::AdamW { wd: opts.weight_decay, ..Default::default() }.build(&towers.vs, opts.lr)?;
    let mut logs = Vec::new();
    let mut step = 0u64;
    for epoch in 1..=opts.epochs {
        let perm = Tensor::randperm(train.len(), (Kind::Int64, tch::Device::Cpu));
        let (mut loss_sum, mut acc_sum, mut steps) = (0.0, 0.0, 0.0);
        for s in (0..=train.len() - b).step_by(b as usize) {
            let (image, ids, mask) = train.rows(&perm.narrow(0, s, b));
            let (i, t) = towers.embed(&image, &ids, &mask, true);
            let (loss, acc) = clip_loss(&i, &t, &towers.logit_scale);
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                return Err(Error::Training { step, reason: format!("contrastive loss is {value}") });
            }
            opt.backward_step(&loss);
            step += 1;
            (loss_sum, acc_sum, steps) = (loss_sum + value, acc_sum + acc, steps + 1.0);
        }
        let temperature = 1.0 / towers.logit_scale.exp().clamp_max(MAX_LOGIT_SCALE).double_value(&[]);
        let log = EpochLog { epoch, step, train_loss: loss_sum / steps, train_inbatch_acc: acc_sum / steps, temperature, val: evaluate(towers, val, opts.batch) };
        on_epoch(&log);
        logs.push(log);
    }
    Ok(logs)
}

/// Where [`Towers::save`] wrote the encoders.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedEncoders {
    /// The OpenAI-CLIP state dict: the `vit` of a run that starts from it.
    pub clip: std::path::PathBuf,
    /// The HF RoBERTa folder (weights, config.json, tokenizer files): its `tokenizer`.
    pub roberta: std::path::PathBuf,
}

impl Towers {
    /// The variables under `prefix`, by their M3AE key.
    pub fn state_dict(&self, prefix: &str) -> crate::weights::StateDict {
        self.vs.variables().into_iter().filter(|(k, _)| k.starts_with(prefix)).collect()
    }

    /// Saves the towers into `out` as `clip.pt` (with the projections and the temperature
    /// under CLIP's names) and `roberta/` (with `tokenizer_dir`'s config and tokenizer files).
    pub fn save(&self, out: &std::path::Path, tokenizer_dir: &std::path::Path) -> Result<SavedEncoders> {
        use crate::weights::encoders::{write_clip, write_roberta};
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let saved = SavedEncoders { clip: out.join("clip.pt"), roberta: out.join("roberta") };
        let extra = [("visual.proj", &self.visual_proj), ("text_projection", &self.text_projection), ("logit_scale", &self.logit_scale)];
        write_clip(&saved.clip, &self.state_dict("vision_encoder."), &extra)?;
        write_roberta(&saved.roberta, &self.state_dict("language_encoder."), tokenizer_dir)?;
        Ok(saved)
    }
}
