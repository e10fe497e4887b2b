"""Regenerates a training golden set (parity/train-vqa, parity/train-irtr) from UPSTREAM M3AE.

A training set is a small, complete fine-tuning setup (config, initial weights, Arrow tables,
tokenizer) plus numbers that UPSTREAM's own code computed on it: its datamodules, datasets,
collate, tokenizer call and clip transform read the tables; its `M3AETransformerSS`,
`objectives`, metrics (`gadgets/my_metrics.py`) and `set_schedule` (optimizer groups,
transformers-4.6 AdamW, polynomial decay with warmup) produce the losses, learning rates,
scores and recalls. The upstream checkout is imported at run time from the path you give;
no upstream code lives in this project. The set format is parity/FORMAT.md ("Training sets").

Usage:
    python parity/generate_train.py --upstream /path/to/M3AE --out DIR --set train-vqa|train-irtr
        [--seed N] [--toy-bpe DIR] [--steps N] [--config JSON]

  --toy-bpe  a RoBERTa byte-level BPE folder (vocab.json + merges.txt) the set's tokenizer is
             built from (default: tests/fixtures/data/toy-bpe; `<mask>` is appended when absent)
  --config   a JSON object (inline or a file path) overriding upstream config keys of the preset

Requirements: parity/requirements-train.txt (generate.py's, plus pandas and pyarrow).
Lightning itself is not needed: parity/upstream_shims.py stands in for it (its `Metric` keeps
Lightning 1.3's accumulate/compute/reset semantics), and this script drives the steps the way
Lightning 1.3 does (`fit_steps`, `vqa_test`). Other stand-ins, all outside upstream's files:
  * the CLIP / roberta-base downloads: generate.stand_in_encoders (tiny shapes, TEXT / VISION);
  * `tokenizer` must contain "roberta" for upstream to take its RoBERTa branch: it is given the
    set's tokenizer/ folder through a temporary symlink named `roberta`;
  * `LightningModule.log` -> `Log` (records what upstream logs); `pl_module.trainer` -> a
    namespace with max_steps, max_epochs, accumulate_grad_batches and the datamodule;
  * `random` inside m3ae.datasets.base_dataset -> `DrawLog`, a seeded generator that records
    the false-text draws (upstream draws them from the unseeded global `random`);
  * torch.distributed for compute_irtr_recall: a real 1-process gloo group (its
    DistributedSampler and barrier; all_gather of one rank returns its input).

Output is deterministic for a given seed (torch on 1 CPU thread, float32).
"""
import argparse
import copy
import io
import json
import os
import random
import shutil
import sys
import tempfile
import types
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import generate  # noqa: E402  (import_upstream, upstream_defaults, stand_in_encoders, write_json)
import upstream_shims  # noqa: E402,F401  (installed by generate.import_upstream)

DEFAULT_TOY_BPE = os.path.join(HERE, "..", "tests", "fixtures", "data", "toy-bpe")

# The stand-in encoders (their shapes are not upstream config keys; written to config.json as
# `language_encoder_config` / `vision_encoder_config`). vocab_size is filled from the tokenizer.
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=24, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
VISION = dict(width=64, layers=2, patch_size=16, context_length=4, vocab_size=8, transformer_width=16)

# Upstream config keys on top of upstream's defaults, its task preset and `clip16`,
# `text_roberta` (stacked in that order, as run_scripts/ do).
_COMMON = dict(
    seed=0, image_size=48, patch_size=16, max_text_len=20, tokenizer="tokenizer", data_root="data",
    load_path="", test_only=False, num_gpus=1, num_nodes=1, num_workers=0, precision=32,
    input_text_embed_size=TEXT["hidden_size"], input_image_embed_size=VISION["width"],
    hidden_size=32, num_heads=2, num_top_layer=2, mlp_ratio=4, drop_rate=0.0,
    warmup_steps=0.2, train_transform_keys=["clip"], val_transform_keys=["clip"],
    exp_name=None,  # the preset's
)
SETS = {
    # VQA lr 3e-4 (x50 on the head): in a trial at 1e-3 these 5 steps were chaotic (a 3e-7
    # relative change of the initial weights moved step 4's loss by 1e-5); here by <= 1 ulp
    "train-vqa": dict(task="vqa_vqa_rad", preset="task_finetune_vqa_vqa_rad", steps=5,
                      config=dict(_COMMON, learning_rate=3e-4, vqa_label_size=6, draw_false_image=0)),
    "train-irtr": dict(task="irtr_roco", preset="task_finetune_irtr_roco", steps=3,
                       config=dict(_COMMON, learning_rate=1e-3, draw_false_text=3, draw_false_image=0)),
}
# Added to upstream's fresh init (N(0, s^2) per element; vectors, matrices): with upstream's
# std-0.02 init alone the irtr scores of one image barely depend on the text (rank margins
# ~4e-8, at float32 rounding level); with these they are >= 8e-5.
PERTURB = (0.05, 0.1)
# rounding_noise: relative perturbation of the initial weights, about 2.5 float32 ulps
NOISE = 3e-7


