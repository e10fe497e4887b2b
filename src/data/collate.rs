//! Batching of samples, mirroring upstream's `BaseDataset.collate` and the batch fields its
//! objectives read (`false_image_0` for ITM, `false_text_{i}` for IRTR, VQA targets, labels).
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::dataset::VqaAnswer;
use super::mlm::{MlmMasker, IGNORE_INDEX};
use super::tokenizer::Encoding;
use crate::{Error, Result};

/// One decoded, transformed and tokenized sample.
pub struct Sample {
    /// Sample index in the dataset.
    pub index: usize,
    /// The sample's own seed, keyed by (seed, epoch, index): its MLM masking and MIM noise.
    pub seed: u64,
    /// One [3, H, W] tensor per transform (upstream's "views").
    pub images: Vec<Tensor>,
    /// Per false-image draw, one [3, H, W] tensor per transform.
    pub false_images: Vec<Vec<Tensor>>,
    /// The sample's text.
    pub text: Encoding,
    /// Randomly drawn other texts (IRTR negatives).
    pub false_texts: Vec<Encoding>,
    /// VQA targets (VQA datasets).
    pub vqa: Option<VqaAnswer>,
    /// Class label (classification datasets).
    pub cls_label: Option<i64>,
}

/// Token tensors of one text field; all [B, L] int64.
pub struct TextBatch {
    /// `text_ids`.
    pub ids: Tensor,
    /// `text_masks` (attention mask).
    pub masks: Tensor,
    /// `text_ids_mlm`: ids after MLM replacement.
    pub ids_mlm: Tensor,
    /// `text_labels_mlm`: original ids at masked positions, −100 elsewhere.
    pub labels_mlm: Tensor,
}

impl TextBatch {
    /// 1 + the last column that some row attends to (mask ≠ 0) or has an MLM label at; 0 when
    /// no column is used.
    pub fn used_columns(&self) -> i64 {
        let Some((_, l)) = self.masks.size2().ok().filter(|&(b, l)| b > 0 && l > 0) else { return 0 };
        let used = self.masks.ne(0).logical_or(&self.labels_mlm.ne(IGNORE_INDEX)).any_dim(0, false);
        i64::try_from((used.to_kind(Kind::Int64) * Tensor::arange_start(1, l + 1, (Kind::Int64, used.device()))).max()).unwrap_or(l)
    }

    /// The first `n` columns of every field (all of them when `n` is no smaller).
    fn keep_columns(&mut self, n: i64) {
        for t in [&mut self.ids, &mut self.masks, &mut self.ids_mlm, &mut self.labels_mlm] {
            if let Ok((_, l)) = t.size2() {
                if n < l {
                    *t = t.narrow(1, 0, n).contiguous();
                }
            }
        }
    }
}

/// A collated batch.
pub struct Batch {
    /// Dataset index of each row.
    pub indices: Vec<usize>,
    /// Each row's sample seed ([`Sample::seed`]).
    pub seeds: Vec<u64>,
    /// Per transform, [B, 3, H, W] (zero-padded to the largest image, as upstream).
    pub image: Vec<Tensor>,
    /// Per false-image draw, per transform, [B, 3, H, W].
    pub false_images: Vec<Vec<Tensor>>,
    /// The samples' texts.
    pub text: TextBatch,
    /// Per false-text draw, the drawn texts.
    pub false_texts: Vec<TextBatch>,
    /// [B, V] float32 soft VQA targets (VQA datasets).
    pub vqa_targets: Option<Tensor>,
    /// [B] int64 answer types, 0 closed / 1 open (VQA datasets).
    pub answer_types: Option<Tensor>,
    /// [B] int64 class labels (classification datasets).
    pub cls_labels: Option<Tensor>,
}

/// Builds batches: pads images, stacks token ids and applies MLM masking.
pub struct Collator {
    /// MLM masking of every text field.
    pub masker: MlmMasker,
    /// VQA answer classes V (upstream: max label over train + val, plus one).
    pub vqa_label_size: usize,
}

