//! Runs the port on a model golden set's inputs and names every tensor as the goldens do.
use std::collections::BTreeMap;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use serde_json::Value;

use super::golden::GoldenSet;
use super::report::{self, Category, Row};
use crate::weights::convert::{load_model_source, ConfigOptions};
use crate::config::keys::read_json;
use crate::config::M3aeConfig;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions, InferOutput, M3aeTransformerSs};
use crate::train::objectives::{compute_irtr, compute_itm, compute_mim, compute_mlm, cross_entropy, vqa_loss};
use crate::train::optim::{param_group, AdamW};
use crate::weights::{load_model_folder, load_state_dict, LoadedModel, StateDict};

/// Records one `infer` pass under `prefix.` with the goldens' names.
fn record_pass(out: &mut BTreeMap<String, Tensor>, prefix: &str, r: &InferOutput) {
    let mut put = |name: String, t: &Tensor| {
        out.insert(format!("{prefix}.{name}"), t.detach());
    };
    let Some(tr) = r.trace.as_ref() else { return };
    if let Some(t) = &tr.text_embeddings {
        put("text.embeddings".into(), t);
    }
    for (i, t) in tr.text_layers.iter().enumerate() {
        put(format!("text.layer.{i}"), t);
    }
    if let Some(t) = &tr.text_proj {
        put("text.proj".into(), t);
    }
    if let Some(t) = &tr.image_patch_embed {
        put("image.patch_embed".into(), t);
    }
    if let Some(t) = &tr.image.ln_pre {
        put("image.ln_pre".into(), t);
    }
    for (i, t) in tr.image.resblocks.iter().enumerate() {
        put(format!("image.resblock.{i}"), t);
    }
    if let Some(t) = &tr.image.ln_post {
        put("image.ln_post".into(), t);
    }
    if let Some(t) = &tr.image_proj {
        put("image.proj".into(), t);
    }
    for (i, (t, v)) in tr.fusion_text.iter().zip(&tr.fusion_image).enumerate() {
        put(format!("fusion.text.{i}"), t);
        put(format!("fusion.image.{i}"), v);
    }
    for (i, a) in r.attentions.iter().enumerate() {
        put(format!("fusion.text.{i}.cross_attn"), &a.text_cross);
        put(format!("fusion.image.{i}.cross_attn"), &a.image_cross);
    }
    put("text_cls".into(), &r.text_cls);
    put("image_cls".into(), &r.image_cls);
}

/// Where a model set's weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// `state_dict.safetensors`: the reference model's weights after upstream's loading.
    StateDict,
    /// `model.ckpt` read by our checkpoint reader, adapted to the set's image size as upstream
    /// loads it; the load report is checked against `upstream_load_report`.
    Checkpoint,
}

/// Builds the set's model from `source`; a load report that differs from upstream's is a row.
fn load(set: &GoldenSet, source: WeightsSource, device: Device) -> Result<(LoadedModel, Vec<Row>)> {
    if source == WeightsSource::StateDict {
        return Ok((load_model_folder(&set.dir, "state_dict.safetensors", device)?, Vec::new()));
    }
    // the checkpoint's own config, at the set's image size; the RoBERTa config is stated by the
    // set's config.json (upstream reads it from the tokenizer folder; the weights lack it)
    let set_config = read_json(&set.dir.join("config.json"))?;
    let mut overrides = vec![("test_only".to_string(), Value::Bool(true))];
    if let Some(lang) = set_config.get("language_encoder_config") {
        overrides.push(("language_encoder_config".into(), lang.clone()));
    }
    let image_size = set_config.get("image_size").and_then(Value::as_i64);
    let ckpt = set.dir.join(set.manifest.checkpoint.as_deref().unwrap_or("model.ckpt"));
    let w = load_model_source(&ckpt, &ConfigOptions { config_file: None, overrides, image_size })?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = M3aeTransformerSs::new(&vs.root(), &w.config)?;
    load_state_dict(&vs, &w.state_dict, &ckpt)?;
    vs.set_device(device);
    let mut rows = Vec::new();
    if let Some(up) = &set.manifest.upstream_load_report {
        if &w.report != up {
            rows.push(Row { name: "load_report".into(), category: Category::Exact, err: None, tol: 0.0, note: format!("ours {:?}, upstream {up:?}", w.report) });
        }
    }
    Ok((LoadedModel { vs, model, report: w.report }, rows))
}

