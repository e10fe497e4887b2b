"""The `finetune` benchmark: VQA fine-tuning steps fed from Arrow files, upstream M3AE's own
PyTorch code in a plain loop against the port's `m3ae finetune` (bench/finetune.sh drives both;
the loop, the Rust side's reading and the bf16 table are bench/e2e_common.py's).

Usage (see bench/README.md, "finetune"):
    python bench/finetune_upstream.py prepare-data --out DIR --train N [--seed 0]
    python bench/finetune_upstream.py prepare-model --upstream PATH --out DIR --size tiny|base
        --image-size PX [--seed 0]
    python bench/finetune_upstream.py run --upstream PATH --model DIR --data DIR --batch B
        --warmup K --steps M --threads T --workers W [--bf16] [--profile F] --out FILE.json
    python bench/finetune_upstream.py rust-result --metrics RUN/metrics.jsonl --batch B --warmup K
        --steps M [--run-config F] [--time-file F] [--loadavg F] --out FILE.json
    python bench/finetune_upstream.py report --results DIR [--out FILE.md] [--command "..."]

The PyTorch side (`run`): e2e_common.run's loop over upstream's DataLoader: MTDataModule ->
VQAVQARADDataset, its collate with the whole-word-mask collator, clip transform,
RobertaTokenizerFast; training_step: set_task -> compute_vqa -> VQARADScore / Scalar metrics.
"""
import json
import os
import statistics

import e2e_common as ec
import e2e_report as er

TASK_PRESET = "task_finetune_vqa_vqa_rad"
NAMED_CONFIGS = (TASK_PRESET, "clip16", "text_roberta")
QUESTIONS_PER_IMAGE = 2
VQA_LABEL_SIZE = 498  # the preset's (VQA-RAD's answer vocabulary)

# Model sizes. tiny: parity/train-vqa's architecture (read from its config.json); base: the
# paper's (bench/upstream_bench.py's LANGUAGE_ENCODER / VISION_ENCODER shapes, with the toy
# tokenizer's vocabulary instead of roberta-base's 50265).
ARCH_KEYS = ("hidden_size", "num_heads", "num_top_layer", "input_text_embed_size", "input_image_embed_size",
             "mlp_ratio", "max_text_len")


