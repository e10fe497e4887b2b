#!/usr/bin/env bash
# The `pretrain` benchmark: MLM + MIM + ITM pre-training steps at the paper's size, fed from
# Arrow files through each side's real input pipeline. PyTorch: upstream M3AE's own roco
# datamodule, collate and MLM collator, M3AETransformerSS, compute_mlm / compute_mim /
# compute_itm and set_schedule's AdamW in a plain loop (bench/pretrain_upstream.py). Rust:
# `m3ae pretrain`. Same Arrow files, model folder, batch, steps, threads and loader workers, in
# the same run; rounds alternate which side goes first. With --bf16, each round also runs both
# sides in bf16 (three columns: port bf16, PyTorch bf16 autocast, upstream fp32).
#
# Usage: bench/pretrain.sh [options below]
#   defaults: --image-size 288 (run_scripts/pretrain_m3ae.sh), --batch 4 (per_gpu_batchsize =
#   batch_size), --warmup 1, --steps 2, --threads 2, --workers 2, --rounds 3,
#   --dir /tmp/m3ae-pretrain-bench (data-n<N>/, model-<px>/, results-<px>px-b<B>-t<T>-w<W>[-bf16]/)
# Writes the results folder's {py,rust,pybf16,rustbf16}_<round>.json (+ _time.txt, _tree.json,
# .log) and the Markdown table to bench/pretrain_latest.md (also printed).
bench=pretrain; help_lines=15
dir=/tmp/m3ae-pretrain-bench
image_size=288; batch=4; warmup=1; steps=2; rounds=3
rust_cmd=(pretrain); rust_set=()
bench_option() { return 1; }
source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
script="$root/bench/pretrain_upstream.py"
e2e_parse "$@"
e2e_data images
e2e_model "$dir/model-$image_size"
e2e_results "results-${image_size}px-b$batch-t$threads-w$workers"
e2e_rounds
e2e_report