# ---------------------------------------------------------------- config
def named_config(up, name):
    """One of upstream's sacred named configs, evaluated as generate.upstream_defaults
    evaluates `config()`."""
    scope = dict(vars(up.config), config=getattr(up.config, name))
    return generate.upstream_defaults(types.SimpleNamespace(**scope))


def build_config(up, spec, n_train, steps, vocab_size, overrides):
    """Upstream defaults <- task preset <- clip16 <- text_roberta <- the set's keys."""
    config = generate.upstream_defaults(up.config)
    for name in (spec["preset"], "clip16", "text_roberta"):
        config.update(named_config(up, name))
    keys = dict(spec["config"], per_gpu_batchsize=n_train, batch_size=n_train, max_steps=steps,
                vocab_size=vocab_size)
    keys = {k: v for k, v in keys.items() if v is not None}
    for key, value in list(keys.items()) + list(overrides.items()):
        config[key] = dict(config[key], **value) if isinstance(config.get(key), dict) else value
    return config


# ---------------------------------------------------------------- tokenizer
def write_tokenizer(folder, toy_bpe, lang):
    """A RoBERTa tokenizer folder from a byte-level BPE: vocab.json (with `<mask>`, appended at
    the next id when the BPE lacks it), merges.txt, and what `save_pretrained` writes
    (tokenizer.json, tokenizer_config.json, special_tokens_map.json); plus the HF config.json
    of the text encoder, which upstream's `RobertaModel.from_pretrained(tokenizer)` would read."""
    from transformers import RobertaConfig, RobertaTokenizerFast
    vocab = json.load(open(os.path.join(toy_bpe, "vocab.json"), encoding="utf-8"))
    for token, want in (("<s>", 0), ("<pad>", 1), ("</s>", 2), ("<unk>", 3)):
        if vocab.get(token) != want:
            raise SystemExit(f"{toy_bpe}: {token} must have id {want}")
    if "<mask>" not in vocab:
        vocab["<mask>"] = max(vocab.values()) + 1
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        shutil.copy(os.path.join(toy_bpe, "merges.txt"), os.path.join(tmp, "merges.txt"))
        tokenizer = RobertaTokenizerFast(vocab_file=os.path.join(tmp, "vocab.json"),
                                         merges_file=os.path.join(tmp, "merges.txt"), model_max_length=512)
    tokenizer.save_pretrained(folder)
    lang = dict(lang, vocab_size=len(tokenizer))
    RobertaConfig(**lang).save_pretrained(folder)
    return tokenizer, lang


# ---------------------------------------------------------------- synthetic images and tables
COLORS = {"red": (205, 45, 40), "blue": (40, 70, 210)}
SIZES = [(48, 40), (40, 48), (56, 44), (64, 64), (36, 52), (52, 36)]


