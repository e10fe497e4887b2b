"""Regenerates a golden parity set (parity/tiny-a, parity/tiny-b) from UPSTREAM M3AE.

The goldens come from upstream's own PyTorch modules (github zhjohnchan/M3AE, `m3ae/`),
imported from a checkout whose path you give; no upstream code lives in this project.
The set format is parity/FORMAT.md.

Usage:
    python parity/generate.py --upstream /path/to/M3AE --out DIR [--preset tiny-a|tiny-b]
        [--seed N] [--config JSON] [--batch N] [--checkpoint-image-size PX]

  --config   a JSON object (inline or a file path) overriding upstream config keys of the
             preset; its `language_encoder_config` / `vision_encoder_config` entries are
             merged into the stand-in encoders' shapes.
Then check the port against it:  target/release/m3ae parity DIR

Requirements (parity/requirements.txt): Python 3.10+, torch 2.11, transformers 4.57,
einops, numpy, safetensors, pillow, torchvision. pytorch-lightning, timm, sklearn and
sacred are NOT needed: parity/upstream_shims.py supplies stand-ins.

Stages: install shims and import upstream -> build upstream's M3AETransformerSS with
random weights (CLIP and RoBERTa built at tiny sizes instead of downloaded) -> save an
upstream-shaped Lightning-1.3 model.ckpt -> load it as upstream does for testing
(test_only, load_path) -> three `infer` passes, heads and losses through upstream's
objectives, with forward hooks recording the intermediates -> gradients of mlm+mim+itm
(eval mode) -> two AdamW steps on upstream's set_schedule groups, fed the golden
gradients -> clip_transform of sample.png -> write the set. The AdamW rule (transformers
4.6, as FORMAT.md states it) is `upstream_shims.AdamW`, installed where upstream imports it.
Checked: on the shipped tiny-a/tiny-b weights and inputs this pipeline reproduces their
goldens exactly, AdamW steps to within 1 float32 ulp.
"""
import argparse
import ast
import contextlib
import inspect
import json
import os
import sys
import textwrap
import types

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import upstream_shims  # noqa: E402

ADAMW_LR = 1e-3  # FORMAT.md: AdamW goldens use lr 1e-3 (times upstream's multipliers)
ADAMW_STEPS = 2
ADAMW_RULE = ("transformers 4.6 AdamW (correct_bias=True): denom = sqrt(v)+eps; "
              "step_size = lr*sqrt(1-b2^t)/(1-b1^t); p -= step_size*m/denom; then p -= lr*wd*p")

# Upstream config keys that differ from upstream's defaults (m3ae/config.py::config).
_COMMON = dict(
    exp_name="golden", datasets=["roco"], batch_size=4, image_size=64, patch_size=16,
    tokenizer="roberta-base", vocab_size=120, num_top_layer=2, vit="ViT-B/16",
    loss_names=dict(mlm=1, mim=1, itm=1, vqa=1, cls=1, irtr=1), max_epoch=10, max_steps=1000,
    warmup_steps=0.1, test_only=True, per_gpu_batchsize=4, num_gpus=1, num_workers=0,
    precision=32, label_column_name="p_meth_label",
)
_TEXT = dict(type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
             hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
PRESETS = {
    "tiny-a": dict(
        batch=3, checkpoint_image_size=64,
        config=dict(_COMMON, vqa_label_size=7, max_text_len=16, draw_false_text=3,
                    input_image_embed_size=128, input_text_embed_size=96, hidden_size=64,
                    num_heads=4, mim_decoder_hidden_size=32, mim_decoder_num_layers=2,
                    mim_decoder_num_heads=2, mim_layer=1, melinda_label_size=dict(p_meth_label=5)),
        language_encoder_config=dict(vocab_size=120, hidden_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=192,
                                     max_position_embeddings=24, **_TEXT),
        vision_encoder_config=dict(width=128, layers=3, patch_size=16, context_length=8,
                                   vocab_size=64, transformer_width=32),
    ),
    "tiny-b": dict(
        batch=2, checkpoint_image_size=48,
        config=dict(_COMMON, vqa_label_size=5, max_text_len=12, draw_false_text=2,
                    input_image_embed_size=64, input_text_embed_size=64, hidden_size=48,
                    num_heads=3, mim_decoder_hidden_size=24, mim_decoder_num_layers=1,
                    mim_decoder_num_heads=3, mim_layer=-1, melinda_label_size=dict(p_meth_label=4)),
        language_encoder_config=dict(vocab_size=120, hidden_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=128,
                                     max_position_embeddings=20, **_TEXT),
        vision_encoder_config=dict(width=64, layers=4, patch_size=16, context_length=6,
                                   vocab_size=40, transformer_width=16),
    ),
}


# ---------------------------------------------------------------- upstream + config
def import_upstream(path):
    """Installs the shims and imports upstream's modules from the checkout at `path`."""
    upstream_shims.install()
    sys.path.insert(0, os.path.abspath(path))
    import m3ae.config
    import m3ae.modules.m3ae_module as m3ae_module
    from m3ae.modules import m3ae_utils, objectives
    from m3ae.modules.position_embeddings import get_2d_sincos_pos_embed
    from m3ae.modules.vision_encoders.clip_model import CLIP
    from m3ae.transforms.transform import clip_transform
    return types.SimpleNamespace(config=m3ae.config, module=m3ae_module, utils=m3ae_utils,
                                 objectives=objectives, sincos=get_2d_sincos_pos_embed,
                                 CLIP=CLIP, clip_transform=clip_transform)


def upstream_defaults(config_module):
    """Upstream's default config, in its key order: the body of `config()` run the way
    sacred runs config scopes (its assignments executed into a fresh namespace)."""
    fn = config_module.config
    body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0].body
    ns = {}
    exec(compile(ast.Module(body=body, type_ignores=[]), "<config>", "exec"), dict(vars(config_module)), ns)
    return ns


