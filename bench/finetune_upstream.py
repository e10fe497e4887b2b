"""The `finetune` benchmark: VQA fine-tuning steps fed from Arrow files, upstream M3AE's own
PyTorch code in a plain loop against the port's `m3ae finetune` (bench/finetune.sh drives both).

Upstream (github zhjohnchan/M3AE) is imported at run time from the checkout named with
--upstream; no upstream code lives in this project. The shims and model stand-ins are the
parity scripts' (parity/upstream_shims.py, parity/generate.py, parity/generate_train.py),
imported from parity/ as they are.

Usage (see bench/README.md, "finetune"):
    python bench/finetune_upstream.py prepare-data --upstream PATH --out DIR --train N [--seed 0]
    python bench/finetune_upstream.py prepare-model --upstream PATH --out DIR --size tiny|base
        --image-size PX [--seed 0]
    python bench/finetune_upstream.py run --upstream PATH --model DIR --data DIR --batch B
        --warmup K --steps M --threads T --workers W --out FILE.json
    python bench/finetune_upstream.py rust-result --metrics RUN/metrics.jsonl --batch B --warmup K
        --steps M [--time-file F] [--tree-file F] [--log F] --out FILE.json
    python bench/finetune_upstream.py report --results DIR [--out FILE.md] [--command "..."]

The PyTorch side (`run`), per step, as Lightning 1.3 runs automatic optimization with
accumulate_grad_batches 1: model.train(); batch = next(iterator of upstream's DataLoader:
MTDataModule -> VQAVQARADDataset, its collate with the whole-word-mask collator, clip
transform, RobertaTokenizerFast); loss = model.training_step(batch) (set_task -> compute_vqa ->
VQARADScore / Scalar metrics -> log); loss.backward(); optimizer.step() (set_schedule's six
groups, transformers-4.6 AdamW); optimizer.zero_grad(set_to_none=True); scheduler.step().
A step's time runs from the end of the previous step (or the iterator's creation) to the end
of its scheduler step, so it includes the wait for the batch. samples/s = M*B / (sum of the
M timed steps' times), after K warm-up steps.
"""
import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARITY = os.path.join(ROOT, "parity")
TOKENIZER = os.path.join(PARITY, "train-vqa", "tokenizer")  # the toy RoBERTa BPE (vocab 1001)
TASK_PRESET = "task_finetune_vqa_vqa_rad"
NAMED_CONFIGS = (TASK_PRESET, "clip16", "text_roberta")
IMAGE_PX = 512  # stored images: 512x512 JPEG, so decode and resize cost what they cost on real data
QUESTIONS_PER_IMAGE = 2
VQA_LABEL_SIZE = 498  # the preset's (VQA-RAD's answer vocabulary)
DROPOUT = 0.1  # roberta-base's hidden/attention dropout; drop_rate stays upstream's default 0.1

# Model sizes. tiny: parity/train-vqa's architecture (read from its config.json); base: the
# paper's (bench/upstream_bench.py's LANGUAGE_ENCODER / VISION_ENCODER shapes, with the toy
# tokenizer's vocabulary instead of roberta-base's 50265).
ARCH_KEYS = ("hidden_size", "num_heads", "num_top_layer", "input_text_embed_size", "input_image_embed_size",
             "mlp_ratio", "max_text_len")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_modules():
    """parity/generate.py and parity/generate_train.py (shims, config reader, stand-ins)."""
    sys.path.insert(0, PARITY)
    import generate  # noqa: E402
    import generate_train  # noqa: E402
    return generate, generate_train


def quiet_warnings():
    for message in ("DataCollatorForWholeWordMask", "promote has been superseded", "torch.cuda.amp.autocast",
                    "User provided device_type of 'cuda'", "CUDA is not available", "'pin_memory' argument",
                    "The `device` argument is deprecated"):
        warnings.filterwarnings("ignore", message=f".*{message}")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- data
WORDS = ("is there evidence of an the a in on left right lung heart liver kidney mass lesion fracture "
         "fluid effusion abnormal normal what where which organ plane image imaging modality shown this "
         "ct mri x-ray chest abdomen brain enlarged located side bowel contrast used how many lesions are "
         "seen does patient have pneumothorax cardiomegaly").split()


