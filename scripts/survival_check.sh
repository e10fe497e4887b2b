#!/usr/bin/env bash
# Issue check: pre-training on upstream-written Arrow files (parity/train-irtr's, written by
# upstream's own make_arrow path) with one corrupt image in the train split, per_gpu_batchsize 2,
# 200 steps: it runs to the end; killed with -9 (at step 77) and resumed it logs the uninterrupted
# run's losses; 2 processes log what 1 logs. Prints the comparison; exits 1 on a difference.
# usage: scripts/survival_check.sh [OUT_DIR]   (after cargo build --release)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-/tmp/m3ae-survival}"
m3ae="$here/target/release/m3ae"
set_dir="$here/parity/train-irtr"
rm -rf "$out" && mkdir -p "$out/data"
for s in train val test; do cp "$set_dir/data/irtr_roco_$s.arrow" "$out/data/roco_$s.arrow"; done
# the train split's first PNG signature overwritten: its image cannot be decoded, the file stays valid
python3 - "$out/data/roco_train.arrow" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = b.index(b'\x89PNG'); b[i:i+4] = b'XXXX'; open(p, 'wb').write(b)
PY
args=(pretrain --config "$set_dir/config.json"
  --set "data_root=\"$out/data\"" --set "tokenizer=\"$set_dir/tokenizer\"" --set "load_path=\"$set_dir/model\""
  --set 'datasets=["roco"]' --set 'loss_names={"mlm":1,"mim":1,"itm":1}' --set draw_false_image=1 --set draw_false_text=0
  --set get_recall_metric=false --set mim_decoder_hidden_size=32 --set mim_decoder_num_layers=1 --set mim_decoder_num_heads=2
  --set mim_layer=-1 --set per_gpu_batchsize=2 --set batch_size=4 --set max_steps=200 --set warmup_steps=0
  --set learning_rate=0.001 --set log_every_n_steps=1 --set checkpoint_every_n_steps=10 --set num_workers=1)
export OMP_NUM_THREADS=1
"$m3ae" "${args[@]}" --run-dir "$out/a" > "$out/a.log" 2>&1
M3AE_TEST_SIGNAL_AT_STEP=77:kill "$m3ae" "${args[@]}" --run-dir "$out/b" > "$out/b.log" 2>&1 || echo "b: killed as planned ($?)"
"$m3ae" pretrain --run-dir "$out/b" --resume >> "$out/b.log" 2>&1
"$m3ae" "${args[@]}" --run-dir "$out/c" --nproc 2 > "$out/c.log" 2>&1
python3 - "$out" <<'PY'
import json, sys, math
out = sys.argv[1]
def series(run, name):
    return [(m["step"], m[name]) for m in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if name in m]
bad = 0
for name in ["mlm/train/loss", "mim/train/loss", "itm/train/loss", "val/the_metric"]:
    a, b, c = series("a", name), series("b", name), series("c", name)
    exact = a == b
    worst = max((abs(x[1] - y[1]) / max(abs(x[1]), 1e-6) for x, y in zip(a, c)), default=math.inf) if len(a) == len(c) else math.inf
    print(f"{name}: {len(a)} values; resumed == uninterrupted: {exact}; 2 processes vs 1: worst relative {worst:.1e}")
    bad += (not exact) or worst > 1e-5
for k in ["train/unreadable_images", "train/mlm_batches_without_targets"]:
    print(f"{k}: run a sums {sum(v for _, v in series('a', k)):.0f} over {len(series('a', k))} epochs")
sys.exit(1 if bad else 0)
PY
