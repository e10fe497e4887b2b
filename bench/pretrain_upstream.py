"""The `pretrain` benchmark: MLM + MIM + ITM pre-training steps fed from Arrow files, upstream
M3AE's own PyTorch code in a plain loop against the port's `m3ae pretrain` (bench/pretrain.sh
drives both).

Upstream (github zhjohnchan/M3AE) is imported at run time from the checkout named with
--upstream; no upstream code lives in this project. The loop, the Rust side's reading, the
bf16 table and the shims' loading are bench/e2e_common.py's.

Usage (see bench/README.md, "pretrain"): the subcommands of bench/finetune_upstream.py
(prepare-data, prepare-model without --size, run, rust-result, report, meta), which
bench/pretrain.sh calls in turn.

The PyTorch side (`run`): e2e_common.run's loop over upstream's DataLoader: MTDataModule ->
ROCODataset, its collate with the MLM collator (whole_word_masking of task_pretrain_m3ae:
DataCollatorForWholeWordMask), one false image per sample, clip transform,
RobertaTokenizerFast; training_step: set_task -> compute_mlm, compute_mim, compute_itm.

Model: the paper's pre-training shapes: upstream's defaults <- task_pretrain_m3ae <- clip16 <-
text_roberta, image_size 288, max_text_len 64 (run_scripts/pretrain_m3ae.sh): CLIP ViT-B/16,
a roberta-base-shaped text encoder (vocabulary 50,265, so the MLM head is 768 x 50,265), 6
fusion layers of 768, mim_layer 3, MIM decoder 4 x 384. precision 32 (the preset's 16 is a GPU
setting; --bf16 is CPU autocast around it). The tokenizer is the toy RoBERTa BPE of parity/train-vqa (ids below 1,001): the
model's shapes are roberta-base's, the ids it sees are not.
"""
import os
import statistics

import e2e_common as ec
import e2e_report as er

NAMED_CONFIGS = ("task_pretrain_m3ae", "clip16", "text_roberta")
LOSS_KEYS = ("mlm/train/loss", "mim/train/loss", "itm/train/loss")


# ---------------------------------------------------------------- data
def prepare_data(args):
    """roco_{train,val,test}.arrow in upstream's schema (image, caption list, image_id, split;
    written as parity/generate_train.write_arrow writes it): one caption of 12-60 words per
    512 px JPEG (ec.synthetic_image), so most captions fill max_text_len 64 tokens."""
    import numpy as np
    _, gt = ec.parity_modules()
    rng = np.random.default_rng([args.seed, 11])
    os.makedirs(args.out, exist_ok=True)
    counts = {}
    for split, n in (("train", args.train), ("val", args.eval), ("test", args.eval)):
        records = []
        for i in range(n):
            words = " ".join(ec.WORDS[int(j)] for j in rng.integers(0, len(ec.WORDS), int(rng.integers(12, 60))))
            records.append([ec.synthetic_image(rng), [words + "."], f"synthetic/{split}_{i:05d}.jpg", split])
        gt.write_arrow(records, ["image", "caption", "image_id", "split"], os.path.join(args.out, f"roco_{split}.arrow"))
        counts[split] = n
    ec.write_data_manifest(args.out, dict(kind="pretrain-bench-data", seed=args.seed, image_px=ec.IMAGE_PX,
                                          format="JPEG q90", splits=counts))


# ---------------------------------------------------------------- model
def prepare_model(args):
    """Upstream's defaults <- task_pretrain_m3ae <- clip16 <- text_roberta <- image_size,
    max_text_len 64 and the benchmark's keys; the paper-size encoders of bench/upstream_bench.py
    with roberta-base's dropout."""
    ec.quiet_warnings()
    gen, gt = ec.parity_modules()
    up = gen.import_upstream(args.upstream)
    ub = ec.upstream_bench()
    config = gen.upstream_defaults(up.config)
    for name in NAMED_CONFIGS:
        config.update(gt.named_config(up, name))
    config.update(image_size=args.image_size, max_text_len=64, seed=args.seed, datasets=["roco"],
                  tokenizer="roberta-base", data_root="data", load_path="", test_only=False, num_gpus=1,
                  num_nodes=1, precision=32, exp_name="bench_pretrain", per_gpu_batchsize=4, batch_size=4,
                  num_workers=2, max_steps=10)
    lang = dict(ub.LANGUAGE_ENCODER, hidden_dropout_prob=ec.DROPOUT, attention_probs_dropout_prob=ec.DROPOUT)
    ec.save_model(args, gen, up, config, lang, dict(ub.VISION_ENCODER), "pretrain-bench-model")


