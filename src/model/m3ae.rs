//! `M3AETransformerSS` (upstream `modules/m3ae_module.py`): CLIP + RoBERTa encoders, a
//! co-attention fusion stack, and the objective heads. Keys are upstream's, verbatim.
use tch::nn;
use tch::{Kind, Tensor};

use super::bert::{extended_attention_mask, BertLayerConfig, Pooler};
use super::fusion::{BertCrossLayer, Stream};
use super::heads::{ClassifierHead, ItmHead, MimHead, MlmHead};
use super::masking::{patchify, random_masking};
use super::text::RobertaModel;
use super::vision::Clip;
use super::init;
use super::linear::Linear;
use crate::config::M3aeConfig;
use crate::error::{Error, Result};
use crate::weights::{ModelSpec, ParamSpec};

mod passes;

pub use super::infer::{fusion_layers_run, Fused, FusionAttentions, FusionLayersRun, InferInput, InferOptions, InferOutput, InferTrace, MimMasking};

/// `M3AETransformerSS`: the whole model. A head is `Some` only when its loss weight is > 0.
#[derive(Debug)]
pub struct M3aeTransformerSs {
    pub config: M3aeConfig,
    pub vision_encoder: Clip,
    pub language_encoder: RobertaModel,
    multi_modal_language_proj: Linear,
    multi_modal_vision_proj: Linear,
    modality_type_embeddings: nn::Embedding,
    multi_modal_vision_layers: Vec<BertCrossLayer>,
    multi_modal_language_layers: Vec<BertCrossLayer>,
    multi_modal_vision_pooler: Pooler,
    multi_modal_language_pooler: Pooler,
    pub mlm_head: Option<MlmHead>,
    pub mim_head: Option<MimHead>,
    pub itm_head: Option<ItmHead>,
    pub vqa_head: Option<ClassifierHead>,
    pub cls_head: Option<ClassifierHead>,
    pub irtr_head: Option<Linear>,
}

impl M3aeTransformerSs {
    /// Builds the module tree under `p` (normally a VarStore's root) with upstream's initialisation.
    pub fn new(p: &nn::Path, config: &M3aeConfig) -> Result<Self> {
        config.validate()?;
        let c = config;
        // the encoder configs may have been resolved after the config was built
        M3aeConfig { vision_encoder_config: Some(c.vision()?), language_encoder_config: Some(c.text()?), ..c.clone() }.validate()?;
        let vision = c.vision()?;
        let text = c.text()?;
        let h = c.hidden_size;
        // The RobertaConfig upstream builds for the fusion layers and the MLM head: HF defaults
        // fill the rest (layer_norm_eps 1e-12, gelu).
        let fusion = BertLayerConfig {
            hidden_size: h,
            num_attention_heads: c.num_heads,
            intermediate_size: h * c.mlp_ratio,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: c.drop_rate,
            attention_probs_dropout_prob: c.drop_rate,
        };
        let stack = |name: &str, stream: Stream| {
            let sp = p / name;
            (0..c.num_top_layer).map(|i| BertCrossLayer::new(&sp / i, &fusion, stream)).collect::<Vec<_>>()
        };
        let l = c.loss_names;
        let itm_head = (l.itm > 0.0 || l.irtr > 0.0).then(|| ItmHead::new(p / "itm_head", 2 * h));
        let irtr_head = if l.irtr > 0.0 {
            let itm = itm_head.as_ref().expect("itm_head exists whenever irtr is on");
            let head = init::linear(p / "irtr_head", 2 * h, 1);
            tch::no_grad(|| {
                // irtr_head.weight = itm_head.fc.weight[1:]; whenever IRTR is on, itm_head is frozen
                head.ws.shallow_clone().copy_(&itm.fc.ws.narrow(0, 1, 1));
                head.bs.as_ref().unwrap().shallow_clone().copy_(&itm.fc.bs.as_ref().unwrap().narrow(0, 1, 1));
            });
            let _ = itm.fc.ws.set_requires_grad(false);
            let _ = itm.fc.bs.as_ref().unwrap().set_requires_grad(false);
            Some(head)
        } else {
            None
        };
        Ok(M3aeTransformerSs {
            vision_encoder: Clip::new(p / "vision_encoder", &vision, c.image_size),
            language_encoder: RobertaModel::new(p / "language_encoder", &text),
            multi_modal_language_proj: init::linear(p / "multi_modal_language_proj", c.input_text_embed_size, h),
            multi_modal_vision_proj: init::linear(p / "multi_modal_vision_proj", c.input_image_embed_size, h),
            modality_type_embeddings: init::embedding(p / "modality_type_embeddings", 2, h),
            multi_modal_vision_layers: stack("multi_modal_vision_layers", Stream::Vision),
            multi_modal_language_layers: stack("multi_modal_language_layers", Stream::Language),
            multi_modal_vision_pooler: Pooler::new(p / "multi_modal_vision_pooler", h),
            multi_modal_language_pooler: Pooler::new(p / "multi_modal_language_pooler", h),
            mlm_head: (l.mlm > 0.0).then(|| MlmHead::new(p / "mlm_head", h, c.vocab_size, 1e-12)),
            mim_head: (l.mim > 0.0).then(|| MimHead::new(p / "mim_head", c)),
            itm_head,
            vqa_head: (l.vqa > 0.0).then(|| ClassifierHead::new(p / "vqa_head", 2 * h, c.vqa_label_size)),
            cls_head: (l.cls > 0.0).then(|| ClassifierHead::new(p / "cls_head", 2 * h, c.cls_label_size())),
            irtr_head,
            config: c.clone(),
        })
    }

