"""The `pretrain` benchmark: MLM + MIM + ITM pre-training steps fed from Arrow files, upstream
M3AE's own PyTorch code in a plain loop against the port's `m3ae pretrain` (bench/pretrain.sh
drives both).

Upstream (github zhjohnchan/M3AE) is imported at run time from the checkout named with
--upstream; no upstream code lives in this project. Shims, stand-in encoders and helpers are
those of bench/finetune_upstream.py and the parity scripts, imported as they are.

Usage (see bench/README.md, "pretrain"):
    python bench/pretrain_upstream.py prepare-data --out DIR --train N [--eval 4] [--seed 0]
    python bench/pretrain_upstream.py prepare-model --upstream PATH --out DIR [--image-size 288] [--seed 0]
    python bench/pretrain_upstream.py run --upstream PATH --model DIR --data DIR --batch B
        --warmup K --steps M --threads T --workers W --out FILE.json
    python bench/pretrain_upstream.py rust-result --metrics RUN/metrics.jsonl --batch B --warmup K
        --steps M [--time-file F] [--loadavg F] --out FILE.json
    python bench/pretrain_upstream.py report --results DIR [--out FILE.md] [--command "..."]

The PyTorch side (`run`), per step, as Lightning 1.3 runs automatic optimization with
accumulate_grad_batches 1: model.train(); batch = next(iterator of upstream's DataLoader:
MTDataModule -> ROCODataset, its collate with the MLM collator (whole_word_masking of
task_pretrain_m3ae: DataCollatorForWholeWordMask), one false image per sample, clip transform,
RobertaTokenizerFast); loss = model.training_step(batch) (set_task -> compute_mlm, compute_mim,
compute_itm -> metrics -> log); loss.backward(); optimizer.step() (set_schedule's six groups,
transformers-4.6 AdamW); optimizer.zero_grad(set_to_none=True); scheduler.step(). A step's
time runs from the end of the previous step to the end of its scheduler step, so it includes
the wait for the batch. samples/s = M*B / (sum of the M timed steps' times), after K warm-up steps.

Model: the paper's pre-training shapes: upstream's defaults <- task_pretrain_m3ae <- clip16 <-
text_roberta, image_size 288, max_text_len 64 (run_scripts/pretrain_m3ae.sh): CLIP ViT-B/16,
a roberta-base-shaped text encoder (vocabulary 50,265, so the MLM head is 768 x 50,265), 6
fusion layers of 768, mim_layer 3, MIM decoder 4 x 384. precision 32 (the preset's 16 is a GPU
setting). The tokenizer is the toy RoBERTa BPE of parity/train-vqa (ids below 1,001): the
model's shapes are roberta-base's, the ids it sees are not.
"""
import argparse
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAMED_CONFIGS = ("task_pretrain_m3ae", "clip16", "text_roberta")


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fu = load_module("m3ae_finetune_upstream", os.path.join(HERE, "finetune_upstream.py"))


# ---------------------------------------------------------------- data
def prepare_data(args):
    """roco_{train,val,test}.arrow in upstream's schema (image, caption list, image_id, split;
    written as parity/generate_train.write_arrow writes it): one caption of 12-60 words per
    512 px JPEG (fu.synthetic_image), so most captions fill max_text_len 64 tokens."""
    import numpy as np
    _, gt = fu.parity_modules()
    rng = np.random.default_rng([args.seed, 11])
    os.makedirs(args.out, exist_ok=True)
    counts = {}
    for split, n in (("train", args.train), ("val", args.eval), ("test", args.eval)):
        records = []
        for i in range(n):
            words = " ".join(fu.WORDS[int(j)] for j in rng.integers(0, len(fu.WORDS), int(rng.integers(12, 60))))
            records.append([fu.synthetic_image(rng), [words + "."], f"synthetic/{split}_{i:05d}.jpg", split])
        gt.write_arrow(records, ["image", "caption", "image_id", "split"], os.path.join(args.out, f"roco_{split}.arrow"))
        counts[split] = n
    fu.write_json(os.path.join(args.out, "manifest.json"),
                  dict(kind="pretrain-bench-data", seed=args.seed, image_px=fu.IMAGE_PX, format="JPEG q90", splits=counts))
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {counts}, {size / 1e6:.1f} MB")