def draw_image(rng, facts, mode="RGB"):
    """PNG bytes: a smooth two-colour gradient background with one filled shape."""
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.integers(20, 120, 3), rng.integers(120, 235, 3)
    t = (x / max(w - 1, 1) * rng.uniform(0.2, 0.8) + y / max(h - 1, 1) * rng.uniform(0.2, 0.8))[..., None]
    background = (c0 * (1 - t / 1.6) + c1 * (t / 1.6)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    r = (0.22 if facts.get("size") == "small" else 0.34) * min(w, h)
    cx = {"left": 0.3, "right": 0.7}.get(facts.get("position"), 0.5) * w
    cy = {"top": 0.3, "bottom": 0.7}.get(facts.get("position"), 0.5) * h
    box = [cx - r, cy - r, cx + r, cy + r]
    draw = ImageDraw.Draw(image)
    (draw.ellipse if facts["shape"] == "circle" else draw.rectangle)(box, fill=COLORS[facts["color"]])
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":  # alpha falls off left to right (upstream's transform drops it)
        alpha = Image.fromarray(np.broadcast_to(np.linspace(255, 96, w), (h, w)).astype(np.uint8), "L")
        image = image.convert("RGBA")
        image.putalpha(alpha)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_arrow(records, columns, path):
    """As upstream's prepro/make_arrow.py writes a split: pandas -> Arrow IPC file. The frame
    has object columns, as pandas 1.x built them for upstream (pandas >= 3 would otherwise
    infer its own string dtype, which Arrow stores as large_string)."""
    table = pa.Table.from_pandas(pd.DataFrame(records, columns=columns, dtype=object))
    with pa.OSFile(path, "wb") as sink:
        with pa.RecordBatchFileWriter(sink, table.schema) as writer:
            writer.write_table(table)


# VQA: (question, answer type, how the answer follows from the image's facts).
VQA_QUESTIONS = {
    "circle": ("is there a circle?", 0, lambda f: "yes" if f["shape"] == "circle" else "no"),
    "red": ("is the shape red?", 0, lambda f: "yes" if f["color"] == "red" else "no"),
    "left": ("is it on the left?", 0, lambda f: "yes" if f["position"] == "left" else "no"),
    "shape": ("what shape is shown?", 1, lambda f: f["shape"]),
    "color": ("what color is it?", 1, lambda f: f["color"]),
    # longer than max_text_len tokens: exercises truncation
    "long": ("looking closely at this small synthetic picture, what colour is the one drawn shape?", 1,
             lambda f: f["color"]),
}
# per split: one row per image = (image mode, [question keys]); val is a copy of test, as in
# VQA-RAD (upstream issue #3)
VQA_LAYOUT = {
    "train": [("RGB", ["circle", "shape"]), ("RGB", ["color", "red"]), ("RGBA", ["shape", "left"]),
              ("RGB", ["long", "circle"]), ("L", ["shape", "circle"])],
    "test": [("RGB", ["circle", "color"]), ("RGB", ["shape", "red"]), ("RGB", ["left", "color", "circle"]),
             ("L", ["shape", "circle", "left"]), ("RGB", ["long", "red"]), ("RGB", ["shape", "color"])],
}


def random_facts(rng):
    return dict(shape=["circle", "square"][int(rng.integers(2))], color=["red", "blue"][int(rng.integers(2))],
                position=["left", "right", "top", "bottom"][int(rng.integers(4))],
                size=["small", "large"][int(rng.integers(2))])


def write_vqa_tables(data_dir, rng):
    """vqa_vqa_rad_{train,val,test}.arrow in make_arrow_vqa's layout. The answer vocabulary
    follows prepro's rule: answers (lower-cased) numbered by first appearance over the
    train, val, test questions; every score is 1.0."""
    splits, qid = {}, 1000
    for split in ("train", "test"):
        rows = []
        for i, (mode, keys) in enumerate(VQA_LAYOUT[split]):
            facts = random_facts(rng)
            questions = []
            for key in keys:
                text, answer_type, answer = VQA_QUESTIONS[key]
                questions.append(dict(question=text, answer=answer(facts), answer_type=answer_type, qid=qid))
                qid += 1
            rows.append(dict(image=draw_image(rng, facts, mode), image_id=f"synthetic/vqa_{split}_{i:03d}.png",
                             questions=questions, facts=facts))
        splits[split] = rows
    splits["val"] = copy.deepcopy(splits["test"])
    ans2label = {}
    for split in ("train", "val", "test"):
        for row in splits[split]:
            for q in row["questions"]:
                ans2label.setdefault(q["answer"], len(ans2label))
    label2ans = list(ans2label)
    for split in ("train", "val", "test"):
        records = []
        for row in splits[split]:
            qs = row["questions"]
            records.append([row["image"], [q["question"] for q in qs],
                            [[label2ans[ans2label[q["answer"]]]] for q in qs],
                            [[ans2label[q["answer"]]] for q in qs], [[1.0] for _ in qs],
                            row["image_id"], [q["qid"] for q in qs], [q["answer_type"] for q in qs], split])
        write_arrow(records, ["image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                              "question_id", "answer_type", "split"], os.path.join(data_dir, f"vqa_vqa_rad_{split}.arrow"))
    return dict(label2ans=label2ans, questions={s: sum(len(r["questions"]) for r in splits[s]) for s in splits},
                images={s: len(splits[s]) for s in splits})


def irtr_captions(facts, second):
    size, color, shape, position = facts["size"], facts["color"], facts["shape"], facts["position"]
    if second:
        return f"the {color} {shape} at the {position} is {size}"
    return f"a {size} {color} {shape} on the {position}"


def write_irtr_tables(data_dir, rng):
    """irtr_roco_{train,val,test}.arrow in make_arrow's layout (image, caption, image_id,
    split). Every image has distinct facts within its split, so no two captions (nor their
    truncations) are equal; the listed rows also get a second caption, and one caption per
    split is longer than max_text_len tokens."""
    layout = {"train": (6, {1, 4}), "val": (12, {0, 3, 7, 10}), "test": (12, {2, 5})}
    combos = [dict(size=s, color=c, shape=h, position=p) for s in ("small", "large") for c in ("red", "blue")
              for h in ("circle", "square") for p in ("left", "right", "top", "bottom")]
    info = {}
    for split, (n, two) in layout.items():
        picks = rng.permutation(len(combos))[:n]
        records = []
        for i, k in enumerate(picks):
            facts = combos[int(k)]
            captions = [irtr_captions(facts, False)] + ([irtr_captions(facts, True)] if i in two else [])
            if i == n - 1:
                captions[0] = ("in this small synthetic test picture drawn for checking the port, we see "
                               + captions[0])
            mode = "L" if i == 2 else "RGB"
            records.append([draw_image(rng, facts, mode), captions, f"synthetic/irtr_{split}_{i:03d}.png", split])
        texts = [t for r in records for t in r[1]]
        assert len(set(texts)) == len(texts)
        write_arrow(records, ["image", "caption", "image_id", "split"],
                    os.path.join(data_dir, f"irtr_roco_{split}.arrow"))
        info[split] = dict(images=n, texts=len(texts))
    return info


# ---------------------------------------------------------------- running upstream
class Log:
    """Stands in for LightningModule.log: keeps the last value logged under each name."""

    def __init__(self):
        self.values = {}

    def __call__(self, name, value, *args, **kwargs):
        self.values[name] = float(value)


class DrawLog(random.Random):
    """Replaces the `random` module inside upstream's base_dataset (its false image/text
    draws): a seeded generator that records every `randint` result, or, while `replay` holds
    values, returns those instead."""

    def __init__(self, seed):
        super().__init__(seed)
        self.draws, self.replay = [], []

    def randint(self, a, b):
        value = self.replay.pop(0) if self.replay else super().randint(a, b)
        assert a <= value <= b
        self.draws.append(value)
        return value


def perturb_(model, generator, scales=PERTURB):
    """generate.perturb_ with the scales above: in place, so irtr_head stays a view of
    itm_head.fc row 1, as upstream ties them (both are perturbed, in named_parameters order)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("decoder_pos_embed"):
                p.add_(torch.randn(p.shape, generator=generator) * scales[0 if p.dim() == 1 else 1])


def floats(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def param_groups(model, optimizer):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [dict(initial_lr=g["initial_lr"], weight_decay=g["weight_decay"],
                 params=[by_id[id(p)] for p in g["params"]]) for g in optimizer.param_groups]


def fit_steps(up, model, dm, steps, log, before_step=None):
    """`steps` optimizer steps the way Lightning 1.3 runs automatic optimization with
    accumulate_grad_batches 1: per step (= per epoch: the train loader yields one full batch)
    model.train(), training_step, backward, optimizer.step, zero_grad, then the step-interval
    LR scheduler. Optimizer and scheduler come from upstream's `configure_optimizers`
    (`set_schedule`). Returns one record per step (loss before the update, lrs used)."""
    (optimizer,), (sched,) = model.configure_optimizers()
    scheduler = sched["scheduler"]
    assert sched["interval"] == "step"
    loader = dm.train_dataloader()
    assert len(loader) == 1, "the train split must be one full batch"
    records, batch = [], None
    for step in range(steps):
        model.train()
        batch = next(iter(loader))
        record = dict(step=step, lr_factor=float(scheduler.lr_lambdas[0](step)),
                      lrs=[g["lr"] for g in optimizer.param_groups],
                      order=list(batch["qid"] if "qid" in batch else batch["raw_index"]))
        if before_step:
            record.update(before_step(batch))
        log.values.clear()
        loss = model.training_step(batch, step)
        record["loss"] = loss.item()
        record["logged"] = dict(log.values)
        loss.backward()
        optimizer.step()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        optimizer.zero_grad(set_to_none=False)  # torch 1.9's default: grads zeroed, not freed
        scheduler.step()
        model.global_step = step + 1
        records.append(record)
    model.train()
    with torch.no_grad():
        log.values.clear()
        after = float(model.training_step(batch, steps))
    return records, after, optimizer, no_grad


def rounding_noise(up, model, initial, dm, steps, log, draws, replay, records, summary, seed):
    """How far float32 rounding alone can move the recorded training numbers: the same steps
    (same batches, same false-text draws) rerun from the initial weights times (1 + NOISE*N(0,1)).
    Adds `loss_noise` to each step record, returns (loss_after noise, per-parameter noise).
    Adam divides each gradient element by its own running scale, so a parameter whose exact
    gradient is zero or nearly so (attention key biases, which softmax ignores; irtr_head.bias,
    which shifts every candidate score alike) moves by rounding noise at full lr."""
    g = torch.Generator().manual_seed(seed + 1)
    model.load_state_dict({k: v * (1 + NOISE * torch.randn(v.shape, generator=g)) for k, v in initial.items()})
    draws.replay, draws.draws = list(replay), []
    again, after, _, _ = fit_steps(up, model, dm, steps, log)
    assert not draws.replay
    for record, other in zip(records, again):
        record["loss_noise"] = abs(record["loss"] - other["loss"])
    other = params_summary(model)
    noise = {n: max(abs(v["sum"] - other[n]["sum"]), abs(v["abs_sum"] - other[n]["abs_sum"])) for n, v in summary.items()}
    return after, noise


def params_summary(model):
    return {n: dict(sum=float(p.detach().double().sum()), abs_sum=float(p.detach().double().abs().sum()))
            for n, p in model.named_parameters()}


def vqa_test(up, model, dm, log):
    """Lightning's test loop on the test split: model.eval(), test_step per batch (upstream's
    compute_vqa with test=True, updating test_vqa_score / test_vqa_loss), then the metric
    values and upstream's test_epoch_end (epoch_wrapup), whose logs are recorded."""
    predictions, batch_losses, original = [], [], up.objectives.compute_vqa

    def compute_vqa(pl_module, batch, test=False):
        ret = original(pl_module, batch, test=test)
        batch_losses.append(float(ret["vqa_loss"]))
        logits = ret["vqa_logits"].detach()
        top2 = logits.topk(2, dim=1).values
        for i in range(len(logits)):
            predictions.append(dict(question_id=batch["qid"][i], pred=int(logits[i].argmax()),
                                    labels=batch["vqa_labels"][i], scores=batch["vqa_scores"][i],
                                    answer_type=int(batch["answer_types"][i]), logits=floats(logits[i]),
                                    top2_margin=float(top2[i, 0] - top2[i, 1])))
        return ret

    model.eval()
    up.objectives.compute_vqa = compute_vqa
    try:
        with torch.no_grad():
            for i, batch in enumerate(dm.test_dataloader()):
                model.test_step(batch, i)
    finally:
        up.objectives.compute_vqa = original
    score, loss = model.test_vqa_score, model.test_vqa_loss
    result = {
        "vqa/test/score": float(score.compute()),
        "vqa/test/close_score": float(score.close_score / score.close_total),
        "vqa/test/open_score": float(score.open_score / score.open_total),
        "vqa/test/loss": float(loss.compute()),
        "total": int(score.total), "close_total": int(score.close_total), "open_total": int(score.open_total),
        "batch_sizes": [len(b["qid"]) for b in dm.test_dataloader()], "batch_losses": batch_losses,
        "min_top2_margin": min(p["top2_margin"] for p in predictions), "predictions": predictions,
    }
    log.values.clear()
    model.test_epoch_end([])  # upstream's epoch_wrapup(test=True): logs, then resets the metrics
    result["logged_at_epoch_end"] = dict(log.values)
    return result


def irtr_recall(up, model):
    """Upstream's compute_irtr_recall (val split via make_no_false_val_dset), single process:
    a 1-rank gloo group serves its DistributedSampler and barrier (all_gather of 1 rank
    returns its input). The score matrix it gathers is recorded too."""
    import torch.distributed as dist
    if not dist.is_initialized():
        store = os.path.join(tempfile.mkdtemp(), "store")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    gathered, original = [], up.objectives.all_gather

    def all_gather(data, group=None):
        gathered.append(copy.deepcopy(data))
        return original(data, group)

    model.eval()
    up.objectives.all_gather = all_gather
    try:
        recalls = up.objectives.compute_irtr_recall(model)
    finally:
        up.objectives.all_gather = original
    names = ("ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r5", "tr_r10")
    scores, image_index = torch.tensor(gathered[0]), list(gathered[1])
    text_dset = model.trainer.datamodule.dms[0].make_no_false_val_dset()
    text_image_index = [text_dset.index_mapper[i][0] for i in range(len(text_dset))]

    def margins(m):  # gap between ranks k and k+1 along dim 1, at the k that recall uses
        s = m.sort(dim=1, descending=True).values
        return min(float((s[:, k - 1] - s[:, k]).min()) for k in (1, 5, 10) if k < s.shape[1])

    return dict({n: float(v) for n, v in zip(names, recalls)},
                scores=[floats(row) for row in scores], image_index=image_index,
                text_image_index=text_image_index,
                min_rank_margin=min(margins(scores), margins(scores.t())))


# ---------------------------------------------------------------- main
def size_of(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="an upstream M3AE checkout (the folder holding m3ae/)")
    ap.add_argument("--out", required=True, help="the set folder to write (an existing training set there is replaced)")
    ap.add_argument("--set", required=True, choices=sorted(SETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="training steps recorded (= max_steps; default: the set's)")
    ap.add_argument("--toy-bpe", default=DEFAULT_TOY_BPE)
    ap.add_argument("--config", help="JSON object or file overriding config keys")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for message in ("DataCollatorForWholeWordMask", "promote has been superseded", "torch.cuda.amp.autocast",
                    "User provided device_type of 'cuda'", "CUDA is not available", "'pin_memory' argument is set as true"):
        warnings.filterwarnings("ignore", message=f".*{message}")

    up = generate.import_upstream(args.upstream)
    from m3ae.datamodules.multitask_datamodule import MTDataModule
    base_dataset = sys.modules["m3ae.datasets.base_dataset"]
    spec = SETS[args.set]
    steps = args.steps or spec["steps"]
    overrides = json.load(open(args.config)) if args.config and os.path.isfile(args.config) \
        else json.loads(args.config or "{}")
    lang_over = overrides.pop("language_encoder_config", {})
    vision = dict(VISION, **overrides.pop("vision_encoder_config", {}))

    out = os.path.abspath(args.out)
    if os.path.isdir(out) and os.listdir(out):  # replace only a training set (or an empty folder)
        try:
            kind = json.load(open(os.path.join(out, "manifest.json")))["kind"]
        except (OSError, ValueError, KeyError):
            kind = None
        if kind != "train":
            raise SystemExit(f"{out} is not empty and holds no training set: not replacing it")
        shutil.rmtree(out)
    data_dir, tok_dir, model_dir = (os.path.join(out, d) for d in ("data", "tokenizer", "model"))
    for d in (data_dir, model_dir):
        os.makedirs(d)

    # tokenizer and tables (numpy generator seeded per set; nothing here touches torch's RNG)
    tokenizer, lang = write_tokenizer(tok_dir, args.toy_bpe, dict(TEXT, **lang_over))
    rng = np.random.default_rng([args.seed, 1 if args.set == "train-vqa" else 2])
    data_info = write_vqa_tables(data_dir, rng) if args.set == "train-vqa" else write_irtr_tables(data_dir, rng)
    n_train = data_info["questions"]["train"] if args.set == "train-vqa" else data_info["train"]["texts"]
    config = build_config(up, spec, n_train, steps, len(tokenizer), dict(overrides, seed=args.seed))
    if args.set == "train-vqa" and config["vqa_label_size"] != len(data_info["label2ans"]):
        raise SystemExit(f"vqa_label_size {config['vqa_label_size']} != {len(data_info['label2ans'])} answers")

    # The config upstream runs with: absolute data_root; tokenizer reached through a link whose
    # name contains "roberta" (upstream picks RobertaConfig / RobertaTokenizerFast by that substring).
    link_dir = tempfile.mkdtemp()
    os.symlink(tok_dir, os.path.join(link_dir, "roberta"))
    run_config = dict(copy.deepcopy(config), data_root=data_dir, tokenizer=os.path.join(link_dir, "roberta"))

    # pl.seed_everything(seed), then the model as upstream's __init__ builds it (no load_path:
    # fresh weights, heads included), perturbed (PERTURB) so that zero biases and unit
    # LayerNorm gains cannot hide a bug. These are the initial weights in model/.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    enc = types.SimpleNamespace(config=run_config, lang=lang, vision=vision)
    with generate.stand_in_encoders(up, enc):
        model = up.module.M3AETransformerSS(run_config)
    perturb_(model, torch.Generator().manual_seed(args.seed))
    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
                  if k != "language_encoder.embeddings.position_ids"}
    log = Log()
    model.log = log
    model.global_step = 0

    # upstream's datamodule (MTDataModule without DDP: sequential samplers, no shuffle)
    dm = MTDataModule(run_config, dist=False)
    dm.setup("fit")
    model.trainer = types.SimpleNamespace(max_steps=run_config["max_steps"], max_epochs=1000,
                                          accumulate_grad_batches=1, datamodule=dm)
    draws = DrawLog(args.seed)
    base_dataset.random = draws  # upstream's false-text draws, seeded and recorded

    expected = {}
    if args.set == "train-vqa":
        expected["test"] = vqa_test(up, model, dm, log)
        records, after, optimizer, no_grad = fit_steps(up, model, dm, steps, log)
        expected["train"] = dict(steps=[dict(step=r["step"], loss=r["loss"], score=r["logged"]["vqa/train/score"],
                                             lr_factor=r["lr_factor"], lrs=r["lrs"]) for r in records],
                                 loss_after=after)
        expected["test_after"] = vqa_test(up, model, dm, log)
    else:
        expected["recalls"] = irtr_recall(up, model)
        train_dset = dm.dms[0].train_dataset
        train_texts = [dict(raw_index=i, image_index=train_dset.index_mapper[i][0],
                            caption_index=train_dset.index_mapper[i][1],
                            text=train_dset.all_texts[train_dset.index_mapper[i][0]][train_dset.index_mapper[i][1]])
                       for i in range(len(train_dset))]
        F = run_config["draw_false_text"]

        def record_draws(batch):
            made = draws.draws[-len(batch["text"]) * F:]
            assert len(draws.draws) == len(batch["text"]) * F
            draws.draws.clear()
            indices = [made[i * F:(i + 1) * F] for i in range(len(batch["text"]))]
            for f in range(F):  # the collated false texts are the recorded ones
                assert batch[f"false_text_{f}"] == [train_texts[idx[f]]["text"] for idx in indices]
            return dict(false_text_indices=indices)

        draws.draws.clear()
        records, after, optimizer, no_grad = fit_steps(up, model, dm, steps, log, before_step=record_draws)
        expected["train"] = dict(steps=[dict(step=r["step"], loss=r["loss"], lr_factor=r["lr_factor"], lrs=r["lrs"],
                                             false_text_indices=r["false_text_indices"]) for r in records],
                                 loss_after=after, train_texts=train_texts)
        expected["recalls_after"] = irtr_recall(up, model)
        expected["train"]["aliases"] = {"irtr_head.weight": "itm_head.fc.weight[1:]", "irtr_head.bias": "itm_head.fc.bias[1:]"}
    max_steps = run_config["max_steps"]
    warmup = run_config["warmup_steps"]
    assert all(r["order"] == records[0]["order"] for r in records)
    summary = params_summary(model)
    replay = [i for r in records for sample in r.get("false_text_indices", []) for i in sample]
    after_again, noise = rounding_noise(up, model, state_dict, dm, steps, log, draws, replay, records, summary,
                                        args.seed)
    for step, record in zip(expected["train"]["steps"], records):
        step["loss_noise"] = record["loss_noise"]
    for name, value in summary.items():
        value["noise"] = noise[name]
        value["rounding_sensitive"] = noise[name] > 1e-6 * max(value["abs_sum"], 1e-12)
    expected["train"].update(
        loss_after_noise=abs(expected["train"]["loss_after"] - after_again),
        max_steps=max_steps, warmup_steps=int(max_steps * warmup) if isinstance(warmup, float) else warmup,
        batch_size=n_train, batch_order=records[0]["order"], param_groups=param_groups(model, optimizer),
        params_without_grad=no_grad, params_after=summary)

    # write the set
    config_out = dict(config, language_encoder_config=lang, vision_encoder_config=vision)
    generate.write_json(os.path.join(out, "config.json"), config_out)
    generate.write_json(os.path.join(model_dir, "config.json"), config_out)
    save_file(state_dict, os.path.join(model_dir, "model.safetensors"))
    os.chmod(os.path.join(model_dir, "model.safetensors"), 0o644)
    task = spec["task"]
    generate.write_json(os.path.join(out, "manifest.json"), dict(
        kind="train", set=args.set, task=task, config="config.json", model="model", data="data",
        tokenizer="tokenizer", seed=args.seed, data_info=data_info, expected=expected,
        notes=NOTES[args.set]))
    shutil.rmtree(link_dir)
    print(f"wrote {out} ({size_of(out)} bytes): {len(state_dict)} weights, task {task}")


_COMMON_NOTES = (
    "Numbers computed by upstream M3AE's own code (github zhjohnchan/M3AE, m3ae/) under torch 2.11 / "
    "transformers 4.57 through parity/upstream_shims.py, float32, CPU, 1 thread; format: parity/FORMAT.md "
    "'Training sets'. model/ holds the initial weights: upstream's fresh init (no load_path) plus the "
    "perturbation PERTURB of generate_train.py; every key, downstream heads included, is to be loaded. "
    "Data go through upstream's datamodule via MTDataModule(dist=False): table order, no shuffle, "
    "drop_last False, clip transform, RobertaTokenizerFast padded to max_text_len with truncation. "
    "train: max_steps full-batch steps (one batch per epoch), dropout 0; steps[k].loss is the loss before "
    "update k; lrs are the lr of the 6 set_schedule groups used at update k = initial_lr x lr_factor "
    "(polynomial decay with warmup, int(max_steps x warmup_steps) warmup steps); AdamW's step count "
    "advances even at lr 0; parameters in params_without_grad never get a gradient and are never "
    "updated (no weight decay either); loss_after: the last step's batch after the last update. ")
NOTES = {
    "train-vqa": _COMMON_NOTES + (
        "test / test_after: Lightning's test loop on the test split before / after the steps: batches of "
        "per_gpu_batchsize, the last one partial; VQARADScore (score of the argmax answer; close = "
        "answer_type 0, open = 1) and Scalar (vqa/test/loss = mean of the per-batch losses). "
        "The answer vocabulary is data_info.label2ans (prepro's rule: first appearance over train, val, "
        "test); vqa_label_size is its length. The val split is a copy of the test split, as in VQA-RAD."),
    "train-irtr": _COMMON_NOTES + (
        "recalls / recalls_after: upstream's compute_irtr_recall before / after the steps, on the VAL "
        "split (make_no_false_val_dset); scores[i][t] is the irtr_head score of val image i with val text t "
        "(texts in flattened caption order, text_image_index[t] its image). irtr_head starts equal to "
        "itm_head.fc row 1 and shares its storage (aliases); itm_head is frozen. Upstream draws the "
        "draw_false_text false texts of each sample at random from the train split, its own caption "
        "included: the draws used are steps[k].false_text_indices[sample][f], indices into train_texts; "
        "a port feeds them instead of drawing."),
}


if __name__ == "__main__":
    main()
