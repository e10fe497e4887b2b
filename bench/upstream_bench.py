"""The PyTorch side of the port-vs-upstream benchmark: upstream M3AE's own modules, at the
paper's full pre-training size, with seeded random weights.

Upstream (github zhjohnchan/M3AE) is imported from the checkout you name with --upstream;
no upstream code lives in this project. The shims that let it run under torch 2.11 and
transformers 4.57 are parity/upstream_shims.py, and the model is built the way
parity/generate.py builds it (CLIP and RoBERTa constructed instead of downloaded).

Usage (see bench/README.md):
    python bench/upstream_bench.py prepare --upstream PATH --dir DIR [--seed 0]
    python bench/upstream_bench.py run --upstream PATH --dir DIR --workload W
        [--repeats N] [--warmup N] [--pairs-images K] [--threads 2] --out FILE.json
        [--profile FILE.txt] [--device cuda] [--bf16]
    python bench/upstream_bench.py report --dir DIR --results RESDIR [--out FILE.md]
Workloads: load, infer, train, retrieval, matmul.
"""
import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import types

import torch

import e2e_report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ("load", "infer", "train", "retrieval", "matmul")
DEFAULT_REPEATS = dict(load=3, infer=3, train=2, retrieval=1, matmul=5)
DEFAULT_WARMUP = dict(load=1, infer=1, train=1, retrieval=0, matmul=1)

# Shapes of the stand-in encoders (parity/generate.py's convention): roberta-base and the
# CLIP ViT-B/16 checkpoint's shapes (its text tower is only present as unused weights).
LANGUAGE_ENCODER = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                        layer_norm_eps=1e-5, pad_token_id=1, hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1)
VISION_ENCODER = dict(width=768, layers=12, patch_size=16, context_length=77, vocab_size=49408,
                      transformer_width=512)
# Command-line overrides after the named configs, as upstream's run_scripts/pretrain_m3ae.sh
# gives them (`task_pretrain_m3ae clip16 text_roberta image_size=288 max_text_len=64`), plus
# what a single-process CPU benchmark needs.
OVERRIDES = dict(image_size=288, max_text_len=64, tokenizer="roberta-base", exp_name="bench",
                 num_gpus=1, per_gpu_batchsize=4, num_workers=0, precision=32, test_only=False,
                 load_path="")
NAMED_CONFIGS = ("task_pretrain_m3ae", "clip16", "text_roberta")

INFER_BATCH, TRAIN_BATCH, RETRIEVAL_IMAGES, RETRIEVAL_TEXTS = 4, 2, 8, 16
BOS, PAD, EOS = 0, 1, 2
MASK_ID = 50264  # roberta-base's <mask>; plain text ids are drawn from [3, MASK_ID)
MLM_PROB = 0.15


def load_generate():
    """parity/generate.py as a module (its shims, config reader and encoder stand-ins)."""
    path = os.path.join(ROOT, "parity", "generate.py")
    spec = importlib.util.spec_from_file_location("m3ae_parity_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- config and model
def config_scope(module, fn):
    """The assignments of a sacred config function, run into a fresh namespace (the way
    parity/generate.py's `upstream_defaults` reads `config()`), for the named configs."""
    import ast
    import inspect
    import textwrap
    body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0].body
    ns = {}
    exec(compile(ast.Module(body=body, type_ignores=[]), "<named_config>", "exec"), dict(vars(module)), ns)
    return ns


def bench_config(gen, up, seed):
    config = gen.upstream_defaults(up.config)
    for name in NAMED_CONFIGS:
        config.update(config_scope(up.config, getattr(up.config, name)))
    config.update(OVERRIDES)
    config["seed"] = seed
    return config


def spec_of(config):
    return types.SimpleNamespace(config=config, lang=dict(LANGUAGE_ENCODER), vision=dict(VISION_ENCODER))


def build_model(gen, up, config, seed):
    """Upstream's M3AETransformerSS with its own random init (seeded), then perturbed as the
    parity sets are (parity/generate.py `perturb_`), so no weight is a plain 0 or 1."""
    torch.manual_seed(seed)
    with gen.stand_in_encoders(up, spec_of(config)):
        model = up.module.M3AETransformerSS(config)
    return model