# ---------------------------------------------------------------- model
def bench_config(gen, gt, up, image_size, seed):
    ub = fu.load_module("m3ae_upstream_bench", os.path.join(HERE, "upstream_bench.py"))
    config = gen.upstream_defaults(up.config)
    for name in NAMED_CONFIGS:
        config.update(gt.named_config(up, name))
    config.update(image_size=image_size, max_text_len=64, seed=seed, datasets=["roco"], tokenizer="roberta-base",
                  data_root="data", load_path="", test_only=False, num_gpus=1, num_nodes=1, precision=32,
                  exp_name="bench_pretrain", per_gpu_batchsize=4, batch_size=4, num_workers=2, max_steps=10)
    lang = dict(ub.LANGUAGE_ENCODER, hidden_dropout_prob=fu.DROPOUT, attention_probs_dropout_prob=fu.DROPOUT)
    return config, lang, dict(ub.VISION_ENCODER)


def prepare_model(args):
    """model.safetensors (upstream keys; upstream's own init under the seed, then
    parity/generate.perturb_) + config.json (with language_encoder_config and
    vision_encoder_config), the folder both sides load."""
    import torch
    from safetensors.torch import save_file
    fu.quiet_warnings()
    gen, gt = fu.parity_modules()
    up = gen.import_upstream(args.upstream)
    config, lang, vision = bench_config(gen, gt, up, args.image_size, args.seed)
    t0 = time.perf_counter()
    model = fu.build_model(gen, up, config, lang, vision)
    gen.perturb_(model, torch.Generator().manual_seed(args.seed + 1))
    params = dict(model.named_parameters())
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k in params}
    os.makedirs(args.out, exist_ok=True)
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    gen.write_json(os.path.join(args.out, "config.json"), dict(config, language_encoder_config=lang, vision_encoder_config=vision))
    n = sum(v.numel() for v in sd.values())
    fu.write_json(os.path.join(args.out, "manifest.json"),
                  dict(kind="pretrain-bench-model", image_size=args.image_size, seed=args.seed, tensors=len(sd), values=n))
    print(f"wrote {args.out}: {len(sd)} tensors, {n / 1e6:.1f} M values ({time.perf_counter() - t0:.1f} s)")


# ---------------------------------------------------------------- run (PyTorch side)
def run(args):
    import torch
    torch.set_num_threads(args.threads)
    fu.quiet_warnings()
    result = dict(side="pytorch", loadavg_1m_start=os.getloadavg()[0], torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads())
    t_start = time.perf_counter()
    gen, _ = fu.parity_modules()
    up = gen.import_upstream(args.upstream)
    ub = fu.load_module("m3ae_upstream_bench", os.path.join(HERE, "upstream_bench.py"))
    from m3ae.datamodules.multitask_datamodule import MTDataModule

    config = json.load(open(os.path.join(args.model, "config.json")))
    lang, vision = config.pop("language_encoder_config"), config.pop("vision_encoder_config")
    # upstream takes its RoBERTa branch when the tokenizer path contains "roberta"
    link_dir = tempfile.mkdtemp()
    os.symlink(os.path.abspath(args.tokenizer), os.path.join(link_dir, "roberta"))
    steps = args.warmup + args.steps
    config.update(data_root=os.path.abspath(args.data), tokenizer=os.path.join(link_dir, "roberta"),
                  per_gpu_batchsize=args.batch, batch_size=args.batch, max_steps=steps,
                  num_workers=args.workers, load_path="", test_only=False)

    model = fu.build_model(gen, up, config, lang, vision)
    ub.load_streaming(model, os.path.join(args.model, "model.safetensors"))
    result["peak_rss_mb_after_build"] = fu.peak_rss_mb()

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

    times, waits, phases, losses = [], [], [], []
    iterator = iter(loader)
    t_prev = time.perf_counter()
    for step in range(steps):
        model.train()
        batch = next(iterator)
        t_data = time.perf_counter()
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
        print(f"step {step + 1}/{steps}: loss {losses[-1]:.4f}, {t_end - t_prev:.3f} s (data wait {t_data - t_prev:.3f})",
              flush=True)
        t_prev = t_end
    del iterator
    timed = times[args.warmup:]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    result.update(
        samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed, warmup_step_seconds=times[:args.warmup],
        data_wait_seconds=waits[args.warmup:],
        phases_median={k: med([p[k] for p in phases[args.warmup:]]) for k in ("forward", "backward", "optimizer")},
        losses=losses, batch=args.batch, warmup=args.warmup, steps=args.steps, workers=args.workers,
        image_size=config["image_size"], max_text_len=config["max_text_len"], mim_layer=config["mim_layer"],
        device="cpu", peak_rss_mb=fu.peak_rss_mb(), loadavg_1m_end=os.getloadavg()[0],
        total_seconds=time.perf_counter() - t_start)
    shutil.rmtree(link_dir)
    fu.write_json(args.out, result)
    print(f"PyTorch: {result['samples_per_second']:.3f} samples/s over {args.steps} steps of {args.batch}, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB (main process)")