# ---------------------------------------------------------------- data
def prepare_data(args):
    """vqa_vqa_rad_{train,val,test}.arrow in upstream's schema (prepro's make_arrow_vqa layout,
    written as parity/generate_train.write_arrow writes it): QUESTIONS_PER_IMAGE questions per
    image, answer labels drawn in [0, VQA_LABEL_SIZE), answer text `ans<label>`, score 1.0;
    val = test = one batch's worth (the port validates once at the end of its run)."""
    import numpy as np
    _, gt = ec.parity_modules()
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
                questions.append(" ".join(ec.WORDS[int(j)] for j in rng.integers(0, len(ec.WORDS), n_words)) + "?")
                labels.append(int(rng.integers(0, VQA_LABEL_SIZE)))
                types_.append(int(rng.integers(0, 2)))
            records.append([ec.synthetic_image(rng), questions, [[f"ans{l}"] for l in labels], [[l] for l in labels],
                            [[1.0] for _ in labels], f"synthetic/{split}_{i:05d}.jpg",
                            list(range(qid, qid + k)), types_, split])
            qid += k
        gt.write_arrow(records, ["image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                                 "question_id", "answer_type", "split"],
                       os.path.join(args.out, f"vqa_vqa_rad_{split}.arrow"))
        counts[split] = dict(images=n_images, questions=n_questions)
    ec.write_data_manifest(args.out, dict(kind="finetune-bench-data", seed=args.seed, image_px=ec.IMAGE_PX,
                                          format="JPEG q90", vqa_label_size=VQA_LABEL_SIZE, splits=counts))


# ---------------------------------------------------------------- model
def size_spec(size):
    """(language_encoder_config, vision_encoder_config, upstream config keys) of a size."""
    tv = json.load(open(os.path.join(ec.TOKENIZER, "..", "config.json")))
    vocab = json.load(open(os.path.join(ec.TOKENIZER, "config.json")))["vocab_size"]
    if size == "tiny":
        lang = dict(tv["language_encoder_config"])
        vision = dict(tv["vision_encoder_config"])
        keys = {k: tv[k] for k in ARCH_KEYS}
    elif size == "base":
        ub = ec.upstream_bench()
        lang, vision = dict(ub.LANGUAGE_ENCODER), dict(ub.VISION_ENCODER)
        keys = dict(hidden_size=768, num_heads=12, num_top_layer=6, input_text_embed_size=768,
                    input_image_embed_size=768, mlp_ratio=4, max_text_len=32)  # max_text_len: the preset's
    else:
        raise SystemExit(f"unknown size {size}")
    lang.update(vocab_size=vocab, hidden_dropout_prob=ec.DROPOUT, attention_probs_dropout_prob=ec.DROPOUT)
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


def prepare_model(args):
    ec.quiet_warnings()
    gen, gt = ec.parity_modules()
    up = gen.import_upstream(args.upstream)
    config, lang, vision = bench_config(gen, gt, up, args.size, args.image_size, args.seed)
    ec.save_model(args, gen, up, config, lang, vision, "finetune-bench-model", size=args.size)


# ---------------------------------------------------------------- Rust side: read its run
def rust_result(args):
    result, lines = ec.rust_result(args, lambda m: m.get("vqa/train/loss"))
    result["validation"] = [m for m in lines if any(k.startswith("val/") or "/val/" in k for k in m)][-1:]
    ec.finish_rust_result(args, result)


# ---------------------------------------------------------------- report
def report(args):
    """One row per round (py_<r>.json / rust_<r>.json, both fp32), then the bf16 table."""
    res = er.Results(args.results)
    meta, size = res.meta, res.meta.get("size", "?")
    header = ["workload", "PyTorch samples/s", "Rust samples/s", "ratio (Rust/PyTorch)", "PyTorch peak RSS MB",
              "Rust peak RSS MB", "PyTorch / Rust footprint MB", "device", "threads", "workers", "model",
              "batch", "image", "steps (warm-up+timed)", "load avg at start (PyTorch / Rust)"]
    rows = []
    for r in res.rounds:
        py, rs = res.load(f"py_{r}.json"), res.load(f"rust_{r}.json")
        ps, rsps = res.rate(f"py_{r}"), res.rate(f"rust_{r}")
        ratio = rsps / ps if ps and rsps else None
        any_side = py or rs or {}
        rows.append([f"finetune ({size}, round {r})", ec.fmt(ps, ".3f"), ec.fmt(rsps, ".3f"),
                     ec.fmt(ratio, ".2f") + ("x" if ratio else ""), ec.fmt(res.peak_rss(f"py_{r}"), ".0f"),
                     ec.fmt(res.peak_rss(f"rust_{r}"), ".0f"),
                     f"{ec.fmt(res.footprint(f'py_{r}'), '.0f')} / {ec.fmt(res.footprint(f'rust_{r}'), '.0f')}",
                     "cpu", str(meta.get("threads", any_side.get("torch_threads", "?"))),
                     str(meta.get("workers", any_side.get("workers", "?"))), size,
                     str(any_side.get("batch", "?")), f"{meta.get('image_size', any_side.get('image_size', '?'))} px",
                     f"{any_side.get('warmup', '?')}+{any_side.get('steps', '?')}",
                     f"{ec.fmt(py and py.get('loadavg_1m_start'))} / {ec.fmt(rs and rs.get('loadavg_1m_start'))}"])
    out = [f"### {er.today()} finetune benchmark ({size})", ""]
    if args.command:
        out += [f"Command: `{args.command}`", ""]
    alloc = (" The PyTorch side ran with the port's glibc settings (--same-allocator)."
             if meta.get("same_allocator") else "")
    out += [f"Machine: {er.machine_line(meta)}; uptime at start: {meta.get('uptime', '?')}.{alloc}", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    ratios = res.ratios("rust", "py")
    if len(ratios) > 1:
        out += ["", f"Median ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f}x "
                f"(all: {', '.join(f'{x:.2f}' for x in ratios)})."]
    out += ["", er.RSS_NOTE]
    medians = []
    for r in res.rounds:
        py, rs = res.load(f"py_{r}.json"), res.load(f"rust_{r}.json")
        if py and rs:
            mp, mr = statistics.median(py["step_seconds"]), statistics.median(rs["step_seconds"])
            medians.append(mp / mr)
            out.append(f"- round {r}: median timed step PyTorch {mp:.3f} s, Rust {mr:.3f} s: {mp / mr:.2f}x "
                       "(less sensitive than the mean to one slow step)")
    if len(medians) > 1:
        out.append(f"- median over rounds of the median-step ratio: {statistics.median(medians):.2f}x")
    er.finish(args, res, out, "VQA fine-tuning")


# ---------------------------------------------------------------- main
def main():
    ec.main(__doc__, {"prepare-data": prepare_data, "prepare-model": prepare_model, "rust-result": rust_result,
                      "report": report}, record_keys=("drop_rate",),
            prepare_model_args=lambda p: p.add_argument("--size", required=True, choices=("tiny", "base")),
            run_args=lambda p: p.add_argument("--drop-rate", type=float))


if __name__ == "__main__":
    main()