impl Collator {
    /// Collates `samples` (non-empty, with equal view and draw counts). Each text is masked
    /// with its sample's own stream, so masking does not depend on the batch.
    pub fn collate(&self, samples: Vec<Sample>) -> Result<Batch> {
        let first = samples.first().ok_or_else(|| Error::input("batch", "no samples"))?;
        let (views, draws, false_texts) = (first.images.len(), first.false_images.len(), first.false_texts.len());
        let image = (0..views).map(|v| pad_stack(samples.iter().map(|s| &s.images[v]))).collect::<Result<_>>()?;
        let false_images = (0..draws)
            .map(|d| (0..views).map(|v| pad_stack(samples.iter().map(|s| &s.false_images[d][v]))).collect())
            .collect::<Result<_>>()?;
        let text = self.texts(samples.iter().map(|s| (&s.text, text_rng(s.seed, 0))))?;
        let false_texts = (0..false_texts)
            .map(|d| self.texts(samples.iter().map(|s| (&s.false_texts[d], text_rng(s.seed, 1 + d as u64)))))
            .collect::<Result<_>>()?;
        let vqa: Option<Vec<&VqaAnswer>> = samples.iter().map(|s| s.vqa.as_ref()).collect();
        let (vqa_targets, answer_types) = match vqa {
            Some(answers) => (Some(self.vqa_targets(&answers)?), Some(Tensor::from_slice(&answers.iter().map(|a| a.answer_type).collect::<Vec<_>>()))),
            None => (None, None),
        };
        let cls: Option<Vec<i64>> = samples.iter().map(|s| s.cls_label).collect();
        Ok(Batch {
            indices: samples.iter().map(|s| s.index).collect(),
            seeds: samples.iter().map(|s| s.seed).collect(),
            image,
            false_images,
            text,
            false_texts,
            vqa_targets,
            answer_types,
            cls_labels: cls.map(|c| Tensor::from_slice(&c)),
        })
    }

    /// Stacks encodings and masks them. Returns [B, L] tensors.
    fn texts<'a>(&self, encodings: impl Iterator<Item = (&'a Encoding, ChaCha8Rng)>) -> Result<TextBatch> {
        let (mut ids, mut masks, mut ids_mlm, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut len = None;
        for (enc, mut rng) in encodings {
            if *len.get_or_insert(enc.input_ids.len()) != enc.input_ids.len() {
                return Err(Error::input("text", "encodings of different lengths in one batch"));
            }
            let masked = self.masker.mask(enc, &mut rng);
            ids.extend_from_slice(&enc.input_ids);
            masks.extend_from_slice(&enc.attention_mask);
            ids_mlm.extend(masked.ids);
            labels.extend(masked.labels);
        }
        let l = len.unwrap_or(0) as i64;
        let shape = |v: &[i64]| Tensor::from_slice(v).view([-1, l]);
        Ok(TextBatch { ids: shape(&ids), masks: shape(&masks), ids_mlm: shape(&ids_mlm), labels_mlm: shape(&labels) })
    }

    /// `vqa_targets[i, label] = score`. Returns [B, V] float32.
    fn vqa_targets(&self, answers: &[&VqaAnswer]) -> Result<Tensor> {
        let v = self.vqa_label_size;
        let mut targets = vec![0f32; answers.len() * v];
        for (i, a) in answers.iter().enumerate() {
            for (&label, &score) in a.labels.iter().zip(&a.scores) {
                let label = usize::try_from(label).ok().filter(|&l| l < v).ok_or_else(|| {
                    Error::input("vqa_labels", format!("label {label} outside the {v} answer classes"))
                })?;
                targets[i * v + label] = score as f32;
            }
        }
        Ok(Tensor::from_slice(&targets).view([answers.len() as i64, v as i64]))
    }
}

/// The stream a sample's text field (0: its text, 1 + d: false text d) is masked with.
fn text_rng(seed: u64, field: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(field);
    rng
}