def saved_state_dict(model):
    """Parameters with upstream keys, plus the fixed `mim_head.decoder_pos_embed`; the
    non-persistent/non-parameter buffers (RoBERTa position_ids, token_type_ids) are left out."""
    params = dict(model.named_parameters())
    sd = model.state_dict()
    keep = {k: v.detach().clone().contiguous() for k, v in sd.items()
            if k in params or k == "mim_head.decoder_pos_embed"}
    return keep, sorted(set(sd) - set(keep))


# ---------------------------------------------------------------- inputs
def make_texts(n, length, g, full_first=True):
    """RoBERTa-style ids: <s>=0, ids in [3, MASK_ID), </s>=2 at position len-1, <pad>=1 after."""
    ids = torch.full((n, length), PAD, dtype=torch.long)
    masks = torch.zeros(n, length, dtype=torch.long)
    for i in range(n):
        size = length if (full_first and i == 0) else int(torch.randint(8, length + 1, (), generator=g))
        ids[i, 0] = BOS
        ids[i, 1:size - 1] = torch.randint(3, MASK_ID, (size - 2,), generator=g)
        ids[i, size - 1] = EOS
        masks[i, :size] = 1
    return ids, masks


def mlm_mask(ids, masks, g):
    """A collator's MLM masking: 15% of the tokens between <s> and </s> (at least one per
    row) are predicted; of those 80% -> <mask>, 10% a random id, 10% kept."""
    eligible = masks.bool() & (ids > EOS)
    pick = (torch.rand(ids.shape, generator=g) < MLM_PROB) & eligible
    for i in range(ids.shape[0]):
        if not pick[i].any():
            pick[i, 1] = True
    action = torch.rand(ids.shape, generator=g)
    ids_mlm = ids.clone()
    ids_mlm[pick & (action < 0.8)] = MASK_ID
    rand_pos = pick & (action >= 0.8) & (action < 0.9)
    ids_mlm[rand_pos] = torch.randint(3, MASK_ID, (int(rand_pos.sum()),), generator=g)
    labels = torch.where(pick, ids, torch.full_like(ids, -100))
    return ids_mlm, labels


