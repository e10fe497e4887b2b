#!/usr/bin/env bash
# Checkpoint loading benchmark: a full-size random M3AE (CLIP ViT-B/16 at 288 px, roberta-base,
# 6 fusion layers of 768, MIM decoder 384x4; ~1.6 GB fp32) exported by `m3ae export` to a
# Lightning .ckpt, then
#   (a) PyTorch: torch.load(weights_only=True) + load_state_dict into a same-shaped nn.Module;
#   (b) Rust: the converted model.safetensors read straight into a ready model's variables
#       (also printed: via a state dict + load_state_dict, and the .ckpt through the Rust reader).
# Same machine, same run; page cache warm for both (each side reads its file once before timing).
# Data lives in $M3AE_BENCH_DIR (default /tmp/m3ae-bench-ckpt), never in the repository.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target-ckpt}"
export M3AE_BENCH_DIR="${M3AE_BENCH_DIR:-/tmp/m3ae-bench-ckpt}"
runs="${RUNS:-3}"
py="$here/.venv/bin/python"
m3ae="$CARGO_TARGET_DIR/release/m3ae"
mkdir -p "$M3AE_BENCH_DIR"

cargo build --release --quiet
if [ ! -f "$M3AE_BENCH_DIR/model.ckpt" ]; then
  echo "[bench] creating the random full-size model and its .ckpt in $M3AE_BENCH_DIR" >&2
  "$m3ae" convert "$M3AE_BENCH_DIR/fresh" --image-size 288 --set vit='"ViT-B/16"' --set patch_size=16 \
    --set vocab_size=50265 --set mim_layer=3 --set max_text_len=64 \
    --set loss_names='{"mlm":1,"mim":1,"itm":1,"vqa":0,"cls":0,"irtr":0}'
  "$m3ae" export "$M3AE_BENCH_DIR/fresh" "$M3AE_BENCH_DIR/model.ckpt"
  rm -rf "$M3AE_BENCH_DIR/fresh"
fi
start=$(date +%s.%N)
"$m3ae" convert --force "$M3AE_BENCH_DIR/model.ckpt" "$M3AE_BENCH_DIR/converted"
echo "BENCH rust m3ae convert (.ckpt -> safetensors, incl. model build for the checks): $(echo "$(date +%s.%N) - $start" | bc) s"
ls -l "$M3AE_BENCH_DIR/model.ckpt" "$M3AE_BENCH_DIR/converted/model.safetensors"

py_out=$("$py" bench/load_checkpoint.py "$M3AE_BENCH_DIR" "$runs")
echo "$py_out"
rs_out=$(cargo test --release --quiet --test checkpoint -- --ignored --nocapture bench_load_into_ready_model 2>&1 | grep '^BENCH' || true)
echo "$rs_out"
py_s=$(echo "$py_out" | sed -n 's/.*best of [0-9]* \([0-9.]*\) s.*/\1/p')
rs_s=$(echo "$rs_out" | grep 'load_into(model)' | sed -n 's/.*best of [0-9]* \([0-9.]*\) s.*/\1/p')
echo "BENCH ratio torch.load+load_state_dict / rust safetensors load_into(model): $(echo "scale=2; $py_s / $rs_s" | bc)x"
