#!/usr/bin/env bash
# The `finetune` benchmark: VQA fine-tuning steps fed from Arrow files through each side's real
# input pipeline. PyTorch: upstream M3AE's own datamodule (DataLoader, dataset, collate, clip
# transform, tokenizer), model, compute_vqa and set_schedule's AdamW in a plain loop
# (bench/finetune_upstream.py). Rust: `m3ae finetune vqa_vqa_rad`. Same Arrow files, model
# folder, batch, steps, threads and loader workers, in the same run. With --bf16, each round
# also runs both sides in bf16 (three columns: port bf16, PyTorch bf16 autocast, upstream fp32).
#
# Usage: bench/finetune.sh [--size tiny|base] [options below]
#   --size        tiny: parity/train-vqa's architecture (default); base: the paper's (CLIP
#                 ViT-B/16, roberta-base-shaped text encoder with the toy vocabulary, 6
#                 fusion layers of 768, 12 heads)
#   defaults: --image-size 224, --batch tiny 16 / base 4, --warmup tiny 5 / base 2, --steps
#   tiny 20 / base 3, --threads 2, --workers 2, --rounds 1, --dir /tmp/m3ae-finetune-bench
#   (data-n<N>/, model-<size>-<px>/, results-<size>-<px>px-b<B>-t<T>-w<W>[-same-allocator][-bf16]/)
# Writes the results folder's {py,rust,pybf16,rustbf16}_<round>.json (+ _time.txt, _tree.json,
# .log) and the Markdown table to bench/finetune_latest.md (also printed).
bench=finetune; help_lines=18
dir=/tmp/m3ae-finetune-bench
size=tiny; image_size=224; batch=""; warmup=""; steps=""; rounds=1
rust_cmd=(finetune vqa_vqa_rad); rust_set=(test_only=true)
bench_option() { case "$1" in --size) size="$2"; used=2 ;; *) return 1 ;; esac; }
source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
script="$root/bench/finetune_upstream.py"
e2e_parse "$@"
case "$size" in
  tiny) batch="${batch:-16}"; warmup="${warmup:-5}"; steps="${steps:-20}" ;;
  base) batch="${batch:-4}"; warmup="${warmup:-2}"; steps="${steps:-3}" ;;
  *) echo "finetune.sh: --size tiny or base" >&2; exit 2 ;;
esac
e2e_data questions
e2e_model "$dir/model-$size-$image_size" --size "$size"
e2e_results "results-$size-${image_size}px-b$batch-t$threads-w$workers" --size "$size"
e2e_rounds
e2e_report
