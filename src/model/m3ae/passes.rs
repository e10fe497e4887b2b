//! The pre-training passes cut to what their losses read (not upstream's code paths; the
//! same values): MLM's text stream, MIM's image stream up to `mim_layer`.
use tch::{Kind, Tensor};

use super::{InferInput, InferOptions, M3aeTransformerSs, MimMasking};
use crate::error::Result;

impl M3aeTransformerSs {
    /// The MIM pass as far as its decoder reads: upstream's `infer(mask_image=True)` keeps
    /// the image stream entering fusion layer `mim_layer` (the last output for -1) and reads
    /// nothing else of the pass. So no layer from `mim_layer` up runs, nor the language
    /// stream of the layer below it (the image stream there reads the language stream
    /// entering it), nor the poolers; with `mim_layer` 0 not even the text encoder. The same
    /// values as [`Self::infer`]'s `mim`; in training, dropout draws fewer numbers.
    pub fn infer_mim(&self, input: &InferInput, opts: &InferOptions) -> Result<MimMasking> {
        let opts = InferOptions { mask_text: false, mask_image: true, ..*opts };
        self.check_input(input, &opts)?;
        let depth = self.multi_modal_language_layers.len();
        // the decoder reads the image stream entering layer `stop`
        let stop = usize::try_from(self.config.mim_layer).unwrap_or(depth);
        // the text first, as upstream draws its random numbers
        let text = (stop > 0).then(|| self.text_half(input, &opts, None));
        let g = self.config.grid();
        let noise = input.mim_noise.map(|z| z.shallow_clone()).unwrap_or_else(|| Tensor::rand([input.text_ids.size()[0], g * g], (Kind::Float, input.image.device())));
        let (v, masking) = self.encode_image(input.image, Some(&noise), None);
        let (masks, ids_restore) = masking.expect("a masked encoding returns its masking");
        let types = &self.modality_type_embeddings.ws;
        let mut y = v + types.get(opts.image_token_type_idx);
        if let Some((t, text_mask)) = text {
            let mut x = t + types.get(0);
            for (i, (text_layer, image_layer)) in self.multi_modal_language_layers.iter().zip(&self.multi_modal_vision_layers).take(stop).enumerate() {
                // both streams read the previous x and y; the language stream of the last layer run is read by nothing
                let x1 = (i + 1 < stop).then(|| text_layer.forward_t(&x, &y, Some(&text_mask), None, false, opts.train).hidden);
                y = image_layer.forward_t(&y, &x, None, Some(&text_mask), false, opts.train).hidden;
                if let Some(x1) = x1 {
                    x = x1;
                }
            }
        }
        Ok(MimMasking { masks, ids_restore, image_feats_for_decoder: y })
    }

    /// The MLM pass as far as its head reads: upstream's `infer(mask_text=True)`, of which
    /// `compute_mlm` reads `multi_modal_text_feats` only. So the last fusion layer's vision
    /// stream does not run, nor the poolers. `image_feats` [B, Lv, H] from
    /// [`Self::encode_image`] (unmasked), or None to encode `input.image` here (after the
    /// text, upstream's order). -> [B, L, H], the same values as `infer`'s.
    pub fn infer_mlm(&self, input: &InferInput, image_feats: Option<&Tensor>, opts: &InferOptions) -> Result<Tensor> {
        let opts = InferOptions { mask_text: true, mask_image: false, ..*opts };
        match image_feats {
            Some(v) => {
                self.check_text(input, &opts)?;
                self.check_image_feats(input, v)?;
            }
            None => self.check_input(input, &opts)?,
        }
        let (t, text_mask) = self.text_half(input, &opts, None);
        let v = match image_feats {
            Some(v) => v.shallow_clone(),
            None => self.encode_image(input.image, None, None).0,
        };
        let types = &self.modality_type_embeddings.ws;
        let (mut x, mut y) = (t + types.get(0), v + types.get(opts.image_token_type_idx));
        let depth = self.multi_modal_language_layers.len();
        for (i, (text_layer, image_layer)) in self.multi_modal_language_layers.iter().zip(&self.multi_modal_vision_layers).enumerate() {
            let x1 = text_layer.forward_t(&x, &y, Some(&text_mask), None, false, opts.train).hidden;
            // the vision stream of the last layer is read by nothing
            if i + 1 < depth {
                y = image_layer.forward_t(&y, &x, None, Some(&text_mask), false, opts.train).hidden;
            }
            x = x1;
        }
        Ok(x)
    }
}
