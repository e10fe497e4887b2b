//! Upstream's image transforms (`m3ae/transforms/transform.py`) on RGBA images.
//!
//! `clip`: Resize(short side = S, Pillow bicubic) → CenterCrop(S) → drop alpha → ToTensor →
//! Normalize(CLIP mean/std). `clip_resizedcrop` replaces the Resize with
//! RandomResizedCrop(S, scale 0.9–1.0, ratio 3/4–4/3); `clip_randaug` runs RandAugment(2, 9)
//! on the RGB image first. `imagenet` and `vit` are the same Resize/CenterCrop on the RGB image
//! with ImageNet or Inception (0.5/0.5) normalization. Randomness comes from the caller's seeded
//! RNG, so draws differ from Python's `random`/`torch` streams while following the same laws.
use std::path::Path;

use image::RgbaImage;
use rand::Rng;
use tch::Tensor;

use super::image_io::open_rgba;
use super::randaug::RandAugment;
use super::resize::{crop, resize_bicubic, resize_bicubic_window};
use crate::{Error, Result};

/// Per-channel mean and std applied after ToTensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalization {
    /// OpenAI CLIP's statistics, written as upstream writes them.
    #[allow(clippy::excessive_precision)]
    pub const CLIP: Normalization = Normalization {
        mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
        std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
    };
    /// ImageNet statistics (`imagenet_normalize`).
    pub const IMAGENET: Normalization = Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    /// Inception's 0.5/0.5 (`inception_normalize`, used by `vit`).
    pub const INCEPTION: Normalization = Normalization { mean: [0.5; 3], std: [0.5; 3] };
}

/// One of upstream's transform keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// `clip`: resize, center crop, CLIP normalization.
    Clip,
    /// `clip_resizedcrop`: random resized crop, center crop, CLIP normalization.
    ClipResizedCrop,
    /// `clip_randaug`: RandAugment(2, 9), then `clip`.
    ClipRandAug,
    /// `imagenet`: resize, center crop, ImageNet normalization.
    ImageNet,
    /// `imagenet_randaug`: RandAugment(2, 9), then `imagenet`.
    ImageNetRandAug,
    /// `vit`: resize, center crop, Inception normalization.
    Vit,
    /// `vit_randaug`: RandAugment(2, 9), then `vit`.
    VitRandAug,
}

impl TransformKind {
    /// Parses an upstream key (`clip`, `clip_randaug`, …).
    pub fn parse(key: &str) -> Result<TransformKind> {
        Ok(match key {
            "clip" => TransformKind::Clip,
            "clip_resizedcrop" => TransformKind::ClipResizedCrop,
            "clip_randaug" => TransformKind::ClipRandAug,
            "imagenet" => TransformKind::ImageNet,
            "imagenet_randaug" => TransformKind::ImageNetRandAug,
            "vit" => TransformKind::Vit,
            "vit_randaug" => TransformKind::VitRandAug,
            other => return Err(Error::Config(format!("unknown transform key `{other}`"))),
        })
    }

    /// The key used for `split`: splits other than train drop `_randaug` and `_resizedcrop`.
    pub fn for_split(self, split: &str) -> TransformKind {
        if split.contains("train") {
            return self;
        }
        match self {
            TransformKind::ClipResizedCrop | TransformKind::ClipRandAug => TransformKind::Clip,
            TransformKind::ImageNetRandAug => TransformKind::ImageNet,
            TransformKind::VitRandAug => TransformKind::Vit,
            deterministic => deterministic,
        }
    }

    /// The mean and std the pipeline normalizes with.
    pub fn normalization(self) -> Normalization {
        match self {
            TransformKind::Clip | TransformKind::ClipResizedCrop | TransformKind::ClipRandAug => Normalization::CLIP,
            TransformKind::ImageNet | TransformKind::ImageNetRandAug => Normalization::IMAGENET,
            TransformKind::Vit | TransformKind::VitRandAug => Normalization::INCEPTION,
        }
    }
}