# ---------------------------------------------------------------- Rust side: read its run
def rust_result(args):
    result, _ = ec.rust_result(args, lambda m: sum(m[k] for k in LOSS_KEYS if k in m))
    ec.finish_rust_result(args, result)


# ---------------------------------------------------------------- report
def report(args):
    res = er.Results(args.results)
    meta = res.meta
    header = ["round (first)", "PyTorch samples/s", "Rust samples/s", "ratio", "PyTorch peak RSS MB",
              "Rust peak RSS MB", "PyTorch / Rust footprint MB", "load avg at start (PyTorch / Rust)"]
    rows, rss = [], []
    for r in res.rounds:
        py, rs = res.load(f"py_{r}.json"), res.load(f"rust_{r}.json")
        p_rss, r_rss = res.peak_rss(f"py_{r}") if py else None, rs and rs.get("peak_rss_mb")
        ps, rsps = res.rate(f"py_{r}"), res.rate(f"rust_{r}")
        ratio = rsps / ps if ps and rsps else None
        if p_rss and r_rss:
            rss.append((p_rss, r_rss))
        first = "PyTorch" if int(r) % 2 == 1 else "Rust"
        rows.append([f"{r} ({first})", ec.fmt(ps, ".3f"), ec.fmt(rsps, ".3f"), ec.fmt(ratio, ".2f") + ("x" if ratio else ""),
                     ec.fmt(p_rss, ".0f"), ec.fmt(r_rss, ".0f"),
                     f"{ec.fmt(res.footprint(f'py_{r}'), '.0f')} / {ec.fmt(res.footprint(f'rust_{r}'), '.0f')}",
                     f"{ec.fmt(py and py.get('loadavg_1m_start'))} / {ec.fmt(rs and rs.get('loadavg_1m_start'))}"])
    any_side = next((x for r in res.rounds for x in (res.load(f"py_{r}.json"), res.load(f"rust_{r}.json")) if x), {})
    out = [f"### {er.today()} pretrain benchmark (paper size)", ""]
    if args.command:
        out += [f"Command: `{args.command}`", ""]
    out += [f"Machine: {er.machine_line(meta)}; uptime at start: {meta.get('uptime', '?')}.", "",
            f"Batch {any_side.get('batch', '?')}, {any_side.get('warmup', '?')} warm-up + {any_side.get('steps', '?')} timed "
            f"steps, {meta.get('image_size', '?')} px, max_text_len 64, mim_layer 3, {meta.get('threads', '?')} threads, "
            f"{meta.get('workers', '?')} loader workers, CPU, fp32.", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    ratios = res.ratios("rust", "py")
    if ratios:
        out += ["", f"**Median ratio over {len(ratios)} rounds: {statistics.median(ratios):.2f}x** "
                f"(all: {', '.join(f'{x:.2f}' for x in ratios)})."]
    if rss:
        out += [f"Peak RSS, median over rounds: PyTorch {statistics.median(p for p, _ in rss):.0f} MB, "
                f"Rust {statistics.median(r for _, r in rss):.0f} MB."]
    out += ["", er.RSS_NOTE]
    er.finish(args, res, out, "pre-training")


def main():
    ec.main(__doc__, {"prepare-data": prepare_data, "prepare-model": prepare_model, "rust-result": rust_result,
                      "report": report}, record_keys=("mim_layer",))


if __name__ == "__main__":
    main()
