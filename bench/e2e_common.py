"""What the end-to-end benchmarks (bench/finetune_upstream.py, bench/pretrain_upstream.py)
share: upstream's model built and loaded, its own DataLoader and optimizer in a plain
PyTorch loop (fp32, or under torch.autocast("cpu", dtype=torch.bfloat16)), the Rust side's
run read back from its metrics.jsonl, and the command line; bench/e2e_report.py the
tables. bench/e2e_lib.sh is the shell half (processes, rounds, peak RSS).

Upstream (github zhjohnchan/M3AE) is imported at run time from the checkout named with
--upstream; no upstream code lives in this project. The shims and model stand-ins are the
parity scripts' (parity/upstream_shims.py, parity/generate.py, parity/generate_train.py),
imported from parity/ as they are.

The PyTorch side (`run`), per step, as Lightning 1.3 runs automatic optimization with
accumulate_grad_batches 1: model.train(); batch = next(iterator of upstream's DataLoader);
loss = model.training_step(batch) (set_task -> the task's compute_* -> metrics -> log);
loss.backward(); optimizer.step() (set_schedule's six groups, transformers-4.6 AdamW);
optimizer.zero_grad(set_to_none=True); scheduler.step(). With --bf16 the training_step runs
under CPU autocast and the backward outside it (PyTorch's AMP recipe). A step's time runs
from the end of the previous step (or the iterator's creation) to the end of its scheduler
step, so it includes the wait for the batch. samples/s = M*B / (sum of the M timed steps'
times), after K warm-up steps.
"""
import contextlib
import importlib.util
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARITY = os.path.join(ROOT, "parity")
TOKENIZER = os.path.join(PARITY, "train-vqa", "tokenizer")  # the toy RoBERTa BPE (vocab 1001)
IMAGE_PX = 512  # stored images: 512x512 JPEG, so decode and resize cost what they cost on real data
DROPOUT = 0.1  # roberta-base's hidden/attention dropout; drop_rate stays upstream's default 0.1
WORDS = ("is there evidence of an the a in on left right lung heart liver kidney mass lesion fracture "
         "fluid effusion abnormal normal what where which organ plane image imaging modality shown this "
         "ct mri x-ray chest abdomen brain enlarged located side bowel contrast used how many lesions are "
         "seen does patient have pneumothorax cardiomegaly").split()


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upstream_bench():
    """bench/upstream_bench.py (the paper-size encoder shapes, load_streaming, profile)."""
    return load_module("m3ae_upstream_bench", os.path.join(HERE, "upstream_bench.py"))


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


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


# ---------------------------------------------------------------- data and model
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


def write_data_manifest(out, manifest):
    write_json(os.path.join(out, "manifest.json"), manifest)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {out}: {manifest['splits']}, {size / 1e6:.1f} MB")


def build_model(gen, up, config, lang, vision):
    """Upstream's M3AETransformerSS, built as parity/generate.py builds it (its CLIP class at
    the configured shape, RobertaModel from a RobertaConfig with eager attention)."""
    import torch
    torch.manual_seed(config["seed"])
    spec = types.SimpleNamespace(config=config, lang=lang, vision=vision)
    with gen.stand_in_encoders(up, spec):
        return up.module.M3AETransformerSS(config)


def save_model(args, gen, up, config, lang, vision, kind, **manifest):
    """A model folder both sides load: model.safetensors (upstream keys; upstream's own init
    under the seed, then parity/generate.perturb_) + config.json (the upstream config with
    language_encoder_config / vision_encoder_config, as parity/generate_train.py writes it)."""
    import torch
    from safetensors.torch import save_file
    t0 = time.perf_counter()
    model = build_model(gen, up, config, lang, vision)
    gen.perturb_(model, torch.Generator().manual_seed(args.seed + 1))
    params = dict(model.named_parameters())
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k in params}
    left_out = sorted(set(model.state_dict()) - set(sd))
    os.makedirs(args.out, exist_ok=True)
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    os.chmod(os.path.join(args.out, "model.safetensors"), 0o644)
    gen.write_json(os.path.join(args.out, "config.json"), dict(config, language_encoder_config=lang,
                                                               vision_encoder_config=vision))
    n = sum(v.numel() for v in sd.values())
    write_json(os.path.join(args.out, "manifest.json"),
               dict(kind=kind, image_size=args.image_size, seed=args.seed, tensors=len(sd), values=n,
                    left_out=left_out, **manifest))
    print(f"wrote {args.out}: {len(sd)} tensors, {n / 1e6:.1f} M values ({time.perf_counter() - t0:.1f} s); "
          f"left out of the file: {left_out}")