    /// Every parameter and buffer the model `config` describes, by upstream key, with its
    /// shape and dtype: the model built in [`init::shapes_only`] mode, nothing initialised.
    pub fn spec(config: &M3aeConfig) -> Result<ModelSpec> {
        init::shapes_only(|| {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            Self::new(&vs.root(), config)?;
            Ok(vs.variables().into_iter().map(|(k, v)| (k, ParamSpec { shape: v.size(), kind: v.kind() })).collect())
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> tch::Device {
        self.multi_modal_vision_proj.ws.device()
    }

    /// `patchify` of a normalized image batch at this model's patch size.
    pub fn patchify(&self, image: &Tensor) -> Tensor {
        patchify(image, self.config.patch_size)
    }

    fn check_input(&self, input: &InferInput, opts: &InferOptions) -> Result<()> {
        self.check_text(input, opts)?;
        let (b, s) = (input.text_ids.size()[0], self.config.image_size);
        let img = input.image.size();
        if img.len() != 4 || img[0] != b || img[1] != 3 || img[2] != s || img[3] != s {
            return Err(Error::input("image", format!("expected [{b}, 3, {s}, {s}], got {img:?}")));
        }
        if let (true, Some(noise)) = (opts.mask_image, input.mim_noise) {
            let g = self.config.grid();
            if noise.size() != [b, g * g] {
                return Err(Error::input("mim_noise", format!("expected [{b}, {}], got {:?}", g * g, noise.size())));
            }
        }
        Ok(())
    }

    /// The text inputs and the switches; `input.image` is not read.
    fn check_text(&self, input: &InferInput, opts: &InferOptions) -> Result<()> {
        let ids = input.text_ids.size();
        if ids.len() != 2 || input.text_masks.size() != ids {
            return Err(Error::input("text_ids/text_masks", format!("must both be [B, L], got {:?} and {:?}", ids, input.text_masks.size())));
        }
        let text = &self.language_encoder.config;
        if ids[1] + 1 >= text.max_position_embeddings {
            return Err(Error::input("text_ids", format!("{} tokens need more than the {} position embeddings", ids[1], text.max_position_embeddings)));
        }
        for (name, t) in [("text_ids", Some(input.text_ids)), ("text_ids_mlm", input.text_ids_mlm)] {
            if let Some(t) = t.filter(|t| t.numel() > 0) {
                let (lo, hi) = (i64::try_from(t.min())?, i64::try_from(t.max())?);
                if lo < 0 || hi >= text.vocab_size {
                    return Err(Error::input(name, format!("ids span {lo}..={hi}, outside the vocabulary of {}", text.vocab_size)));
                }
            }
        }
        if !(0..2).contains(&opts.image_token_type_idx) {
            return Err(Error::input("image_token_type_idx", format!("{} is not 0 or 1", opts.image_token_type_idx)));
        }
        if opts.mask_text && input.text_ids_mlm.map(|t| t.size() != ids).unwrap_or(true) {
            return Err(Error::input("text_ids_mlm", format!("mask_text needs masked ids of shape {ids:?}")));
        }
        Ok(())
    }

    /// The text half of `infer`: RoBERTa then `multi_modal_language_proj`.
    /// ids [B, L], `mask` additive [B, 1, 1, L] -> [B, L, H].
    pub fn encode_text(&self, ids: &Tensor, mask: &Tensor, train: bool, mut trace: Option<&mut InferTrace>) -> Tensor {
        let enc = &self.language_encoder;
        let mut t = enc.embeddings.forward_t(ids, train);
        if let Some(tr) = trace.as_deref_mut() {
            tr.text_embeddings = Some(t.shallow_clone());
        }
        for layer in &enc.layers {
            t = layer.forward_t(&t, mask, train);
            if let Some(tr) = trace.as_deref_mut() {
                tr.text_layers.push(t.shallow_clone());
            }
        }
        let t = t.apply(&self.multi_modal_language_proj);
        if let Some(tr) = trace {
            tr.text_proj = Some(t.shallow_clone());
        }
        t
    }

    /// The image half of `infer`: CLIP (masked when `mim_noise` is given) then
    /// `multi_modal_vision_proj`. image [B, 3, S, S] -> [B, 1 + kept patches, H], plus the
    /// MIM (mask, ids_restore) of a masked pass.
    pub fn encode_image(&self, image: &Tensor, mim_noise: Option<&Tensor>, trace: Option<&mut InferTrace>) -> (Tensor, Option<(Tensor, Tensor)>) {
        let visual = &self.vision_encoder.visual;
        let (v, masking, trace) = match (mim_noise, trace) {
            (Some(noise), mut trace) => {
                let patches = visual.forward_patch_embed(image);
                let m = random_masking(&patches, &visual.positional_embedding, self.config.mim_prob, &noise.to_kind(Kind::Float));
                let v = visual.forward_trans(&m.tokens, trace.as_deref_mut().map(|t| &mut t.image));
                (v, Some((m.mask, m.ids_restore)), trace)
            }
            (None, Some(tr)) => {
                tr.image_patch_embed = Some(visual.forward_patch_embed(image));
                (visual.forward(image, Some(&mut tr.image)), None, Some(tr))
            }
            (None, None) => (visual.forward(image, None), None, None),
        };
        let v = v.apply(&self.multi_modal_vision_proj);
        if let Some(tr) = trace {
            tr.image_proj = Some(v.shallow_clone());
        }
        (v, masking)
    }

    /// The fusion half of `infer`: modality type embeddings, the co-attention stack, the
    /// poolers. text [B, L, H] under additive `text_mask`, image [B, Lv, H] (all visible).
    pub fn fuse(&self, text: &Tensor, text_mask: &Tensor, image: &Tensor, opts: &InferOptions, mut trace: Option<&mut InferTrace>) -> Fused {
        assert_eq!(image.dim(), 3, "fuse: image features must be [B, Lv, H]");
        // The image mask is all ones: upstream adds (1 - 1)·min = 0 to every image key's score,
        // so the port skips the mask instead (same values, SDPA's unmasked kernel).
        let image_mask: Option<&Tensor> = None;
        // text + modality_type_embeddings(0), image + modality_type_embeddings(image_token_type_idx)
        let types = &self.modality_type_embeddings.ws;
        let mut x = text + types.get(0);
        let mut y = image + types.get(opts.image_token_type_idx);
        let mut attentions = Vec::new();
        let mut mim_input = None;
        let depth = self.multi_modal_language_layers.len();
        let cls_only = opts.cls_only && !opts.output_attentions && trace.is_none();
        // at each depth both streams read the previous x and y
        for (i, (text_layer, image_layer)) in self.multi_modal_language_layers.iter().zip(&self.multi_modal_vision_layers).enumerate() {
            if opts.mask_image && self.config.mim_layer == i as i64 {
                mim_input = Some(y.shallow_clone());
            }
            if cls_only && i + 1 == depth {
                // [B, 1, H] each: only the rows the poolers read
                (x, y) = (text_layer.forward_cls_t(&x, &y, Some(text_mask), image_mask, opts.train), image_layer.forward_cls_t(&y, &x, image_mask, Some(text_mask), opts.train));
                break;
            }
            let x1 = text_layer.forward_t(&x, &y, Some(text_mask), image_mask, opts.output_attentions, opts.train);
            let y1 = image_layer.forward_t(&y, &x, image_mask, Some(text_mask), opts.output_attentions, opts.train);
            if let (Some(text_self), Some(text_cross), Some(image_self), Some(image_cross)) = (x1.self_attn, x1.cross_attn, y1.self_attn, y1.cross_attn) {
                attentions.push(FusionAttentions { text_self, text_cross, image_self, image_cross });
            }
            x = x1.hidden;
            y = y1.hidden;
            if let Some(tr) = trace.as_deref_mut() {
                tr.fusion_text.push(x.shallow_clone());
                tr.fusion_image.push(y.shallow_clone());
            }
        }
        // pool: [B, L, H] -> [B, H] each, concatenated to [B, 2H]
        let text_cls = x.apply(&self.multi_modal_language_pooler);
        let image_cls = y.apply(&self.multi_modal_vision_pooler);
        let cls_feats = Tensor::cat(&[&text_cls, &image_cls], -1);
        let mim_input = mim_input.unwrap_or_else(|| y.shallow_clone());
        Fused { text_feats: x, image_feats: y, cls_feats, text_cls, image_cls, attentions, mim_input }
    }

    /// Upstream's `infer`: encode the text, then the image (the order upstream draws its
    /// random numbers in), fuse them, pool.
    pub fn infer(&self, input: &InferInput, opts: &InferOptions) -> Result<InferOutput> {
        self.check_input(input, opts)?;
        let mut trace = opts.keep_intermediates.then(InferTrace::default);
        let (t, text_mask) = self.text_half(input, opts, trace.as_mut());
        let noise = opts.mask_image.then(|| {
            let g = self.config.grid();
            input.mim_noise.map(|z| z.shallow_clone()).unwrap_or_else(|| Tensor::rand([t.size()[0], g * g], (Kind::Float, t.device())))
        });
        let (v, masking) = self.encode_image(input.image, noise.as_ref(), trace.as_mut());
        Ok(self.fused_output(&t, &text_mask, &v, masking, opts, trace))
    }

    /// `infer` on image features already through [`Self::encode_image`] (unmasked), so one
    /// encoding can serve several passes: the pre-training step shares it between MLM and
    /// ITM. `image_feats` [B, Lv, H]; `input.image` is not read.
    pub fn infer_from_image_feats(&self, input: &InferInput, image_feats: &Tensor, opts: &InferOptions) -> Result<InferOutput> {
        if opts.mask_image {
            return Err(Error::Config("infer_from_image_feats: a mask_image pass encodes its own (masked) image; call infer".into()));
        }
        self.check_text(input, opts)?;
        self.check_image_feats(input, image_feats)?;
        let mut trace = opts.keep_intermediates.then(InferTrace::default);
        let (t, text_mask) = self.text_half(input, opts, trace.as_mut());
        Ok(self.fused_output(&t, &text_mask, image_feats, None, opts, trace))
    }

    /// `image_feats` is [B, Lv, H] for the batch of `input`.
    fn check_image_feats(&self, input: &InferInput, image_feats: &Tensor) -> Result<()> {
        let (b, h) = (input.text_ids.size()[0], self.config.hidden_size);
        match image_feats.size().as_slice() {
            &[n, _, d] if n == b && d == h => Ok(()),
            other => Err(Error::input("image_feats", format!("expected [{b}, Lv, {h}], got {other:?}"))),
        }
    }

    /// The (masked or plain) ids through [`Self::encode_text`]: [B, L, H] and the additive mask.
    fn text_half(&self, input: &InferInput, opts: &InferOptions, trace: Option<&mut InferTrace>) -> (Tensor, Tensor) {
        let text_ids = if opts.mask_text { input.text_ids_mlm.unwrap() } else { input.text_ids };
        let text_mask = extended_attention_mask(input.text_masks, Kind::Float);
        (self.encode_text(text_ids, &text_mask, opts.train, trace), text_mask)
    }

    /// [`Self::fuse`] packed as `infer`'s output.
    fn fused_output(&self, t: &Tensor, text_mask: &Tensor, v: &Tensor, masking: Option<(Tensor, Tensor)>, opts: &InferOptions, mut trace: Option<InferTrace>) -> InferOutput {
        let f = self.fuse(t, text_mask, v, opts, trace.as_mut());
        let mim = masking.map(|(masks, ids_restore)| MimMasking { masks, ids_restore, image_feats_for_decoder: f.mim_input.shallow_clone() });
        InferOutput {
            multi_modal_text_feats: f.text_feats,
            multi_modal_image_feats: f.image_feats,
            multi_modal_cls_feats: f.cls_feats,
            text_cls: f.text_cls,
            image_cls: f.image_cls,
            mim,
            attentions: f.attentions,
            trace,
        }
    }
}