def synthetic_image(rng):
    """A 512x512 RGB JPEG that decodes like a scan: smooth low-frequency structure, one bright
    blob, film grain (so the JPEG is not trivially compressible)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter
    low = Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8), "L").resize((IMAGE_PX, IMAGE_PX),
                                                                                    Image.BICUBIC)
    base = np.asarray(low, dtype=np.float32) * 0.6 + 40
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8), "L")
    draw = ImageDraw.Draw(image)
    cx, cy, r = (int(v) for v in rng.integers([120, 120, 30], [392, 392, 90]))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.integers(180, 250)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    arr = np.asarray(image, dtype=np.float32) + rng.normal(0, 8, (IMAGE_PX, IMAGE_PX))
    tint = rng.uniform(0.9, 1.1, 3)
    rgb = (arr[..., None] * tint).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def prepare_data(args):
    """vqa_vqa_rad_{train,val,test}.arrow in upstream's schema (prepro's make_arrow_vqa layout,
    written as parity/generate_train.write_arrow writes it): QUESTIONS_PER_IMAGE questions per
    image, answer labels drawn in [0, VQA_LABEL_SIZE), answer text `ans<label>`, score 1.0;
    val = test = one batch's worth (the port validates once at the end of its run)."""
    import numpy as np
    _, gt = parity_modules()
    rng = np.random.default_rng([args.seed, 7])
    os.makedirs(args.out, exist_ok=True)
    qid = 0
    counts = {}
    for split, n_questions in (("train", args.train), ("val", args.eval), ("test", args.eval)):
        records = []
        n_images = -(-n_questions // QUESTIONS_PER_IMAGE)
        for i in range(n_images):
            k = min(QUESTIONS_PER_IMAGE, n_questions - i * QUESTIONS_PER_IMAGE)
            questions, labels, types_ = [], [], []
            for _ in range(k):
                n_words = int(rng.integers(6, 16))
                questions.append(" ".join(WORDS[int(j)] for j in rng.integers(0, len(WORDS), n_words)) + "?")
                labels.append(int(rng.integers(0, VQA_LABEL_SIZE)))
                types_.append(int(rng.integers(0, 2)))
            records.append([synthetic_image(rng), questions, [[f"ans{l}"] for l in labels], [[l] for l in labels],
                            [[1.0] for _ in labels], f"synthetic/{split}_{i:05d}.jpg",
                            list(range(qid, qid + k)), types_, split])
            qid += k
        gt.write_arrow(records, ["image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                                 "question_id", "answer_type", "split"],
                       os.path.join(args.out, f"vqa_vqa_rad_{split}.arrow"))
        counts[split] = dict(images=n_images, questions=n_questions)
    write_json(os.path.join(args.out, "manifest.json"),
               dict(kind="finetune-bench-data", seed=args.seed, image_px=IMAGE_PX, format="JPEG q90",
                    vqa_label_size=VQA_LABEL_SIZE, splits=counts))
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {counts}, {size / 1e6:.1f} MB")


# ---------------------------------------------------------------- model
def size_spec(size):
    """(language_encoder_config, vision_encoder_config, upstream config keys) of a size."""
    tv = json.load(open(os.path.join(TOKENIZER, "..", "config.json")))
    vocab = json.load(open(os.path.join(TOKENIZER, "config.json")))["vocab_size"]
    if size == "tiny":
        lang = dict(tv["language_encoder_config"])
        vision = dict(tv["vision_encoder_config"])
        keys = {k: tv[k] for k in ARCH_KEYS}
    elif size == "base":
        ub = load_module("m3ae_upstream_bench", os.path.join(HERE, "upstream_bench.py"))
        lang, vision = dict(ub.LANGUAGE_ENCODER), dict(ub.VISION_ENCODER)
        keys = dict(hidden_size=768, num_heads=12, num_top_layer=6, input_text_embed_size=768,
                    input_image_embed_size=768, mlp_ratio=4, max_text_len=32)  # max_text_len: the preset's
    else:
        raise SystemExit(f"unknown size {size}")
    lang.update(vocab_size=vocab, hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT)
    keys["vocab_size"] = vocab
    return lang, vision, keys


def bench_config(gen, gt, up, size, image_size, seed):
    """Upstream's defaults <- task_finetune_vqa_vqa_rad <- clip16 <- text_roberta (as
    upstream's run_scripts/finetune_m3ae.sh stacks them) <- the size's shapes and the
    benchmark's keys. Batch, steps, workers, paths are set per run."""
    lang, vision, keys = size_spec(size)
    config = gen.upstream_defaults(up.config)
    for name in NAMED_CONFIGS:
        config.update(gt.named_config(up, name))
    config.update(keys)
    config.update(image_size=image_size, seed=seed, vqa_label_size=VQA_LABEL_SIZE, tokenizer="roberta-base",
                  data_root="data", load_path="", test_only=False, num_gpus=1, num_nodes=1, precision=32,
                  exp_name="bench_finetune", per_gpu_batchsize=4, batch_size=4, num_workers=2, max_steps=10)
    return config, lang, vision


def build_model(gen, up, config, lang, vision):
    """Upstream's M3AETransformerSS, built as parity/generate.py builds it (its CLIP class at
    the configured shape, RobertaModel from a RobertaConfig with eager attention)."""
    import torch
    torch.manual_seed(config["seed"])
    spec = types.SimpleNamespace(config=config, lang=lang, vision=vision)
    with gen.stand_in_encoders(up, spec):
        return up.module.M3AETransformerSS(config)


def prepare_model(args):
    """A model folder both sides load: model.safetensors (upstream keys; upstream's own init
    under the seed, then parity/generate.perturb_) + config.json (the upstream config with
    language_encoder_config / vision_encoder_config, as parity/generate_train.py writes it)."""
    import torch
    from safetensors.torch import save_file
    quiet_warnings()
    gen, gt = parity_modules()
    up = gen.import_upstream(args.upstream)
    config, lang, vision = bench_config(gen, gt, up, args.size, args.image_size, args.seed)
    t0 = time.perf_counter()
    model = build_model(gen, up, config, lang, vision)
    gen.perturb_(model, torch.Generator().manual_seed(args.seed + 1))
    params = dict(model.named_parameters())
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k in params}
    left_out = sorted(set(model.state_dict()) - set(sd))
    os.makedirs(args.out, exist_ok=True)
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    os.chmod(os.path.join(args.out, "model.safetensors"), 0o644)
    full = dict(config, language_encoder_config=lang, vision_encoder_config=vision)
    gen.write_json(os.path.join(args.out, "config.json"), full)
    n = sum(v.numel() for v in sd.values())
    write_json(os.path.join(args.out, "manifest.json"),
               dict(kind="finetune-bench-model", size=args.size, image_size=args.image_size, seed=args.seed,
                    tensors=len(sd), values=n, left_out=left_out))
    print(f"wrote {args.out}: {len(sd)} tensors, {n / 1e6:.1f} M values ({time.perf_counter() - t0:.1f} s); "
          f"left out of the file: {left_out}")


# ---------------------------------------------------------------- run (PyTorch side)
def run(args):
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    result = dict(side="pytorch", loadavg_1m_start=os.getloadavg()[0], torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads())
    t_start = time.perf_counter()
    gen, gt = parity_modules()
    up = gen.import_upstream(args.upstream)
    ub = load_module("m3ae_upstream_bench", os.path.join(HERE, "upstream_bench.py"))
    from m3ae.datamodules.multitask_datamodule import MTDataModule

    config = json.load(open(os.path.join(args.model, "config.json")))
    lang, vision = config.pop("language_encoder_config"), config.pop("vision_encoder_config")
    # upstream takes its RoBERTa branch when the tokenizer path contains "roberta": the toy
    # tokenizer folder is reached through a link of that name
    link_dir = tempfile.mkdtemp()
    os.symlink(os.path.abspath(args.tokenizer), os.path.join(link_dir, "roberta"))
    steps = args.warmup + args.steps
    config.update(data_root=os.path.abspath(args.data), tokenizer=os.path.join(link_dir, "roberta"),
                  per_gpu_batchsize=args.batch, batch_size=args.batch, max_steps=steps,
                  num_workers=args.workers, load_path="", test_only=False)
    if args.drop_rate is not None:
        config["drop_rate"] = args.drop_rate

    model = build_model(gen, up, config, lang, vision)
    ub.load_streaming(model, os.path.join(args.model, "model.safetensors"))  # every key, vqa_head included
    result["peak_rss_mb_after_build"] = peak_rss_mb()

    dm = MTDataModule(config, dist=False)
    dm.setup("fit")
    model.log = lambda *a, **k: None
    model.global_step = 0
    model.trainer = types.SimpleNamespace(max_steps=steps, max_epochs=config["max_epoch"],
                                          accumulate_grad_batches=1, datamodule=dm)
    (optimizer,), (sched,) = model.configure_optimizers()
    scheduler = sched["scheduler"]
    loader = dm.train_dataloader()
    if len(dm.train_dataset) < steps * args.batch:
        raise SystemExit(f"{len(dm.train_dataset)} train samples < {steps} steps x batch {args.batch}")
    result["setup_seconds"] = time.perf_counter() - t_start

    # --bf16: upstream's forward under CPU autocast, backward outside it (PyTorch's AMP recipe)
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext)
    result["precision"] = "bf16 autocast" if args.bf16 else "fp32"
    times, waits, phases, losses = [], [], [], []
    iterator = iter(loader)  # starts the worker processes
    t_prev = time.perf_counter()
    for step in range(steps):
        model.train()
        batch = next(iterator)
        t_data = time.perf_counter()
        with autocast():
            loss = model.training_step(batch, step)
        t_fwd = time.perf_counter()
        loss.backward()
        t_bwd = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        model.global_step = step + 1
        t_end = time.perf_counter()
        losses.append(float(loss.detach()))
        times.append(t_end - t_prev)
        waits.append(t_data - t_prev)
        phases.append(dict(forward=t_fwd - t_data, backward=t_bwd - t_fwd, optimizer=t_end - t_bwd))
        print(f"step {step + 1}/{steps}: loss {losses[-1]:.4f}, {t_end - t_prev:.3f} s "
              f"(data wait {t_data - t_prev:.3f})", flush=True)
        t_prev = t_end
    del iterator
    timed = times[args.warmup:]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    result.update(
        samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed, warmup_step_seconds=times[:args.warmup],
        data_wait_seconds=waits[args.warmup:],
        phases_median={k: med([p[k] for p in phases[args.warmup:]]) for k in ("forward", "backward", "optimizer")},
        losses=losses, batch=args.batch, warmup=args.warmup, steps=args.steps, workers=args.workers,
        image_size=config["image_size"], max_text_len=config["max_text_len"], drop_rate=config["drop_rate"],
        device="cpu", peak_rss_mb=peak_rss_mb(), loadavg_1m_end=os.getloadavg()[0],
        total_seconds=time.perf_counter() - t_start)
    shutil.rmtree(link_dir)
    write_json(args.out, result)
    print(f"PyTorch: {result['samples_per_second']:.3f} samples/s over {args.steps} steps of {args.batch}, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB (main process)")