def build_spec(up, args):
    """The preset with `--config` overrides: upstream config, encoder shapes, batch, ckpt size."""
    preset = PRESETS[args.preset]
    config = upstream_defaults(up.config)
    overrides = dict(preset["config"])
    extra = json.load(open(args.config)) if args.config and os.path.isfile(args.config) \
        else json.loads(args.config or "{}")
    lang = dict(preset["language_encoder_config"], **extra.pop("language_encoder_config", {}))
    vision = dict(preset["vision_encoder_config"], **extra.pop("vision_encoder_config", {}))
    for layer in (overrides, extra):  # dict-valued keys (loss_names, ...) merge key by key
        for key, value in layer.items():
            config[key] = dict(config[key], **value) if isinstance(config.get(key), dict) else value
    config["seed"] = args.seed
    return types.SimpleNamespace(
        config=config, lang=lang, vision=vision, batch=args.batch or preset["batch"],
        ckpt_size=args.checkpoint_image_size or preset["checkpoint_image_size"])


# ---------------------------------------------------------------- model and checkpoint
@contextlib.contextmanager
def stand_in_encoders(up, spec):
    """Replaces the two downloads inside upstream's module: `build_model` builds upstream's
    own CLIP class at the spec's sizes, `RobertaModel.from_pretrained` a RobertaConfig."""
    from transformers import RobertaConfig
    from transformers import RobertaModel as HFRoberta
    v = spec.vision

    def build_model(name, resolution_after=224, jit=False):
        return up.CLIP(v["transformer_width"], v["patch_size"] * 2, v["layers"], v["width"],
                       v["patch_size"], v["context_length"], v["vocab_size"], v["transformer_width"],
                       max(1, v["transformer_width"] // 64), 1, resolution_after)

    class RobertaModel:
        @staticmethod
        def from_pretrained(name):
            # eager attention: the explicit softmax(QK^T/sqrt(d) + mask) of transformers 4.6
            return HFRoberta(RobertaConfig(**spec.lang, attn_implementation="eager"))

    saved = up.module.build_model, up.module.RobertaModel
    up.module.build_model, up.module.RobertaModel = build_model, RobertaModel
    try:
        yield
    finally:
        up.module.build_model, up.module.RobertaModel = saved


def perturb_(model, generator):
    """Adds noise to every weight except the fixed MIM position table (N(0, 0.05^2) on
    vectors, N(0, 0.01^2) on the rest), so zero biases and unit LayerNorm gains cannot hide
    a bug. In place: `irtr_head` stays a view of `itm_head.fc` row 1, as upstream ties them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("decoder_pos_embed"):
                p.add_(torch.randn(p.shape, generator=generator) * (0.05 if p.dim() == 1 else 0.01))


def save_checkpoint(model, path, generator):
    """An upstream-shaped PyTorch Lightning 1.3 checkpoint of `model` (torch.save zip)."""
    state_dict = {k: v for k, v in model.state_dict().items()}
    lang = model.language_encoder.embeddings
    state_dict["language_encoder.embeddings.position_ids"] = torch.arange(
        lang.position_embeddings.num_embeddings).unsqueeze(0)  # transformers 4.6 saved this buffer
    trainable = [p.detach().clone().requires_grad_() for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=model.hparams.config["learning_rate"],
                                  weight_decay=model.hparams.config["weight_decay"])
    for p in trainable:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    optimizer.step()
    score = torch.tensor(1.5)
    torch.save({
        "epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.3.2",
        "state_dict": state_dict,
        "callbacks": {upstream_shims.ModelCheckpoint: {
            "monitor": "val/the_metric", "best_model_score": score, "best_model_path": "checkpoints/epoch=3.ckpt",
            "current_score": score, "dirpath": "checkpoints"}},
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [{"base_lrs": [model.hparams.config["learning_rate"]], "last_epoch": 1234, "_step_count": 1235}],
        "native_amp_scaling_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 17},
        "hparams_name": "kwargs",
        "hyper_parameters": upstream_shims.AttributeDict(config=model.hparams.config),
    }, path)


def load_like_upstream(up, spec, config):
    """Builds the model with `config` (test_only, load_path set): upstream's own __init__
    loads the checkpoint. Records load_state_dict's result and what adapt_position_encoding
    changed; when the grid changed, also regenerates the fixed sin-cos `decoder_pos_embed`
    (where upstream itself would raise a size mismatch)."""
    report = dict(missing=[], unexpected=[], adapted=[], regenerated=[])
    cls, adapt = up.module.M3AETransformerSS, up.module.adapt_position_encoding

    def adapt_and_report(state_dict, patch_size=32, after=384, **kw):
        before = {k: v.shape for k, v in state_dict.items()}
        state_dict = adapt(state_dict, patch_size=patch_size, after=after, **kw)
        report["adapted"] += [k for k, v in state_dict.items() if k in before and v.shape != before[k]]
        key, grid = "mim_head.decoder_pos_embed", after // patch_size
        if key in state_dict and state_dict[key].shape[1] != grid * grid + 1:
            table = up.sincos(state_dict[key].shape[-1], grid, True)
            state_dict[key] = torch.from_numpy(table).float().unsqueeze(0)
            report["regenerated"].append(key)
        return state_dict

    def load_and_report(self, state_dict, strict=True, **kw):
        result = torch.nn.Module.load_state_dict(self, state_dict, strict=strict, **kw)
        report["missing"] += result.missing_keys
        report["unexpected"] += result.unexpected_keys
        return result

    up.module.adapt_position_encoding, cls.load_state_dict = adapt_and_report, load_and_report
    try:
        with stand_in_encoders(up, spec):
            model = cls(config)
    finally:
        up.module.adapt_position_encoding = adapt
        del cls.load_state_dict
    return model, {k: sorted(v) for k, v in report.items()}


# ---------------------------------------------------------------- inputs
def make_inputs(spec, generator):
    """Random inputs in upstream's batch layout (RoBERTa ids: <s>=0, <pad>=1, </s>=2)."""
    c, B, g = spec.config, spec.batch, generator
    L, V, S = c["max_text_len"], c["vocab_size"], c["image_size"]
    n_patch = (S // c["patch_size"]) ** 2
    rint = lambda lo, hi, shape=(): torch.randint(lo, hi, shape, generator=g)  # noqa: E731

    def texts(n, full_first):
        ids, masks = torch.ones(n, L, dtype=torch.long), torch.zeros(n, L, dtype=torch.long)
        for i in range(n):
            length = L if (full_first and i == 0) else int(rint(4, L + 1))
            ids[i, 0], ids[i, 1:length - 1], ids[i, length - 1] = 0, rint(3, V - 1, (length - 2,)), 2
            masks[i, :length] = 1
        return ids, masks

    ids, masks = texts(B, True)
    # MLM masking as a collator would do it: 40% of the tokens between <s> and </s>
    # (at least one per row) are predicted; of those 80% -> <mask> (id V-1), 10% random, 10% kept
    eligible = masks.bool() & (ids > 2)
    pick = (torch.rand(B, L, generator=g) < 0.4) & eligible
    for i in range(B):
        if not pick[i].any():
            pick[i, 1] = True
    action = torch.rand(B, L, generator=g)
    ids_mlm = ids.clone()
    ids_mlm[pick & (action < 0.8)] = V - 1
    rand_pos = pick & (action >= 0.8) & (action < 0.9)
    ids_mlm[rand_pos] = rint(3, V - 1, (int(rand_pos.sum()),))
    labels_mlm = torch.where(pick, ids, torch.full_like(ids, -100))

    batch = {
        "image": [torch.randn(B, 3, S, S, generator=g)],
        "false_image_0": [torch.randn(B, 3, S, S, generator=g)],
        "text": ["caption"] * B,
        "text_ids": ids, "text_masks": masks, "text_labels": torch.full_like(ids, -100),
        "text_ids_mlm": ids_mlm, "text_labels_mlm": labels_mlm,
        "vqa_labels": [], "vqa_scores": [], "answer_types": rint(0, 2, (B,)).tolist(),
        "cls_labels": rint(0, c["melinda_label_size"][c["label_column_name"]], (B,)),
    }
    for _ in range(B):
        labels = torch.randperm(c["vqa_label_size"], generator=g)[:2].tolist()
        batch["vqa_labels"].append(labels)
        batch["vqa_scores"].append([1.0, 0.3])
    for f in range(c["draw_false_text"]):
        f_ids, f_masks = texts(B, False)
        batch.update({f"false_text_{f}_ids": f_ids, f"false_text_{f}_masks": f_masks,
                      f"false_text_{f}_labels": torch.full_like(f_ids, -100)})
    return batch, torch.rand(B, n_patch, generator=g)


# ---------------------------------------------------------------- goldens
class Recorder:
    """Forward hooks that store intermediates as `<prefix>.<name>` while a prefix is set."""

    def __init__(self, model):
        self.out, self.prefix = {}, None
        first = lambda o: o[0] if isinstance(o, tuple) else o  # noqa: E731
        nld = lambda o: o.permute(1, 0, 2)  # noqa: E731  CLIP blocks run in [L, N, D]
        lang, vis = model.language_encoder, model.vision_encoder.visual
        hooks = [(lang.embeddings, "text.embeddings", first), (model.multi_modal_language_proj, "text.proj", first),
                 (vis.ln_pre, "image.ln_pre", first), (vis.ln_post, "image.ln_post", first),
                 (model.multi_modal_vision_proj, "image.proj", first),
                 (model.multi_modal_language_pooler, "text_cls", first),
                 (model.multi_modal_vision_pooler, "image_cls", first)]
        hooks += [(m, f"text.layer.{i}", first) for i, m in enumerate(lang.encoder.layer)]
        hooks += [(m, f"image.resblock.{i}", nld) for i, m in enumerate(vis.transformer.resblocks)]
        for stream, layers in (("text", model.multi_modal_language_layers), ("image", model.multi_modal_vision_layers)):
            for i, m in enumerate(layers):  # BertCrossLayer returns (output, self_attn, cross_attn)
                hooks += [(m, f"fusion.{stream}.{i}", first), (m, f"fusion.{stream}.{i}.cross_attn", lambda o: o[2])]
        if hasattr(model, "mim_head"):
            hooks += [(model.mim_head.decoder_embed, "decoder_embed", first)]
            hooks += [(m, f"decoder.block.{i}", nld) for i, m in enumerate(model.mim_head.decoder.resblocks)]
            model.mim_head.register_forward_pre_hook(lambda m, a: self.put("image_feats_for_decoder", a[0]))
        if hasattr(model, "irtr_head"):
            hooks += [(model.irtr_head, "irtr_head", first)]
        model.vision_encoder.register_forward_pre_hook(lambda m, a: self.put("image_input", a[0]))
        for module, name, pick in hooks:
            module.register_forward_hook(lambda m, a, o, name=name, pick=pick: self.put(name, pick(o)))

    def put(self, name, tensor):
        if self.prefix is not None:
            self.out[f"{self.prefix}.{name}"] = tensor.detach().clone().contiguous()

    @contextlib.contextmanager
    def pass_(self, prefix):
        self.prefix = prefix
        try:
            yield
        finally:
            self.prefix = None


def run_goldens(up, model, batch, mim_noise):
    """Runs upstream's infer and objectives; returns the goldens and the gradients."""
    c, obj, B = model.hparams.config, up.objectives, len(batch["text_ids"])
    rec, g, names = Recorder(model), {}, [n for n, _ in model.named_parameters()]
    masking = model.random_masking

    def random_masking(x, mask_ratio):  # upstream's, with its torch.rand noise injected
        rand = torch.rand
        torch.rand = lambda *a, **k: mim_noise.to(x.device).clone()
        try:
            x_masked, mask, ids_restore = masking(x, mask_ratio)
        finally:
            torch.rand = rand
        g["mim.masks"], g["mim.ids_restore"] = mask.detach().clone(), ids_restore.clone()
        return x_masked, mask, ids_restore

    model.random_masking = random_masking
    model.eval()
    with torch.no_grad(), rec.pass_("infer"):
        ret = model.infer(batch, output_attentions=True)
        rec.put("image.patch_embed", model.vision_encoder.forward_patch_embed(batch["image"][0]))
    for key in ("multi_modal_text_feats", "multi_modal_image_feats", "multi_modal_cls_feats", "patched_images"):
        g[f"infer.{key}"] = ret[key].detach().clone()
    on = {k: v > 0 for k, v in c["loss_names"].items()}  # a head exists only when its loss is on
    with torch.no_grad():
        if on["vqa"]:
            vqa = obj.compute_vqa(model, batch)
            g.update({"head.vqa_logits": vqa["vqa_logits"], "loss.vqa": vqa["vqa_loss"],
                      "input.vqa_targets": vqa["vqa_targets"]})
        if on["cls"]:
            cls = obj.compute_cls(model, batch)
            g.update({"head.cls_logits": cls["cls_logits"], "loss.cls": cls["cls_loss"]})
        if on["irtr"]:
            with rec.pass_("irtr"):
                irtr = obj.compute_irtr(model, batch)
            g.update({"loss.irtr": irtr["irtr_loss"],
                      "head.irtr_scores": rec.out.pop("irtr.irtr_head")[:, 0].reshape(B, -1)})
    total = torch.zeros(())
    for key, compute in (("mlm", obj.compute_mlm), ("mim", obj.compute_mim), ("itm", obj.compute_itm)):
        if on[key]:
            with rec.pass_(key):
                r = compute(model, batch)
            g[f"head.{key}_logits"], g[f"loss.{key}"] = r[f"{key}_logits"], r[f"{key}_loss"]
            total = total + c["loss_names"][key] * r[f"{key}_loss"]
            if key == "mim":
                g["mim.target"] = r["mim_labels"]
            if key == "itm":
                g["input.itm_image"], g["input.itm_labels"] = rec.out["itm.image_input"], r["itm_labels"].long()
    if total.requires_grad:
        total.backward()
    g["loss.pretrain_total"] = total
    grads = {n: p.grad.detach().clone() for n, p in zip(names, model.parameters())
             if p.requires_grad and p.grad is not None}
    g.update({f"grad.{n}": t for n, t in grads.items()})
    g.update({k: v for k, v in rec.out.items() if not k.startswith(("irtr.", "itm.")) and "image_input" not in k})
    F = c["draw_false_text"]
    g.update({f"input.{k}": batch[k] for k in ("text_ids", "text_masks", "text_ids_mlm", "text_labels_mlm", "cls_labels")})
    g.update({
        "input.image": batch["image"][0], "input.mim_noise": mim_noise,
        "input.answer_types": torch.tensor(batch["answer_types"]),
        "input.irtr_text_ids": torch.stack([batch["text_ids"]] + [batch[f"false_text_{i}_ids"] for i in range(F)], 1),
        "input.irtr_text_masks": torch.stack([batch["text_masks"]] + [batch[f"false_text_{i}_masks"] for i in range(F)], 1),
    })
    return {k: v.detach().clone().contiguous() for k, v in g.items()}, grads


def adamw_goldens(up, model, grads):
    """Two optimizer steps from the loaded weights, fed the golden gradients at both steps:
    upstream's `set_schedule` builds the groups (lr = ADAMW_LR with its multipliers, its
    no-decay rules) and its AdamW (transformers 4.6, from the shims). Constant lr."""
    config = model.hparams.config
    saved_lr, config["learning_rate"] = config["learning_rate"], ADAMW_LR
    model.trainer = types.SimpleNamespace(max_steps=config["max_steps"] or 1000)
    try:
        (optimizer,), _ = up.utils.set_schedule(model)
    finally:
        config["learning_rate"] = saved_lr
    params = dict(model.named_parameters())
    by_id = {id(p): n for n, p in params.items()}
    groups = {}
    for group in optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])  # the schedule is not part of the golden
        groups.update({by_id[id(p)]: dict(lr=group["lr"], weight_decay=group["weight_decay"])
                       for p in group["params"] if by_id[id(p)] in grads})
    for _ in range(ADAMW_STEPS):
        for name, p in params.items():
            p.grad = grads[name].clone() if name in grads else None
        optimizer.step()
    first = optimizer.param_groups[0]
    spec = dict(lr=ADAMW_LR, weight_decay=config["weight_decay"], betas=list(first["betas"]), eps=first["eps"],
                steps=ADAMW_STEPS, algorithm=ADAMW_RULE, groups={n: groups[n] for n in params if n in groups})
    return {f"adamw.step2.{n}": params[n].detach().clone() for n in spec["groups"]}, spec


def sample_png(path, generator):
    """A small 97x73 RGB test image: a colour gradient with noise."""
    y, x = np.mgrid[0:73, 0:97].astype(np.float32)
    noise = torch.rand(73, 97, 3, generator=generator).numpy() * 60
    rgb = np.stack([x / 96 * 255, y / 72 * 255, (x + y) / 168 * 255], -1) * 0.75 + noise
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path)


