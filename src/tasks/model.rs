//! [`M3ae`]: a trained model ready for inference — the network, its config, its tokenizer,
//! the evaluation image transform and, for VQA, the answer vocabulary.
use std::path::{Path, PathBuf};

use image::RgbaImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, Device, Tensor};

use super::answers::{AnswerVocab, ANSWERS_FILE};
use crate::config::M3aeConfig;
use crate::data::image_io::open_rgba_frame;
use crate::data::tokenizer::TextTokenizer;
use crate::data::transforms::{Transform, TransformKind};
use crate::error::{Error, Result};
use crate::model::M3aeTransformerSs;
use crate::train::setup::load_for_eval;

/// What [`M3ae::load_with`] may take from elsewhere than the model folder.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The tokenizer (a `tokenizer.json` or an HF tokenizer folder) instead of the config's.
    pub tokenizer: Option<PathBuf>,
    /// An `answers.json` instead of the folder's own.
    pub answers: Option<PathBuf>,
}

/// A model folder loaded for inference.
pub struct M3ae {
    /// The network, in evaluation mode (every call runs without dropout or gradients).
    pub model: M3aeTransformerSs,
    /// Its resolved config.
    pub config: M3aeConfig,
    /// The tokenizer, padding to `max_text_len`.
    pub tokenizer: TextTokenizer,
    /// Upstream's validation transform at the config's `image_size`.
    pub transform: Transform,
    /// Label → answer, when the folder (or `--answers`) holds the vocabulary.
    pub answers: Option<AnswerVocab>,
    /// Where the model was loaded from.
    pub source: PathBuf,
    /// Owns the weights the model's modules point into.
    _vs: nn::VarStore,
}

impl std::fmt::Debug for M3ae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M3ae").field("source", &self.source).field("transform", &self.transform).field("answers", &self.answers.as_ref().map(|a| a.answers.len())).finish_non_exhaustive()
    }
}

impl M3ae {
    /// Loads the model folder `dir` (`model.safetensors` + `config.json`, as `m3ae convert`
    /// writes and the trainer's `checkpoints/{best,last}` hold; a `.ckpt` with its config also
    /// works) onto `device`, with its tokenizer and its `answers.json` when present.
    pub fn load(dir: &Path, device: Device) -> Result<M3ae> {
        Self::load_with(dir, device, &LoadOptions::default())
    }

    /// [`M3ae::load`] with the tokenizer or answer vocabulary given explicitly.
    pub fn load_with(dir: &Path, device: Device, opts: &LoadOptions) -> Result<M3ae> {
        if !dir.exists() {
            return Err(Error::Config(format!("--model {}: no such folder", dir.display())));
        }
        if dir.is_dir() {
            for f in ["model.safetensors", "config.json"] {
                if !dir.join(f).is_file() {
                    return Err(Error::Checkpoint { path: dir.into(), reason: format!("`{f}` is missing: not a model folder (m3ae convert and the trainer's checkpoints/best|last hold one)") });
                }
            }
        }
        let (config, built) = load_for_eval(dir, None, &[], device)?;
        let tokenizer_path = match &opts.tokenizer {
            Some(p) => p.clone(),
            None => resolve_tokenizer(&config.tokenizer, dir)?,
        };
        let tokenizer = TextTokenizer::load(&tokenizer_path, usize::try_from(config.max_text_len).unwrap_or(0))?;
        let key = config.val_transform_keys.first().map(String::as_str).unwrap_or("clip");
        let size = u32::try_from(config.image_size).map_err(|_| Error::Config(format!("`image_size` {} is not a valid size", config.image_size)))?;
        let transform = Transform { kind: TransformKind::parse(key)?.for_split("val"), size };
        let answers = match &opts.answers {
            Some(p) => Some(AnswerVocab::read(p)?),
            None if dir.is_dir() && dir.join(ANSWERS_FILE).is_file() => Some(AnswerVocab::read(&dir.join(ANSWERS_FILE))?),
            None => None,
        };
        Ok(M3ae { model: built.model, config, tokenizer, transform, answers, source: dir.into(), _vs: built.vs })
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.model.device()
    }

    /// An image file (PNG, JPEG, TIFF, BMP or DICOM; a multi-frame DICOM file's first frame)
    /// through the evaluation transform: [3, S, S] float32 on the CPU.
    pub fn image_from_file(&self, path: &Path) -> Result<Tensor> {
        self.image_from_file_frame(path, 0)
    }

    /// Frame `frame` (from 0; only DICOM files have more than one) of an image file through
    /// the evaluation transform.
    pub fn image_from_file_frame(&self, path: &Path, frame: usize) -> Result<Tensor> {
        if !path.is_file() {
            return Err(Error::Image { name: path.display().to_string(), reason: "no such file".into() });
        }
        self.image_from_rgba(&open_rgba_frame(path, frame)?)
    }

    /// A decoded image through the evaluation transform: [3, S, S] float32 on the CPU.
    pub fn image_from_rgba(&self, img: &RgbaImage) -> Result<Tensor> {
        // the evaluation transforms draw no random numbers; the generator is only a parameter
        self.transform.apply(img, &mut ChaCha8Rng::seed_from_u64(0))
    }

    /// Token ids and attention masks of `texts`, [T, max_text_len] each, on the model's device.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<(Tensor, Tensor)> {
        if texts.is_empty() {
            return Err(Error::input("text", "no text given"));
        }
        let (mut ids, mut masks) = (Vec::new(), Vec::new());
        for t in texts {
            let enc = self.tokenizer.encode(t)?;
            ids.extend(enc.input_ids);
            masks.extend(enc.attention_mask);
        }
        let n = texts.len() as i64;
        let d = self.device();
        Ok((Tensor::from_slice(&ids).view([n, -1]).to_device(d), Tensor::from_slice(&masks).view([n, -1]).to_device(d)))
    }

    /// `images` [3, S, S] or [B, 3, S, S] as a batch on the model's device, its size checked.
    pub fn image_batch(&self, images: &Tensor) -> Result<Tensor> {
        let s = self.config.image_size;
        let batch = match images.dim() {
            3 => images.unsqueeze(0),
            _ => images.shallow_clone(),
        };
        match batch.size().as_slice() {
            &[_, 3, h, w] if h == s && w == s => Ok(batch.to_device(self.device())),
            other => Err(Error::input("image", format!("expected [3, {s}, {s}] or [B, 3, {s}, {s}], got {other:?}"))),
        }
    }
}

/// The config's `tokenizer` as a path: absolute as given; relative, first against the
/// working directory (as the trainer reads it), then against the model folder and the
/// folders above it (a run folder's `checkpoints/best`, a golden set's `model/`).
fn resolve_tokenizer(name: &str, dir: &Path) -> Result<PathBuf> {
    let given = Path::new(name);
    if name.is_empty() {
        return Err(Error::Config(format!("{}: the config names no `tokenizer`: pass --tokenizer PATH", dir.display())));
    }
    if given.is_absolute() || given.exists() {
        return Ok(given.into());
    }
    let found = dir.ancestors().take(4).map(|a| a.join(given)).find(|p| p.exists());
    found.ok_or_else(|| {
        Error::Config(format!(
            "{}: `tokenizer` `{name}` is neither in the working directory nor beside the model folder (a tokenizer.json or an HF tokenizer folder): pass --tokenizer PATH",
            dir.display()
        ))
    })
}