# ---------------------------------------------------------------- Rust side: read its run
def read_time_file(path):
    """`/usr/bin/time -f '%M %e'` output: peak RSS in KB and wall seconds (last line)."""
    try:
        lines = [l for l in open(path).read().split("\n") if l.strip()]
        kb, wall = lines[-1].split()[:2]
        return int(kb) / 1024, float(wall)
    except (OSError, ValueError, IndexError):
        return None, None


def rust_result(args):
    lines = [json.loads(l) for l in open(args.metrics) if l.strip()]
    per_step = {}
    for m in lines:
        if "train/samples_per_second" in m:
            per_step[int(m["step"])] = m
    total = args.warmup + args.steps
    missing = [s for s in range(1, total + 1) if s not in per_step]
    if missing:
        raise SystemExit(f"{args.metrics}: no train/samples_per_second at steps {missing} "
                         "(log_every_n_steps must be 1)")
    # each logged rate is (samples since the previous log line) / (seconds since it): at
    # log_every_n_steps=1 and accumulate 1, batch / step time
    times = [args.batch / per_step[s]["train/samples_per_second"] for s in range(1, total + 1)]
    timed = times[args.warmup:]
    result = dict(side="rust", samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed,
                  warmup_step_seconds=times[:args.warmup],
                  losses=[per_step[s].get("vqa/train/loss") for s in range(1, total + 1)],
                  batch=args.batch, warmup=args.warmup, steps=args.steps, device="cpu",
                  validation=[m for m in lines if any(k.startswith("val/") or "/val/" in k for k in m)][-1:])
    if args.run_config:
        rc = json.load(open(args.run_config))
        result.update(image_size=rc.get("image_size"), max_text_len=rc.get("max_text_len"),
                      drop_rate=rc.get("drop_rate"), workers=rc.get("num_workers"))
    if args.time_file:
        result["peak_rss_mb"], result["process_wall_seconds"] = read_time_file(args.time_file)
    if args.loadavg:
        result["loadavg_1m_start"] = float(open(args.loadavg).read().split()[0])
    result["torch_threads"] = int(os.environ.get("OMP_NUM_THREADS", "0")) or None
    write_json(args.out, result)
    print(f"Rust: {result['samples_per_second']:.3f} samples/s over {args.steps} steps of {args.batch}, "
          f"peak RSS {result.get('peak_rss_mb') or float('nan'):.0f} MB")


