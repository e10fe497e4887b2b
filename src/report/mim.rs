//! `mim_reconstructions.png`: for a few held-out images, the original, the image with the
//! patches MIM removes, and each model's reconstruction (the MIM decoder's output
//! un-patchified, the visible patches pasted back as MAE's figures show them), one row per
//! image, one reconstruction column per model, the same mask for every model.
//!
//! With `norm_pix_loss` (upstream's default) the decoder predicts each removed patch
//! normalized by its own mean and variance, which the model never sees. The figure does not
//! borrow them from the original: each removed patch is de-normalized with the mean and
//! standard deviation of the visible patches around it (its 3 × 3 neighbourhood, else the
//! whole image's visible patches), so what is drawn is only what the model could know.
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::raster::{denormalize, draw_grid, panel, Figure, Row};
use super::FigureSample;
use crate::error::{Error, Result};
use crate::model::masking::unpatchify;
use crate::model::{InferInput, InferOptions};
use crate::tasks::M3ae;
use crate::train::objectives::compute_mim;

/// Display grey of a removed patch.
const REMOVED_GREY: f64 = 0.5;

/// Per-patch statistic `stat` [g, g] of removed patches estimated from the visible ones
/// (`visible` [g, g], 1 = visible): the mean over the visible 3 × 3 neighbours, else over
/// every visible patch.
pub fn from_visible_neighbours(stat: &Tensor, visible: &Tensor) -> Tensor {
    let (s, v) = (stat.unsqueeze(0).unsqueeze(0), visible.unsqueeze(0).unsqueeze(0));
    // both sums share avg_pool2d's divisor, so their ratio is the neighbourhood mean
    let num = (&s * &v).avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
    let den = v.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
    let global = (stat * visible).sum(Kind::Float) / visible.sum(Kind::Float).clamp_min(1.0);
    let local = num / den.clamp_min(1e-12);
    let local = local.where_self(&den.gt(0.0), &global.expand_as(&local));
    local.view_as(stat)
}

/// One model's reconstruction of `image` [1, 3, S, S] (normalized) under `noise` [1, g²]:
/// the reconstruction with the visible patches pasted back [1, 3, S, S] (normalized), and
/// the mask [1, g²] (1 = removed).
fn reconstruct(m: &M3ae, image: &Tensor, text: &str, noise: &Tensor) -> Result<(Tensor, Tensor)> {
    let (ids, masks) = m.encode_texts(&[text])?;
    let input = InferInput { image, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: Some(noise) };
    let out = tch::no_grad(|| compute_mim(&m.model, &input, &InferOptions::default()))?;
    let mask = out.masking.masks.to_kind(Kind::Float);
    let patches = m.model.patchify(image); // [1, L, p²·3]
    let mut pred = out.decoder.logits.to_kind(Kind::Float);
    if m.config.norm_pix_loss {
        // target = (patch - mean) / (var + 1e-6) ** .5, per patch (unbiased variance)
        let g = m.config.grid();
        let mean = patches.mean_dim(-1, false, Kind::Float).view([g, g]);
        let std = (patches.var_dim(-1, true, false) + 1e-6).sqrt().view([g, g]);
        let visible = mask.ones_like().f_sub(&mask)?.view([g, g]);
        let mean = from_visible_neighbours(&mean, &visible).view([1, g * g, 1]);
        let std = from_visible_neighbours(&std, &visible).view([1, g * g, 1]);
        pred = pred * std + mean;
    }
    let m3 = mask.unsqueeze(-1);
    let pasted = &patches * (m3.ones_like() - &m3) + pred * &m3;
    Ok((unpatchify(&pasted, m.config.patch_size), mask))
}

/// Draws the reconstructions of `samples` by each of `models` (name, model; every one with a
/// `mim_head` and the same image size, patch size, mask ratio and transform) into `out`.
/// Sample `i`'s mask is drawn from `seed + i`.
pub fn mim_reconstructions(models: &[(&str, &M3ae)], samples: &[FigureSample], seed: u64, out: &Path) -> Result<Figure> {
    let (_, first) = *models.first().ok_or_else(|| Error::input("models", "no model to draw"))?;
    let c0 = &first.config;
    for (name, m) in models {
        if m.model.mim_head.is_none() {
            return Err(Error::Config(format!("model `{name}` ({}) has no mim_head: it was trained without MIM", m.source.display())));
        }
        let c = &m.config;
        if (c.image_size, c.patch_size, c.mim_prob, m.transform) != (c0.image_size, c0.patch_size, c0.mim_prob, first.transform) {
            return Err(Error::Config(format!("model `{name}` differs from `{}` in image_size, patch_size, mim_prob or its transform: one figure needs one mask", models[0].0)));
        }
    }
    let norm = first.transform.kind.normalization();
    let g = c0.grid();
    let mut rows = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let image = first.image_batch(&s.image)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
        let noise: Vec<f32> = (0..g * g).map(|_| rng.gen::<f32>()).collect();
        let noise = Tensor::from_slice(&noise).view([1, g * g]).to_device(first.device());
        let original = denormalize(&image.get(0), norm);
        let mut panels = vec![panel(&original, "original")?];
        let mut recons = Vec::new();
        let mut removed = None;
        for (name, m) in models {
            let (recon, mask) = reconstruct(m, &image, &s.text, &noise)?;
            recons.push(panel(&denormalize(&recon.get(0), norm), format!("reconstruction: {name}"))?);
            removed.get_or_insert(mask);
        }
        let mask = removed.ok_or_else(|| Error::input("models", "no model to draw"))?;
        let p = c0.patch_size;
        let pixel_mask = unpatchify(&mask.view([1, g * g, 1]).expand([1, g * g, p * p * 3], false), p).get(0).to_device(tch::Device::Cpu);
        let masked = &original * (pixel_mask.ones_like() - &pixel_mask) + &pixel_mask * REMOVED_GREY;
        panels.push(panel(&masked, format!("masked ({:.0}%)", c0.mim_prob * 100.0))?);
        panels.extend(recons);
        rows.push(Row { label: s.label.clone(), panels });
    }
    let title = if c0.norm_pix_loss {
        "MIM: removed patches de-normalized by visible neighbours"
    } else {
        "MIM: original, masked, reconstructed"
    };
    draw_grid(out, title, &rows, 2 + models.len())
}