# ---------------------------------------------------------------- run (PyTorch side)
def run(args, record_keys=()):
    """Upstream's model, datamodule and optimizer from the model folder and Arrow files, in the
    loop of the module docstring; `record_keys`: config values written into the result."""
    import torch
    torch.set_num_threads(args.threads)
    quiet_warnings()
    result = dict(side="pytorch", loadavg_1m_start=os.getloadavg()[0], torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads())
    t_start = time.perf_counter()
    gen, _ = parity_modules()
    up = gen.import_upstream(args.upstream)
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
    if getattr(args, "drop_rate", None) is not None:
        config["drop_rate"] = args.drop_rate

    model = build_model(gen, up, config, lang, vision)
    upstream_bench().load_streaming(model, os.path.join(args.model, "model.safetensors"))
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
    needed = (steps + (1 if args.profile else 0)) * args.batch
    if len(dm.train_dataset) < needed:
        raise SystemExit(f"{len(dm.train_dataset)} train samples < {needed} (steps x batch, + 1 batch to profile)")
    result["setup_seconds"] = time.perf_counter() - t_start

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    result["precision"] = "bf16 autocast" if args.bf16 else "fp32"
    iterator = iter(loader)  # starts the worker processes

    def step(i):
        model.train()
        batch = next(iterator)
        t_data = time.perf_counter()
        with autocast():
            loss = model.training_step(batch, i)
        t_fwd = time.perf_counter()
        loss.backward()
        t_bwd = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        model.global_step = i + 1
        return float(loss.detach()), t_data, t_fwd, t_bwd

    times, waits, phases, losses = [], [], [], []
    t_prev = time.perf_counter()
    for i in range(steps):
        loss, t_data, t_fwd, t_bwd = step(i)
        t_end = time.perf_counter()
        losses.append(loss)
        times.append(t_end - t_prev)
        waits.append(t_data - t_prev)
        phases.append(dict(forward=t_fwd - t_data, backward=t_bwd - t_fwd, optimizer=t_end - t_bwd))
        print(f"step {i + 1}/{steps}: loss {loss:.4f}, {t_end - t_prev:.3f} s (data wait {t_data - t_prev:.3f})",
              flush=True)
        t_prev = t_end
    if args.profile:  # one more step, untimed, under torch.profiler
        upstream_bench().profile(lambda: step(steps), args.profile)
    del iterator
    timed = times[args.warmup:]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    result.update(
        samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed, warmup_step_seconds=times[:args.warmup],
        data_wait_seconds=waits[args.warmup:],
        phases_median={k: med([p[k] for p in phases[args.warmup:]]) for k in ("forward", "backward", "optimizer")},
        losses=losses, batch=args.batch, warmup=args.warmup, steps=args.steps, workers=args.workers,
        image_size=config["image_size"], max_text_len=config["max_text_len"],
        device="cpu", peak_rss_mb=peak_rss_mb(), loadavg_1m_end=os.getloadavg()[0],
        total_seconds=time.perf_counter() - t_start, **{k: config[k] for k in record_keys})
    shutil.rmtree(link_dir)
    write_json(args.out, result)
    print(f"PyTorch ({result['precision']}): {result['samples_per_second']:.3f} samples/s over {args.steps} steps "
          f"of {args.batch}, peak RSS {result['peak_rss_mb']:.0f} MB (main process)")


# ---------------------------------------------------------------- Rust side: read its run
def read_time_file(path):
    """`/usr/bin/time -f '%M %e'` output: peak RSS in MB and wall seconds (last line)."""
    try:
        lines = [line for line in open(path).read().split("\n") if line.strip()]
        kb, wall = lines[-1].split()[:2]
        return int(kb) / 1024, float(wall)
    except (OSError, ValueError, IndexError):
        return None, None