# ---------------------------------------------------------------- main
def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=path.endswith("config.json"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="an upstream M3AE checkout (the folder holding m3ae/)")
    ap.add_argument("--out", required=True, help="the set folder to write")
    ap.add_argument("--preset", default="tiny-a", choices=sorted(PRESETS))
    ap.add_argument("--name", help="the set's name in manifest.json (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="JSON object or file overriding config keys")
    ap.add_argument("--batch", type=int, help="golden batch size (preset's by default)")
    ap.add_argument("--checkpoint-image-size", type=int, help="image size model.ckpt is written at")
    args = ap.parse_args()

    up = import_upstream(args.upstream)
    spec = build_spec(up, args)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = os.path.join(args.out, "model.ckpt")

    train_config = dict(spec.config, image_size=spec.ckpt_size, test_only=False, load_path="")
    with stand_in_encoders(up, spec):
        source = up.module.M3AETransformerSS(train_config)
    perturb_(source, gen)
    save_checkpoint(source, ckpt, gen)

    model, load_report = load_like_upstream(up, spec, dict(spec.config, load_path=ckpt))
    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    batch, mim_noise = make_inputs(spec, gen)
    goldens, grads = run_goldens(up, model, batch, mim_noise)
    steps, adamw = adamw_goldens(up, model, grads)
    goldens.update(steps)
    sample = os.path.join(args.out, "sample.png")
    sample_png(sample, gen)
    goldens["pre.clip_transform"] = up.clip_transform(spec.config["image_size"])(Image.open(sample).convert("RGBA"))

    save_file(state_dict, os.path.join(args.out, "state_dict.safetensors"))
    save_file(goldens, os.path.join(args.out, "goldens.safetensors"))
    config = {k: v for k, v in spec.config.items() if k != "load_path"}
    write_json(os.path.join(args.out, "config.json"), dict(
        config, language_encoder_config=spec.lang, vision_encoder_config=spec.vision))
    tensors = {k: dict(shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in sorted(goldens.items())}
    write_json(os.path.join(args.out, "manifest.json"), dict(
        set=args.name or args.preset, config="config.json", checkpoint="model.ckpt", checkpoint_image_size=spec.ckpt_size,
        tensors=tensors, upstream_load_report=load_report, adamw=adamw))
    print(f"wrote {args.out}: {len(goldens)} goldens, {len(state_dict)} weights; load report {load_report}")


if __name__ == "__main__":
    main()