impl Batch {
    /// MIM noise for `random_masking`, [B, patches] uniform in [0, 1): each row from its
    /// sample's own stream (upstream draws `torch.rand` for the whole batch).
    pub fn mim_noise(&self, patches: i64) -> Tensor {
        let mut values = Vec::with_capacity(self.seeds.len() * patches as usize);
        for &seed in &self.seeds {
            let mut rng = text_rng(seed, u64::MAX);
            values.extend((0..patches).map(|_| rng.gen::<f32>()));
        }
        Tensor::from_slice(&values).view([self.seeds.len() as i64, patches])
    }

    /// [`TextBatch::used_columns`] over the text and every false text.
    pub fn used_text_columns(&self) -> i64 {
        std::iter::once(&self.text).chain(&self.false_texts).map(TextBatch::used_columns).max().unwrap_or(0)
    }

    /// Cuts the text and every false text to their first `n` columns (at least 1).
    ///
    /// Upstream pads every text to `max_text_len`. A column that no row attends to is a key
    /// that every softmax gives exp(score + finfo.min) = 0, and a query row that no loss
    /// reads unless it carries an MLM label; RoBERTa's position ids count from the left. So
    /// with `n` ≥ [`Self::used_text_columns`] every loss is the same to float rounding, and
    /// the text encoder, the text stream and every cross-attention to text do n/L of the
    /// work. The trainer cuts all micro-batches of a step (on every rank) to one `n`, so
    /// that accumulation and data parallelism keep computing what one batch would.
    pub fn cut_text(&mut self, n: i64) {
        let n = n.max(1);
        self.text.keep_columns(n);
        for t in &mut self.false_texts {
            t.keep_columns(n);
        }
    }

    /// IRTR text ids: the true text then each false text. Returns [B, 1 + F, L].
    pub fn irtr_text_ids(&self) -> Tensor {
        Tensor::stack(&self.irtr_fields(|t| &t.ids), 1)
    }

    /// IRTR attention masks, laid out as [`Batch::irtr_text_ids`]. Returns [B, 1 + F, L].
    pub fn irtr_text_masks(&self) -> Tensor {
        Tensor::stack(&self.irtr_fields(|t| &t.masks), 1)
    }

    fn irtr_fields(&self, field: impl Fn(&TextBatch) -> &Tensor) -> Vec<Tensor> {
        std::iter::once(&self.text).chain(&self.false_texts).map(|t| field(t).shallow_clone()).collect()
    }

    /// Upstream's `compute_itm` pairing: `B / 2` rows keep their image (label 1), the rest take
    /// `false_image_0` (label 0), in a random order. Returns per-view [B, 3, H, W] images and
    /// [B] int64 labels, or `None` without false images.
    pub fn itm(&self, rng: &mut impl Rng) -> Option<(Vec<Tensor>, Tensor)> {
        let false_images = self.false_images.first()?;
        let b = self.indices.len();
        let mut labels: Vec<i64> = (0..b).map(|i| i64::from(i < b / 2)).collect();
        labels.shuffle(rng);
        let keep = Tensor::from_slice(&labels).to_kind(Kind::Bool).view([b as i64, 1, 1, 1]);
        let images = self.image.iter().zip(false_images).map(|(t, f)| t.where_self(&keep, f)).collect();
        Some((images, Tensor::from_slice(&labels)))
    }
}

/// Stacks [3, h, w] images into [B, 3, H, W], zero-padding each to the largest H and W.
fn pad_stack<'a>(images: impl Iterator<Item = &'a Tensor>) -> Result<Tensor> {
    let images: Vec<&Tensor> = images.collect();
    let mut max = (0, 0);
    for img in &images {
        match img.size().as_slice() {
            &[3, h, w] => max = (max.0.max(h), max.1.max(w)),
            other => return Err(Error::input("image", format!("expected [3, H, W], found {other:?}"))),
        }
    }
    let out = Tensor::zeros([images.len() as i64, 3, max.0, max.1], (Kind::Float, tch::Device::Cpu));
    for (i, img) in images.iter().enumerate() {
        let (h, w) = (img.size()[1], img.size()[2]);
        out.get(i as i64).narrow(1, 0, h).narrow(2, 0, w).copy_(img);
    }
    Ok(out)
}