def rust_result(args, loss_of):
    """The port's run as the PyTorch side's result: step times from metrics.jsonl (at
    log_every_n_steps=1 and accumulate 1 each logged train/samples_per_second is batch / step
    time), losses by `loss_of(line)`, peak RSS from /usr/bin/time. Returns (result, lines)."""
    lines = [json.loads(line) for line in open(args.metrics) if line.strip()]
    per_step = {int(m["step"]): m for m in lines if "train/samples_per_second" in m}
    total = args.warmup + args.steps
    missing = [s for s in range(1, total + 1) if s not in per_step]
    if missing:
        raise SystemExit(f"{args.metrics}: no train/samples_per_second at steps {missing} (log_every_n_steps must be 1)")
    times = [args.batch / per_step[s]["train/samples_per_second"] for s in range(1, total + 1)]
    timed = times[args.warmup:]
    result = dict(side="rust", samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed,
                  warmup_step_seconds=times[:args.warmup], losses=[loss_of(per_step[s]) for s in range(1, total + 1)],
                  batch=args.batch, warmup=args.warmup, steps=args.steps, device="cpu",
                  torch_threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    if args.run_config:
        rc = json.load(open(args.run_config))
        result.update(image_size=rc.get("image_size"), max_text_len=rc.get("max_text_len"),
                      drop_rate=rc.get("drop_rate"), workers=rc.get("num_workers"), precision=rc.get("precision"))
    if args.time_file:
        result["peak_rss_mb"], result["process_wall_seconds"] = read_time_file(args.time_file)
    if args.loadavg:
        result["loadavg_1m_start"] = float(open(args.loadavg).read().split()[0])
    return result, lines


def finish_rust_result(args, result):
    write_json(args.out, result)
    print(f"Rust (precision {result.get('precision', '?')}): {result['samples_per_second']:.3f} samples/s over {args.steps} "
          f"steps of {args.batch}, peak RSS {result.get('peak_rss_mb') or float('nan'):.0f} MB")


# ---------------------------------------------------------------- command line
def add_prepare_args(sub):
    """prepare-data and prepare-model; returns prepare-model's parser (for a size option)."""
    p = sub.add_parser("prepare-data", help="the Arrow files both sides read")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, required=True, help="train samples")
    p.add_argument("--eval", type=int, default=4, help="val and test samples each (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("prepare-model", help="the model folder both sides load")
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    return p


def add_run_args(sub):
    p = sub.add_parser("run", help="the PyTorch side: upstream's loop, timed")
    p.add_argument("--upstream", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--tokenizer", default=TOKENIZER)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="the step under torch.autocast('cpu', dtype=torch.bfloat16)")
    p.add_argument("--profile", help="after the timed steps, one more step under torch.profiler; its table to this file")
    p.add_argument("--out", required=True)
    return p


def add_common_args(sub):
    """rust-result, report and meta, the same for both benchmarks."""
    p = sub.add_parser("rust-result", help="the port's metrics.jsonl as a result file")
    p.add_argument("--metrics", required=True)
    p.add_argument("--run-config")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--time-file")
    p.add_argument("--loadavg")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report", help="the Markdown table of a results folder")
    p.add_argument("--results", required=True)
    p.add_argument("--out")
    p.add_argument("--command")
    p = sub.add_parser("meta", help="meta.json of a results folder")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="paper")
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--same-allocator", action="store_true")
    p.add_argument("--bf16", action="store_true")


def main(doc, commands, record_keys=(), prepare_model_args=None, run_args=None):
    """The command line of a benchmark's Python side: prepare-data, prepare-model, run (this
    module's loop, recording `record_keys` of the config), rust-result, report, meta."""
    import argparse
    import e2e_report
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = add_prepare_args(sub)
    if prepare_model_args:
        prepare_model_args(p)
    p = add_run_args(sub)
    if run_args:
        run_args(p)
    add_common_args(sub)
    args = ap.parse_args()
    commands = dict(commands, meta=e2e_report.write_meta, run=lambda a: run(a, record_keys))
    commands[args.cmd](args)