def make_inputs(config, g):
    S, L = config["image_size"], config["max_text_len"]
    n_patch = (S // config["patch_size"]) ** 2
    out = {}
    out["infer.image"] = torch.randn(INFER_BATCH, 3, S, S, generator=g)
    out["infer.text_ids"], out["infer.text_masks"] = make_texts(INFER_BATCH, L, g)

    B = TRAIN_BATCH
    out["train.image"] = torch.randn(B, 3, S, S, generator=g)
    ids, masks = make_texts(B, L, g)
    out["train.text_ids"], out["train.text_masks"] = ids, masks
    out["train.text_ids_mlm"], out["train.text_labels_mlm"] = mlm_mask(ids, masks, g)
    # ITM: half the batch positive (label 1: the sample's own image), half negative (label 0:
    # a false image), in a seeded order. itm_image is the image batch ITM actually runs on.
    base = torch.cat([torch.ones(B // 2), torch.zeros(B - B // 2)]).long()
    labels = base[torch.randperm(B, generator=g)]
    false_images = torch.randn(B, 3, S, S, generator=g)
    out["train.itm_labels"] = labels
    out["train.itm_image"] = torch.where(labels.view(B, 1, 1, 1) == 1, out["train.image"], false_images)
    out["train.mim_noise"] = torch.rand(B, n_patch, generator=g)

    out["retrieval.images"] = torch.randn(RETRIEVAL_IMAGES, 3, S, S, generator=g)
    out["retrieval.text_ids"], out["retrieval.text_masks"] = make_texts(RETRIEVAL_TEXTS, L, g)
    return {k: v.contiguous() for k, v in out.items()}


# ---------------------------------------------------------------- prepare
def prepare(args):
    from safetensors.torch import save_file
    gen = load_generate()
    up = gen.import_upstream(args.upstream)
    os.makedirs(args.dir, exist_ok=True)
    config = bench_config(gen, up, args.seed)
    model = build_model(gen, up, config, args.seed)
    gen.perturb_(model, torch.Generator().manual_seed(args.seed + 1))
    sd, dropped = saved_state_dict(model)
    inputs = make_inputs(config, torch.Generator().manual_seed(args.seed + 2))
    save_file(sd, os.path.join(args.dir, "state_dict.safetensors"))
    torch.save({"state_dict": sd}, os.path.join(args.dir, "model.ckpt"))
    save_file(inputs, os.path.join(args.dir, "inputs.safetensors"))
    gen.write_json(os.path.join(args.dir, "config.json"), dict(
        {k: v for k, v in config.items()}, language_encoder_config=LANGUAGE_ENCODER,
        vision_encoder_config=VISION_ENCODER))
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {args.dir}: {len(sd)} tensors ({n / 1e6:.1f} M values), {len(inputs)} inputs; "
          f"left out of the state_dict: {dropped}")


# ---------------------------------------------------------------- run
def load_model(gen, up, args):
    from safetensors.torch import load_file
    config = json.load(open(os.path.join(args.dir, "config.json")))
    config = {k: v for k, v in config.items() if k not in ("language_encoder_config", "vision_encoder_config")}
    model = build_model(gen, up, config, config["seed"])
    load_streaming(model, os.path.join(args.dir, "state_dict.safetensors"))
    return model, config


def load_streaming(model, path):
    """load_state_dict's effect (strict, save for the non-persistent buffers), one tensor at a
    time from the safetensors file, so the process never holds two copies of the weights and
    peak RSS reflects the workload rather than the set-up."""
    from safetensors import safe_open
    target = model.state_dict(keep_vars=True)
    with safe_open(path, framework="pt") as f, torch.no_grad():
        keys = set(f.keys())
        missing = [k for k in target if k not in keys and not k.endswith(("position_ids", "token_type_ids"))]
        unexpected = sorted(keys - set(target))
        if missing or unexpected:
            raise SystemExit(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for k in keys:
            value = f.get_tensor(k)
            if value.shape != target[k].shape:
                raise SystemExit(f"{k}: shape {tuple(value.shape)} in the file, {tuple(target[k].shape)} in the model")
            target[k].copy_(value)


def check_load(result):
    missing = [k for k in result.missing_keys if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or result.unexpected_keys:
        raise SystemExit(f"state_dict mismatch: missing {missing}, unexpected {result.unexpected_keys}")


DEVICE = torch.device("cpu")


def sync():
    """Waits for queued CUDA kernels, so a timing covers the work (no-op on the CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return runs


def infer_batch(inputs, prefix):
    ids = inputs[f"{prefix}.text_ids"]
    return {"image": [inputs[f"{prefix}.image"]], "text_ids": ids, "text_masks": inputs[f"{prefix}.text_masks"],
            "text_labels": torch.full_like(ids, -100)}


def work_infer(model, inputs, args, result):
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    batch = infer_batch(inputs, "infer")

    def step():
        with torch.no_grad():
            model.infer(batch)

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.infer(batch)
    result["flops"] = int(counter.get_total_flops())
    result["runs"] = timed(step, args.repeats, args.warmup)
    result["batch"] = INFER_BATCH
    return step


@contextlib.contextmanager
def injected_randomness(model, mim_noise, itm_labels):
    """Makes upstream's two random draws in a pre-training step come from the inputs file:
    `random_masking`'s torch.rand(N, L) returns train.mim_noise, and compute_itm's
    torch.randperm(B) returns the permutation that turns its [1]*(B//2) + [0]*(B-B//2)
    label vector into train.itm_labels (so it picks the true image where the label is 1)."""
    B = itm_labels.numel()
    base = torch.cat([torch.ones(B // 2), torch.zeros(B - B // 2)]).long()
    ones, zeros = (base == 1).nonzero().flatten().tolist(), (base == 0).nonzero().flatten().tolist()
    if sorted(itm_labels.tolist()) != sorted(base.tolist()):
        raise SystemExit("train.itm_labels must hold B//2 ones and the rest zeros, as upstream draws them")
    perm = torch.tensor([ones.pop(0) if int(l) == 1 else zeros.pop(0) for l in itm_labels])
    masking, rand, randperm = model.random_masking, torch.rand, torch.randperm

    def random_masking(x, mask_ratio):
        torch.rand = lambda *a, **k: mim_noise.to(x.device).clone()
        try:
            return masking(x, mask_ratio)
        finally:
            torch.rand = rand

    def fixed_randperm(n, *a, **k):
        return perm.clone() if n == B else randperm(n, *a, **k)

    model.random_masking, torch.randperm = random_masking, fixed_randperm
    try:
        yield
    finally:
        del model.random_masking
        torch.randperm = randperm


def work_train(model, inputs, args, result, up):
    """One Lightning training step of upstream's pre-training: `training_step` (set_task ->
    compute_mlm, compute_mim, compute_itm -> loss-weighted sum), backward, AdamW step on
    `set_schedule`'s six groups, zero_grad. lr is each group's base lr, held constant (the
    warm-up schedule is not stepped; it changes no cost)."""
    model.train()
    model.trainer = types.SimpleNamespace(max_steps=model.hparams.config["max_steps"] or 100000)
    (optimizer,), _ = up.utils.set_schedule(model)
    for group in optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])
    B = TRAIN_BATCH
    batch = {
        "image": [inputs["train.image"]], "false_image_0": [inputs["train.itm_image"]],
        "text": ["caption"] * B, "text_ids": inputs["train.text_ids"],
        "text_masks": inputs["train.text_masks"], "text_labels": torch.full_like(inputs["train.text_ids"], -100),
        "text_ids_mlm": inputs["train.text_ids_mlm"], "text_labels_mlm": inputs["train.text_labels_mlm"],
    }
    losses, phases = [], []

    def step():
        t0 = time.perf_counter()
        with injected_randomness(model, inputs["train.mim_noise"], inputs["train.itm_labels"]):
            loss = model.training_step(batch, 0)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        losses.append(float(loss.detach()))

    result["runs"] = timed(step, args.repeats, args.warmup)
    timed_phases = phases[args.warmup:]
    result["phases"] = {name: statistics.median(p[i] for p in timed_phases)
                        for i, name in enumerate(("forward", "backward", "optimizer"))}
    result["batch"] = B
    result["losses"] = losses
    result["optimizer_groups"] = [dict(n=len(g["params"]), lr=g["lr"], weight_decay=g["weight_decay"])
                                  for g in optimizer.param_groups]
    return step


def work_retrieval(model, inputs, args, result):
    """Upstream's `compute_irtr_recall` scoring loop: per image, the image repeated over the
    text batch (all 16 texts: upstream's text loader batches 256) and one full `infer`.
    irtr is off in this config, so the score is the ITM match logit itm_head(cls)[:, 1]
    (upstream scores with irtr_head, which it initialises from that row). No autocast (CPU)."""
    from safetensors.torch import save_file
    model.eval()
    images, ids, masks = inputs["retrieval.images"], inputs["retrieval.text_ids"], inputs["retrieval.text_masks"]
    K = min(args.pairs_images or len(images), len(images))
    text_batch = {"text_ids": ids, "text_masks": masks, "text_labels": torch.full_like(ids, -100)}
    scores = torch.zeros(K, len(ids))

    def score_all():
        with torch.no_grad():
            for i in range(K):
                im = images[i:i + 1].repeat(len(ids), 1, 1, 1)
                scores[i] = model.itm_head(model.infer(text_batch, img=im)["multi_modal_cls_feats"])[:, 1]

    result["runs"] = timed(score_all, args.repeats, args.warmup)
    result.update(images=K, texts=len(ids), pairs=K * len(ids), images_available=len(images))
    save_file({"scores": scores.contiguous()}, os.path.join(args.dir, "retrieval_scores_upstream.safetensors"))
    return score_all


def work_load(model, args, result):
    """torch.load of the Lightning-style DIR/model.ckpt + load_state_dict into the built model."""
    path = os.path.join(args.dir, "model.ckpt")

    def load():
        ckpt = torch.load(path, map_location="cpu")
        check_load(model.load_state_dict(ckpt["state_dict"], strict=False))

    result["runs"] = timed(load, args.repeats, args.warmup)
    result["file_mb"] = os.path.getsize(path) / 2**20
    return load


def work_matmul(args, result, n=4096):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    step = lambda: torch.mm(a, b)  # noqa: E731
    result["runs"] = timed(step, args.repeats, args.warmup)
    result["flops"] = None
    result["matmul_flops"] = 2 * n ** 3
    result["matmul_n"] = n
    return step


def profile(step, path, rows=40):
    """One more (untimed) run of the workload under torch.profiler; writes the per-op table,
    heaviest self CPU time first, to PATH."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows)
    with open(path, "w") as f:
        f.write(table + "\n\nBy input shape:\n" + by_shape + "\n")
    print(f"profile -> {path}", file=sys.stderr)


def run(args):
    torch.set_num_threads(args.threads)
    W = args.workload
    args.repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS[W]
    args.warmup = args.warmup if args.warmup is not None else DEFAULT_WARMUP[W]
    result = dict(workload=W, side="pytorch-upstream", repeats=args.repeats, warmup=args.warmup, flops=None,
                  loadavg_1m_start=os.getloadavg()[0])
    if W == "matmul":
        step = work_matmul(args, result)
    else:
        from safetensors.torch import load_file
        result["rss_mb_at_start"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gen = load_generate()
        up = gen.import_upstream(args.upstream)
        t0 = time.perf_counter()
        model, _ = load_model(gen, up, args)
        result["build_seconds"] = time.perf_counter() - t0
        result["peak_rss_mb_after_build"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        inputs = load_file(os.path.join(args.dir, "inputs.safetensors"))
        result["device"] = args.device
        if args.device != "cpu" or args.bf16:
            if W not in ("infer", "retrieval"):
                raise SystemExit("--device cuda and --bf16 apply to infer and retrieval")
            global DEVICE
            DEVICE = torch.device(args.device)
            kind = torch.bfloat16 if args.bf16 else torch.float32
            model.to(DEVICE, kind)  # PyTorch eager: upstream's modules as they are, in bf16
            for m in model.modules():  # OpenAI's convert_weights keeps CLIP's LayerNorms in fp32
                if type(m).__name__ == "LayerNorm" and type(m).__module__.endswith("clip_model"):
                    m.float()
            inputs = {k: v.to(DEVICE, kind) if v.is_floating_point() else v.to(DEVICE) for k, v in inputs.items()}
            result.update(device=str(DEVICE), dtype=str(kind))
        if W == "infer":
            step = work_infer(model, inputs, args, result)
        elif W == "train":
            step = work_train(model, inputs, args, result, up)
        elif W == "retrieval":
            step = work_retrieval(model, inputs, args, result)
        else:
            step = work_load(model, args, result)
    if args.profile:
        profile(step, args.profile)
    seconds = statistics.median(result["runs"])
    result["seconds"] = seconds
    if W == "matmul":
        result["gflops_per_s"] = result["matmul_flops"] / seconds / 1e9
    elif W == "infer":
        result["gflops_per_s"] = result["flops"] / seconds / 1e9
    else:
        result["gflops_per_s"] = None
    result["loadavg_1m_end"] = os.getloadavg()[0]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["torch_threads"] = torch.get_num_threads()
    result["torch_version"] = torch.__version__
    ordered = {k: result.pop(k) for k in ("workload", "seconds", "runs", "peak_rss_mb", "flops", "gflops_per_s",
                                         "torch_threads", "torch_version")}
    ordered.update(result)
    text = json.dumps(ordered, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


# ---------------------------------------------------------------- report (used by run.sh)
def fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def retrieval_agreement(dir_):
    from safetensors.torch import load_file
    paths = [os.path.join(dir_, f"retrieval_scores_{s}.safetensors") for s in ("upstream", "rust")]
    if not all(os.path.exists(p) for p in paths):
        return None
    py, rs = (load_file(p)["scores"].double() for p in paths)
    rows, cols = min(py.shape[0], rs.shape[0]), min(py.shape[1], rs.shape[1])
    if rows == 0 or cols == 0:
        return None
    a, b = py[:rows, :cols], rs[:rows, :cols]
    diff = (a - b).abs()
    same_rank = bool((a.argsort(dim=1) == b.argsort(dim=1)).all())
    return dict(rows=rows, cols=cols, max_abs_diff=float(diff.max()), score_range=float(a.abs().max()),
                same_ranking=same_rank)


def machine_line():
    return f"{e2e_report.cpu_line()}, torch {torch.__version__}, commit {e2e_report.commit()} (+ working tree)"


def report(args):
    rows, full = [], RETRIEVAL_IMAGES
    res = {side: {w: read_json(os.path.join(args.results, f"{side}_{w}.json")) for w in WORKLOADS}
           for side in ("py", "rust")}
    notes = []
    header = ["workload", "PyTorch s", "Rust s", "ratio (PyTorch/Rust)", "PyTorch peak RSS MB", "Rust peak RSS MB",
              "load avg at start (PyTorch / Rust)"]

    def load_at(side, w):
        try:
            with open(os.path.join(args.results, f"{side}_{w}.loadavg")) as f:
                return f.read().strip() or "?"
        except OSError:
            start = (res[side][w] or {}).get("loadavg_1m_start")
            return "?" if start is None else f"{start:.2f}"
    for w in WORKLOADS:
        py, rs = res["py"][w], res["rust"][w]
        if py is None and rs is None:
            continue
        ps = py and py.get("seconds")
        rss = rs and rs.get("seconds")
        label = w
        if w == "retrieval":
            # Normalise both sides to the full 8x16 score matrix (linear in images scored).
            pk = (py or {}).get("images", full)
            rk = (rs or {}).get("images", full)
            if ps is not None and pk != full:
                ps = ps * full / pk
                notes.append(f"retrieval: PyTorch scored {pk} of {full} images ({pk * 16} pairs, "
                             f"{py['seconds']:.1f} s); its time is extrapolated linearly to {full}x16.")
            if rss is not None and rk != full:
                rss = rss * full / rk
                notes.append(f"retrieval: Rust scored {rk} of {full} images; its time is extrapolated to {full}x16.")
            label = f"retrieval ({full}x16 pairs)"
        ratio = ps / rss if ps and rss else None
        rows.append([label, fmt(ps, ".3f"), fmt(rss, ".3f"), fmt(ratio, ".2f") + ("x" if ratio else ""),
                     fmt(py and py.get("peak_rss_mb"), ".0f"), fmt(rs and rs.get("peak_rss_mb"), ".0f"),
                     f"{load_at('py', w)} / {load_at('rust', w)}"])
    def devices(side):
        return "/".join(sorted({r.get("device", "?") for r in res[side].values() if r})) or "?"
    out = [f"# m3ae bench: Rust port vs upstream PyTorch ({datetime.date.today().isoformat()})", "",
           f"Machine: {machine_line()}. Device: PyTorch {devices('py')}, Rust {devices('rust')}. "
           f"Mode: {'quick' if args.quick else 'full'}. "
           f"Threads: PyTorch {fmt((res['py']['infer'] or res['py']['matmul'] or {}).get('torch_threads'), 'd')}, "
           f"Rust {fmt((res['rust']['infer'] or res['rust']['matmul'] or {}).get('torch_threads'), 'd')}.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "Seconds are the median of the timed runs (after warm-up). The load average is /proc/loadavg's "
            "1-minute value as the process started: above the thread count, other work shared the cores and the "
            "time is inflated.", ""]
    # Compute efficiency of infer against each side's own matmul ceiling.
    for side, name in (("py", "PyTorch"), ("rust", "Rust")):
        inf, mm = res[side]["infer"], res[side]["matmul"]
        if inf is None:
            continue
        rate, flops, borrowed = inf.get("gflops_per_s"), inf.get("flops"), ""
        if not flops and side == "rust" and res["py"]["infer"] and res["py"]["infer"].get("flops"):
            # Same model and inputs: the PyTorch side's count applies to both.
            flops, borrowed = res["py"]["infer"]["flops"], " (FLOPs as counted on the PyTorch side)"
        if rate is None and flops and inf.get("seconds"):
            rate = flops / inf["seconds"] / 1e9
        ceiling = mm and mm.get("gflops_per_s")
        pct = f" = {100 * rate / ceiling:.0f}% of its {ceiling:.0f} GFLOP/s matmul ceiling" if rate and ceiling else ""
        out.append(f"- infer ({name}): {fmt(flops and flops / 1e9, '.1f')} GFLOP per batch of "
                   f"{inf.get('batch', INFER_BATCH)}{borrowed}, {fmt(rate, '.1f')} GFLOP/s{pct}.")
    agree = retrieval_agreement(args.dir)
    if agree:
        out.append(f"- retrieval scores, Rust vs upstream over {agree['rows']}x{agree['cols']} pairs: max |diff| "
                   f"{agree['max_abs_diff']:.3g} (scores up to {agree['score_range']:.3g}); per-image text "
                   f"ranking {'identical' if agree['same_ranking'] else 'DIFFERS'}.")
    rs_ret = res["rust"]["retrieval"]
    if rs_ret and rs_ret.get("max_abs_diff_vs_upstream") is not None:
        out.append(f"- retrieval, as the Rust side reports it: max_abs_diff_vs_upstream "
                   f"{rs_ret['max_abs_diff_vs_upstream']:.3g}.")
    out += [f"- {n}" for n in notes]
    if not any(res["rust"].values()):
        out.append("- Rust: no results (no `m3ae bench` binary, or every Rust run failed).")
    out += e2e_report.run_sh_tables(args.pretrain_results, args.finetune_results, args.pipeline_log)
    e2e_report.write_report(args, out)


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write config, weights, checkpoint and inputs into DIR")
    p.add_argument("--upstream", required=True, help="an upstream M3AE checkout (the folder holding m3ae/)")
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    r = sub.add_parser("run", help="time one workload on upstream's PyTorch modules")
    r.add_argument("--upstream", help="an upstream M3AE checkout (not needed for matmul)")
    r.add_argument("--dir", help="the folder `prepare` wrote (not needed for matmul)")
    r.add_argument("--workload", required=True, choices=WORKLOADS)
    r.add_argument("--repeats", type=int, help=f"timed runs (default {DEFAULT_REPEATS})")
    r.add_argument("--warmup", type=int, help=f"untimed runs first (default {DEFAULT_WARMUP})")
    r.add_argument("--pairs-images", type=int, help="retrieval: score only the first K images (x 16 texts)")
    r.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    r.add_argument("--device", default="cpu", help="cpu (default) or cuda: infer and retrieval only")
    r.add_argument("--bf16", action="store_true", help="weights and inputs in bfloat16 (infer, retrieval)")
    r.add_argument("--out", help="write the JSON result here too")
    r.add_argument("--profile", help="after the timed runs, profile one more run (torch.profiler) into this file")
    s = sub.add_parser("report", help="Markdown table from the JSON results of bench/run.sh")
    s.add_argument("--dir", required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--out")
    s.add_argument("--quick", action="store_true")
    s.add_argument("--pretrain-results", help="a bench/pretrain.sh results folder: its rows (and bf16 columns)")
    s.add_argument("--finetune-results", help="a bench/finetune.sh results folder: its rows (and bf16 columns)")
    s.add_argument("--pipeline-log", help="bench/pipeline.sh's output: its row")
    args = ap.parse_args()
    if args.cmd == "run" and args.workload != "matmul" and not (args.upstream and args.dir):
        ap.error("run: --upstream and --dir are required for this workload")
    if args.cmd != "report":
        torch.set_num_threads(args.threads)
    {"prepare": prepare, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