# ---------------------------------------------------------------- Rust side: read its run
def rust_result(args):
    lines = [json.loads(l) for l in open(args.metrics) if l.strip()]
    per_step = {int(m["step"]): m for m in lines if "train/samples_per_second" in m}
    total = args.warmup + args.steps
    missing = [s for s in range(1, total + 1) if s not in per_step]
    if missing:
        raise SystemExit(f"{args.metrics}: no train/samples_per_second at steps {missing} (log_every_n_steps must be 1)")
    # at log_every_n_steps=1 and accumulate 1, each logged rate is batch / step time
    times = [args.batch / per_step[s]["train/samples_per_second"] for s in range(1, total + 1)]
    timed = times[args.warmup:]
    loss = lambda m: sum(m[k] for k in ("mlm/train/loss", "mim/train/loss", "itm/train/loss") if k in m)  # noqa: E731
    result = dict(side="rust", samples_per_second=args.steps * args.batch / sum(timed), step_seconds=timed,
                  warmup_step_seconds=times[:args.warmup], losses=[loss(per_step[s]) for s in range(1, total + 1)],
                  batch=args.batch, warmup=args.warmup, steps=args.steps, device="cpu")
    if args.time_file:
        result["peak_rss_mb"], result["process_wall_seconds"] = fu.read_time_file(args.time_file)
    if args.loadavg:
        result["loadavg_1m_start"] = float(open(args.loadavg).read().split()[0])
    fu.write_json(args.out, result)
    print(f"Rust: {result['samples_per_second']:.3f} samples/s over {args.steps} steps of {args.batch}, "
          f"peak RSS {result.get('peak_rss_mb') or float('nan'):.0f} MB")