# ---------------------------------------------------------------- report
def machine_line(meta=None):
    cpu = platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    meta = meta or {}
    commit = meta.get("commit") or subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                                  capture_output=True, text=True).stdout.strip() or "?"
    binary = f", m3ae binary sha256 {meta['binary_sha256']}…" if meta.get("binary_sha256") else ""
    return f"{cpu}, {os.cpu_count()} CPUs, commit {commit} at the run's start (+ working tree){binary}"


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def report(args):
    """One row per round (files py_<r>.json / rust_<r>.json in --results, with optional
    *_tree.json from bench/tree_rss.py and *_time.txt from /usr/bin/time)."""
    rounds = sorted({f.split("_")[1].split(".")[0] for f in os.listdir(args.results)
                     if f.startswith(("py_", "rust_")) and f.endswith(".json") and "_tree" not in f})

    def load(name):
        try:
            return json.load(open(os.path.join(args.results, name)))
        except (OSError, ValueError):
            return None
    header = ["workload", "PyTorch samples/s", "Rust samples/s", "ratio (Rust/PyTorch)", "PyTorch peak RSS MB",
              "Rust peak RSS MB", "PyTorch / Rust footprint MB", "device", "threads", "workers", "model",
              "batch", "image", "steps (warm-up+timed)", "load avg at start (PyTorch / Rust)"]
    rows, ratios = [], []
    meta = load("meta.json") or {}
    for r in rounds:
        py, rs = load(f"py_{r}.json"), load(f"rust_{r}.json")
        pt, rt = load(f"py_{r}_tree.json") or {}, load(f"rust_{r}_tree.json") or {}
        p_rss = None
        if py is not None:
            p_rss, _ = read_time_file(os.path.join(args.results, f"py_{r}_time.txt"))
            p_rss = p_rss or py.get("peak_rss_mb")
        ps, rsps = py and py["samples_per_second"], rs and rs["samples_per_second"]
        ratio = rsps / ps if ps and rsps else None
        if ratio:
            ratios.append(ratio)
        any_side = py or rs or {}
        rows.append([f"finetune ({meta.get('size', '?')}, round {r})", fmt(ps, ".3f"), fmt(rsps, ".3f"),
                     fmt(ratio, ".2f") + ("x" if ratio else ""), fmt(p_rss, ".0f"),
                     fmt(rs and rs.get("peak_rss_mb"), ".0f"),
                     f"{fmt(pt.get('peak_footprint_mb'), '.0f')} / {fmt(rt.get('peak_footprint_mb'), '.0f')}",
                     "cpu", str(meta.get("threads", any_side.get("torch_threads", "?"))),
                     str(meta.get("workers", any_side.get("workers", "?"))), meta.get("size", "?"),
                     str(any_side.get("batch", "?")), f"{meta.get('image_size', any_side.get('image_size', '?'))} px",
                     f"{any_side.get('warmup', '?')}+{any_side.get('steps', '?')}",
                     f"{fmt(py and py.get('loadavg_1m_start'))} / {fmt(rs and rs.get('loadavg_1m_start'))}"])
    out = [f"### {datetime.date.today().isoformat()} finetune benchmark ({meta.get('size', '?')})", ""]
    if args.command:
        out += [f"Command: `{args.command}`", ""]
    alloc = (" The PyTorch side ran with the port's glibc settings (--same-allocator)."
             if meta.get("same_allocator") else "")
    out += [f"Machine: {machine_line(meta)}; uptime at start: {meta.get('uptime', '?')}.{alloc}", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    if len(ratios) > 1:
        out += ["", f"Median ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f}x "
                f"(all: {', '.join(f'{x:.2f}' for x in ratios)})."]
    out += ["", "samples/s: timed steps x batch / their summed step times (each from the end of the previous "
            "step, so the wait for the batch counts). Peak RSS: /usr/bin/time %M of the process (for PyTorch, "
            "the largest of the main process and its DataLoader workers, not their sum). Footprint: the largest "
            "value of the process's RSS plus its child processes' private memory (USS; PyTorch's DataLoader "
            "workers, which share the model with the parent copy-on-write), sampled by bench/tree_rss.py "
            "(RSS every 0.2 s, workers every 10 s)."]
    bf16_rounds = [r for r in rounds if load(f"pybf16_{r}.json")]
    if bf16_rounds:
        # --bf16: the port ran precision "bf16"; PyTorch once as upstream runs (fp32), once under autocast
        out += ["", "bf16 (the port: precision \"bf16\", CPU autocast; PyTorch: torch.autocast(\"cpu\", "
                "dtype=torch.bfloat16) around upstream's forward), samples/s:", "",
                "| round | port bf16 | PyTorch bf16 | upstream fp32 | port bf16 / PyTorch bf16 | port bf16 / upstream fp32 "
                "| PyTorch bf16 / upstream fp32 |", "|---|---|---|---|---|---|---|"]
        for r in bf16_rounds:
            py, pb, rs = load(f"py_{r}.json"), load(f"pybf16_{r}.json"), load(f"rust_{r}.json")
            p32, p16, r16 = (x and x["samples_per_second"] for x in (py, pb, rs))
            q = lambda a, b: fmt(a / b, ".2f") + "x" if a and b else "-"  # noqa: E731
            out.append(f"| {r} | {fmt(r16, '.3f')} | {fmt(p16, '.3f')} | {fmt(p32, '.3f')} | {q(r16, p16)} | "
                       f"{q(r16, p32)} | {q(p16, p32)} |")
            if pb:
                ph = pb.get("phases_median", {})
                out.append(f"|  | | forward {fmt(ph.get('forward'), '.3f')} s, backward {fmt(ph.get('backward'), '.3f')} s; "
                           f"losses {', '.join(f'{x:.3f}' for x in pb['losses'])} | | | | |")
    medians = []
    for r in rounds:
        py, rs = load(f"py_{r}.json"), load(f"rust_{r}.json")
        if py and rs:
            mp, mr = statistics.median(py["step_seconds"]), statistics.median(rs["step_seconds"])
            medians.append(mp / mr)
            out.append(f"- round {r}: median timed step PyTorch {mp:.3f} s, Rust {mr:.3f} s: {mp / mr:.2f}x "
                       "(less sensitive than the mean to one slow step)")
    if len(medians) > 1:
        out.append(f"- median over rounds of the median-step ratio: {statistics.median(medians):.2f}x")
    for r in rounds:
        py, rs = load(f"py_{r}.json"), load(f"rust_{r}.json")
        if py:
            ph = py.get("phases_median", {})
            out.append(f"- round {r} PyTorch: step medians forward {fmt(ph.get('forward'), '.3f')} s, backward "
                       f"{fmt(ph.get('backward'), '.3f')} s, optimizer {fmt(ph.get('optimizer'), '.3f')} s; data wait "
                       f"{fmt(sum(py['data_wait_seconds']), '.3f')} s in all; losses "
                       f"{', '.join(f'{x:.3f}' for x in py['losses'])}.")
        if rs:
            out.append(f"- round {r} Rust: step seconds {', '.join(f'{x:.3f}' for x in rs['step_seconds'])}; "
                       f"process wall {fmt(rs.get('process_wall_seconds'), '.1f')} s (with start-up, the end-of-run "
                       f"validation and checkpoint); losses {', '.join(f'{x:.3f}' for x in rs['losses'] if x is not None)}.")
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare-data")
    p.add_argument("--upstream", help="unused (kept for symmetry)")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, required=True, help="train questions")
    p.add_argument("--eval", type=int, default=4, help="val and test questions each (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("prepare-model")
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", required=True, choices=("tiny", "base"))
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run")
    p.add_argument("--upstream", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--tokenizer", default=TOKENIZER)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--drop-rate", type=float)
    p.add_argument("--bf16", action="store_true", help="the step under torch.autocast('cpu', dtype=torch.bfloat16)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("rust-result")
    p.add_argument("--metrics", required=True)
    p.add_argument("--run-config")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--time-file")
    p.add_argument("--loadavg")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--out")
    p.add_argument("--command")
    args = ap.parse_args()
    {"prepare-data": prepare_data, "prepare-model": prepare_model, "run": run, "rust-result": rust_result,
     "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