/// A transform key bound to an output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// Which pipeline.
    pub kind: TransformKind,
    /// Output side S.
    pub size: u32,
}

impl Transform {
    /// Applies the pipeline to an image opened as RGBA. Returns [3, S, S] float32.
    pub fn apply(&self, img: &RgbaImage, rng: &mut impl Rng) -> Result<Tensor> {
        let size = self.size;
        if size == 0 {
            return Err(Error::Config("transform size must be positive".into()));
        }
        let cropped = match self.kind {
            TransformKind::Clip => resize_center_crop(img, size),
            // RandomResizedCrop already yields S × S, so the CenterCrop(S) after it is the identity.
            TransformKind::ClipResizedCrop => random_resized_crop(img, size, rng),
            TransformKind::ClipRandAug | TransformKind::ImageNetRandAug | TransformKind::VitRandAug => {
                let augmented = RandAugment::UPSTREAM.apply(&opaque(img), rng);
                resize_center_crop(&augmented, size)
            }
            TransformKind::ImageNet | TransformKind::Vit => resize_center_crop(&opaque(img), size),
        };
        Ok(to_tensor(&cropped, self.kind.normalization()))
    }
}

/// `clip_transform(size)` of the image file opened as RGBA. Returns [3, S, S] float32.
pub fn clip_transform(image_path: &Path, size: i64) -> Result<Tensor> {
    let size = u32::try_from(size).map_err(|_| Error::Config(format!("invalid image size {size}")))?;
    let img = open_rgba(image_path)?;
    Transform { kind: TransformKind::Clip, size }.apply(&img, &mut rand::thread_rng())
}

/// `convert("RGB")` followed by `convert("RGBA")`: alpha dropped, made opaque.
fn opaque(img: &RgbaImage) -> RgbaImage {
    let mut out = img.clone();
    out.pixels_mut().for_each(|p| p[3] = 255);
    out
}

/// torchvision `Resize(S)` then `CenterCrop(S)`: short side S, long side
/// `int(S * long / short)`, crop offset `int(round((len - S) / 2))` with Python's
/// round-half-to-even. Only the cropped pixels are computed.
pub fn resize_center_crop(img: &RgbaImage, size: u32) -> RgbaImage {
    let (w, h) = img.dimensions();
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    let offset = |len: u32| (f64::from(len.saturating_sub(size)) / 2.0).round_ties_even() as u32;
    resize_bicubic_window(img, nw, nh, (offset(nw), offset(nh), size.min(nw), size.min(nh)))
}

/// torchvision `RandomResizedCrop(S, scale=(0.9, 1.0), ratio=(3/4, 4/3))`, bicubic.
fn random_resized_crop(img: &RgbaImage, size: u32, rng: &mut impl Rng) -> RgbaImage {
    let (width, height) = img.dimensions();
    let area = f64::from(width) * f64::from(height);
    let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    let mut window = None;
    for _ in 0..10 {
        let target = area * rng.gen_range(0.9..1.0);
        let aspect = rng.gen_range(log_lo..log_hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as u32;
        let h = (target / aspect).sqrt().round_ties_even() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            window = Some((rng.gen_range(0..=width - w), rng.gen_range(0..=height - h), w, h));
            break;
        }
    }
    let (left, top, w, h) = window.unwrap_or_else(|| {
        let ratio = f64::from(width) / f64::from(height);
        let (w, h) = if ratio < 3.0 / 4.0 {
            (width, (f64::from(width) / (3.0 / 4.0)).round_ties_even() as u32)
        } else if ratio > 4.0 / 3.0 {
            ((f64::from(height) * (4.0 / 3.0)).round_ties_even() as u32, height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    });
    resize_bicubic(&crop(img, left, top, w, h), size, size)
}

/// ToTensor + Normalize on the RGB channels, in float32 as torchvision computes it.
/// Returns [3, H, W].
pub fn to_tensor(img: &RgbaImage, norm: Normalization) -> Tensor {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    Tensor::from_slice(&out).view([3, i64::from(h), i64::from(w)])
}