# ---------------------------------------------------------------- report
def report(args):
    def load(name):
        try:
            return json.load(open(os.path.join(args.results, name)))
        except (OSError, ValueError):
            return None
    rounds = sorted({f.split("_")[1].split(".")[0] for f in os.listdir(args.results)
                     if f.startswith(("py_", "rust_")) and f.endswith(".json") and "_tree" not in f}, key=int)
    meta = load("meta.json") or {}
    header = ["round (first)", "PyTorch samples/s", "Rust samples/s", "ratio", "PyTorch peak RSS MB",
              "Rust peak RSS MB", "PyTorch / Rust footprint MB", "load avg at start (PyTorch / Rust)"]
    rows, ratios, rss = [], [], []
    for r in rounds:
        py, rs = load(f"py_{r}.json"), load(f"rust_{r}.json")
        pt, rt = load(f"py_{r}_tree.json") or {}, load(f"rust_{r}_tree.json") or {}
        p_rss = (fu.read_time_file(os.path.join(args.results, f"py_{r}_time.txt"))[0] or py.get("peak_rss_mb")) if py else None
        r_rss = rs and rs.get("peak_rss_mb")
        ps, rsps = py and py["samples_per_second"], rs and rs["samples_per_second"]
        ratio = rsps / ps if ps and rsps else None
        if ratio:
            ratios.append(ratio)
        if p_rss and r_rss:
            rss.append((p_rss, r_rss))
        first = "PyTorch" if int(r) % 2 == 1 else "Rust"
        rows.append([f"{r} ({first})", fu.fmt(ps, ".3f"), fu.fmt(rsps, ".3f"), fu.fmt(ratio, ".2f") + ("x" if ratio else ""),
                     fu.fmt(p_rss, ".0f"), fu.fmt(r_rss, ".0f"),
                     f"{fu.fmt(pt.get('peak_footprint_mb'), '.0f')} / {fu.fmt(rt.get('peak_footprint_mb'), '.0f')}",
                     f"{fu.fmt(py and py.get('loadavg_1m_start'))} / {fu.fmt(rs and rs.get('loadavg_1m_start'))}"])
    any_side = next((x for r in rounds for x in (load(f"py_{r}.json"), load(f"rust_{r}.json")) if x), {})
    out = [f"### {datetime.date.today().isoformat()} pretrain benchmark (paper size)", ""]
    if args.command:
        out += [f"Command: `{args.command}`", ""]
    out += [f"Machine: {fu.machine_line(meta)}; uptime at start: {meta.get('uptime', '?')}.", "",
            f"Batch {any_side.get('batch', '?')}, {any_side.get('warmup', '?')} warm-up + {any_side.get('steps', '?')} timed "
            f"steps, {meta.get('image_size', '?')} px, max_text_len 64, mim_layer 3, {meta.get('threads', '?')} threads, "
            f"{meta.get('workers', '?')} loader workers, CPU, fp32.", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    if ratios:
        out += ["", f"**Median ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f}x** "
                f"(all: {', '.join(f'{x:.2f}' for x in ratios)})."]
    if rss:
        out += [f"Peak RSS, median over rounds: PyTorch {statistics.median(p for p, _ in rss):.0f} MB, "
                f"Rust {statistics.median(r for _, r in rss):.0f} MB."]
    out += ["", "samples/s: timed steps x batch / their summed step times (each from the end of the previous step, so "
            "the wait for the batch counts). Peak RSS: /usr/bin/time %M of the process (for PyTorch the largest of the "
            "main process and its DataLoader workers). Footprint: bench/tree_rss.py's largest RSS plus children's USS."]
    for r in rounds:
        py, rs = load(f"py_{r}.json"), load(f"rust_{r}.json")
        if py:
            ph = py.get("phases_median", {})
            out.append(f"- round {r} PyTorch: step seconds {', '.join(f'{x:.2f}' for x in py['step_seconds'])} (medians: "
                       f"forward {fu.fmt(ph.get('forward'))}, backward {fu.fmt(ph.get('backward'))}, optimizer "
                       f"{fu.fmt(ph.get('optimizer'))}); losses {', '.join(f'{x:.3f}' for x in py['losses'])}.")
        if rs:
            out.append(f"- round {r} Rust: step seconds {', '.join(f'{x:.2f}' for x in rs['step_seconds'])}; process wall "
                       f"{fu.fmt(rs.get('process_wall_seconds'), '.1f')} s; losses {', '.join(f'{x:.3f}' for x in rs['losses'])}.")
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare-data")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, required=True)
    p.add_argument("--eval", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("prepare-model")
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--image-size", type=int, default=288)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run")
    p.add_argument("--upstream", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--tokenizer", default=fu.TOKENIZER)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", required=True)
    p = sub.add_parser("rust-result")
    p.add_argument("--metrics", required=True)
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
