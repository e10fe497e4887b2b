#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPUs (Gloo over loopback): the same VQA fine-tuning
# run (parity/train-vqa's model and data, per_gpu_batchsize 5, batch_size 10) as
#   1 process × 1 thread, 1 process × 2 threads, 2 processes × 1 thread (--nproc 2).
# Throughput is the median of metrics.jsonl's train/samples_per_second (all ranks' samples)
# after the first logged step. The fixture's epoch is one step (10 samples), so each interval
# also holds an epoch's set-up and a (sharded) validation on 7 samples. Efficiency is
# throughput(2 × 1 thread) / (2 × throughput(1 × 1 thread)).
# Usage: bench/ddp_scaling.sh [STEPS] (default 40); needs `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-40}"
m3ae=target/release/m3ae
out=$(mktemp -d)
v=parity/train-vqa
args=(finetune vqa_vqa_rad --config $v/config.json --set data_root=\"$v/data\" tokenizer=\"$v/tokenizer\"
      load_path=\"$v/model\" test_only=true per_gpu_batchsize=5 batch_size=10 max_steps="$steps"
      max_epoch=1000 log_every_n_steps=1)
OMP_NUM_THREADS=1 "$m3ae" "${args[@]}" --run-dir "$out/p1t1" >/dev/null 2>&1
OMP_NUM_THREADS=2 "$m3ae" "${args[@]}" --run-dir "$out/p1t2" >/dev/null 2>&1
OMP_NUM_THREADS=1 "$m3ae" "${args[@]}" --run-dir "$out/p2t1" --nproc 2 >/dev/null 2>&1
.venv/bin/python - "$out" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, statistics, sys
out, cores, load = sys.argv[1:4]
def rate(run):
    v = [l["train/samples_per_second"] for l in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if "train/samples_per_second" in l]
    return statistics.median(v[1:])
r = {k: rate(k) for k in ("p1t1", "p1t2", "p2t1")}
print(f"| workload | 1 proc × 1 thread | 1 proc × 2 threads | 2 procs × 1 thread | efficiency | vs 1 × 2 threads | cores | load |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| VQA tiny (train-vqa), 10 samples/step | {r['p1t1']:.1f}/s | {r['p1t2']:.1f}/s | {r['p2t1']:.1f}/s | "
      f"{r['p2t1'] / (2 * r['p1t1']):.2f} | {r['p2t1'] / r['p1t2']:.2f}x | {cores} | {load} |")
EOF