/// The three passes again with `output_attentions` on (the explicit-softmax path), without
/// gradients: the source of the attention-probability goldens, and a second check of every
/// forward tensor.
fn attention_passes(model: &M3aeTransformerSs, input: &InferInput) -> Result<BTreeMap<String, Tensor>> {
    let opts = InferOptions { output_attentions: true, keep_intermediates: true, train: false, ..Default::default() };
    let mut out = BTreeMap::new();
    tch::no_grad(|| -> Result<()> {
        record_pass(&mut out, "infer", &model.infer(input, &opts)?);
        if model.mlm_head.is_some() {
            record_pass(&mut out, "mlm", &model.infer(input, &InferOptions { mask_text: true, ..opts })?);
        }
        if model.mim_head.is_some() {
            record_pass(&mut out, "mim", &model.infer(input, &InferOptions { mask_image: true, ..opts })?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Computes every golden of a model set on the production path: the three passes, heads,
/// losses and the gradients of `loss.pretrain_total` (eval mode) with `output_attentions`
/// off, so the fusion layers run fused attention forward and backward, as training and
/// inference do; the attention probabilities from a separate pass that records them, whose
/// forward tensors are compared too (rows marked `[attention pass]`); and AdamW applied
/// twice to the golden gradients.
pub fn compute(set: &GoldenSet, source: WeightsSource, device: Device, tol_scale: f64) -> Result<(BTreeMap<String, Tensor>, Vec<Row>)> {
    let (LoadedModel { vs, model, .. }, load_rows) = load(set, source, device)?;
    let c = model.config.clone();
    let dev = |name: &str| -> Result<Tensor> { Ok(set.input(name)?.to_device(device)) };
    let (image, ids, masks) = (dev("input.image")?, dev("input.text_ids")?, dev("input.text_masks")?);
    let (ids_mlm, labels_mlm, noise) = (dev("input.text_ids_mlm")?, dev("input.text_labels_mlm")?, dev("input.mim_noise")?);
    let input = InferInput { image: &image, text_ids: &ids, text_masks: &masks, text_ids_mlm: Some(&ids_mlm), mim_noise: Some(&noise) };
    let opts = InferOptions { output_attentions: false, keep_intermediates: true, train: false, ..Default::default() };
    let mut out = BTreeMap::new();
    let mut total = Tensor::zeros([], (Kind::Float, device));
    let l = c.loss_names;

    // plain infer, and the heads that read it
    let plain = model.infer(&input, &opts)?;
    record_pass(&mut out, "infer", &plain);
    out.insert("infer.multi_modal_text_feats".into(), plain.multi_modal_text_feats.detach());
    out.insert("infer.multi_modal_image_feats".into(), plain.multi_modal_image_feats.detach());
    out.insert("infer.multi_modal_cls_feats".into(), plain.multi_modal_cls_feats.detach());
    out.insert("infer.patched_images".into(), model.patchify(&image));
    if let Some(h) = &model.vqa_head {
        let logits = h.forward(&plain.multi_modal_cls_feats);
        out.insert("loss.vqa".into(), vqa_loss(&logits, &dev("input.vqa_targets")?).detach());
        out.insert("head.vqa_logits".into(), logits.detach());
    }
    if let Some(h) = &model.cls_head {
        let logits = h.forward(&plain.multi_modal_cls_feats);
        out.insert("loss.cls".into(), cross_entropy(&logits, &dev("input.cls_labels")?).detach());
        out.insert("head.cls_logits".into(), logits.detach());
    }
    drop(plain);

    if l.mlm > 0.0 {
        // the loss and its gradients from the production pass (the text stream only, the
        // head at the labelled rows only); the golden logits cover every position, the
        // pass's intermediates come from a whole traced one
        let r = compute_mlm(&model, &input, &labels_mlm, &InferOptions { keep_intermediates: false, ..opts })?;
        let traced = tch::no_grad(|| compute_mlm(&model, &input, &labels_mlm, &opts))?;
        record_pass(&mut out, "mlm", traced.infer.as_ref().expect("a traced pass keeps its infer"));
        let head = model.mlm_head.as_ref().expect("mlm > 0 builds mlm_head");
        out.insert("head.mlm_logits".into(), tch::no_grad(|| head.forward(&r.text_feats)));
        out.insert("loss.mlm".into(), r.loss.detach());
        total += r.loss * l.mlm;
    }
    if l.mim > 0.0 {
        // the loss, its gradients and the decoder's input from the production pass, which
        // stops at mim_layer; the pass's intermediates from a whole traced one
        let r = compute_mim(&model, &input, &InferOptions { keep_intermediates: false, ..opts })?;
        let traced = tch::no_grad(|| compute_mim(&model, &input, &opts))?;
        record_pass(&mut out, "mim", traced.infer.as_ref().expect("a traced pass keeps its infer"));
        out.insert("mim.masks".into(), r.masking.masks.detach());
        out.insert("mim.ids_restore".into(), r.masking.ids_restore.detach());
        out.insert("mim.image_feats_for_decoder".into(), r.masking.image_feats_for_decoder.detach());
        out.insert("mim.decoder_embed".into(), r.decoder.decoder_embed.detach());
        for (i, b) in traced.decoder.blocks.iter().enumerate() {
            out.insert(format!("mim.decoder.block.{i}"), b.detach());
        }
        out.insert("mim.target".into(), r.target.detach());
        out.insert("head.mim_logits".into(), r.decoder.logits.detach());
        out.insert("loss.mim".into(), r.loss.detach());
        total += r.loss * l.mim;
    }
    if l.itm > 0.0 {
        let itm_image = dev("input.itm_image")?;
        let itm_input = InferInput { image: &itm_image, ..input };
        let r = compute_itm(&model, &itm_input, &dev("input.itm_labels")?, &opts)?;
        out.insert("head.itm_logits".into(), r.logits.detach());
        out.insert("loss.itm".into(), r.loss.detach());
        total += r.loss * l.itm;
    }
    if l.irtr > 0.0 {
        let r = tch::no_grad(|| compute_irtr(&model, &image, &dev("input.irtr_text_ids")?, &dev("input.irtr_text_masks")?, &opts))?;
        out.insert("head.irtr_scores".into(), r.scores);
        out.insert("loss.irtr".into(), r.loss);
    }

    // the preprocessing golden of model sets: clip_transform(image_size) of sample.png
    if set.manifest.tensors.contains_key("pre.clip_transform") {
        out.insert("pre.clip_transform".into(), crate::data::transforms::clip_transform(&set.dir.join("sample.png"), c.image_size)?);
    }

    // the attention pass: its probabilities, and every pass tensor once more
    let attn = attention_passes(&model, &input)?;
    let mut rows = load_rows;
    let pass_goldens: StateDict = attn
        .keys()
        .filter(|k| !k.ends_with(".cross_attn"))
        .filter_map(|k| Some((k.clone(), set.goldens.get(k)?.shallow_clone())))
        .collect();
    for mut row in report::compare(&pass_goldens, &attn, tol_scale) {
        row.name = format!("{} [attention pass]", row.name);
        rows.push(row);
    }
    out.extend(attn.into_iter().filter(|(k, _)| k.ends_with(".cross_attn")));

    // gradients of the pre-training total
    total.backward();
    out.insert("loss.pretrain_total".into(), total.detach());
    let vars = vs.variables();
    for (name, var) in &vars {
        let g = var.grad();
        if var.requires_grad() && g.defined() {
            out.insert(format!("grad.{name}"), g.detach().copy());
        }
    }

    // AdamW from the reference weights, fed the golden gradients at both steps
    let group_rows = &mut rows;
    if let Some(spec) = &set.manifest.adamw {
        let golden_grads: BTreeMap<String, Tensor> = set
            .goldens
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("grad.").map(|n| (n.to_string(), v.to_device(device))))
            .collect();
        // the manifest's base lr and decay; upstream's multipliers and grouping on top
        let oc = M3aeConfig { learning_rate: spec.lr, weight_decay: spec.weight_decay, ..c.clone() };
        let mut opt = AdamW::new(&vs, &oc);
        if (opt.betas, opt.eps) != (spec.betas, spec.eps) {
            return Err(Error::Parity(format!("manifest AdamW betas/eps {:?}/{} differ from upstream's {:?}/{}", spec.betas, spec.eps, opt.betas, opt.eps)));
        }
        for _ in 0..spec.steps {
            opt.step_with(&golden_grads, 1.0)?;
        }
        for (name, var) in &vars {
            if spec.groups.contains_key(name) {
                out.insert(format!("adamw.step2.{name}"), var.detach().copy());
            }
        }
        // the grouping itself: every parameter's lr and weight decay as set_schedule gives them
        for (name, g) in &spec.groups {
            let ours = param_group(name, &oc);
            let ok = ours.is_some_and(|o| (o.lr - g.lr).abs() <= 1e-12 * g.lr.abs().max(1.0) && o.weight_decay == g.weight_decay);
            if !ok {
                group_rows.push(Row {
                    name: format!("adamw.group.{name}"),
                    category: Category::AdamW,
                    err: None,
                    tol: 0.0,
                    note: format!("lr/wd {:?}, manifest {}/{}", ours, g.lr, g.weight_decay),
                });
            }
        }
    }
    Ok((out, rows))
}
