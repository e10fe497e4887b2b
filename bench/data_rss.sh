#!/usr/bin/env bash
# Peak RSS of reading a multi-gigabyte split (issue: data at real size). Generates an
# upstream-shaped roco split of GB gigabytes (bench/big_arrow.py), then measures with
# /usr/bin/time: `m3ae data check` (decodes every image) and 50 pre-training steps (batch 8
# plus one false image each, the tiny train-irtr model, so the model's share is small).
#   bench/data_rss.sh [DIR] [GB]        (default /tmp/m3ae-bigdata, 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-/tmp/m3ae-bigdata}"
gb="${2:-2}"
bin="$root/target/release/m3ae"
[ -x "$bin" ] || (cd "$root" && cargo build --release)
[ -f "$dir/roco_train.arrow" ] || "$root/.venv/bin/python" "$root/bench/big_arrow.py" "$dir" --gb "$gb"
size_mb=$(( $(stat -c %s "$dir/roco_train.arrow") / 1000000 ))
rss() { /usr/bin/time -f "%M %e" "$@" 2>&1 >/dev/null | tail -n 1; }
read -r check_kb check_s < <(rss "$bin" data check "$dir" --datasets roco)
s="$root/parity/train-irtr"
run="$(mktemp -d)/run"
read -r train_kb train_s < <(rss "$bin" pretrain --run-dir "$run" --config "$s/config.json" --set data_root="$dir" \
  tokenizer="$s/tokenizer" load_path="$s/model" 'datasets=["roco"]' 'loss_names={"mlm":1,"mim":1,"itm":1}' \
  draw_false_image=1 draw_false_text=0 get_recall_metric=false mim_decoder_hidden_size=32 mim_decoder_num_layers=1 \
  mim_decoder_num_heads=2 mlm_prob=0.3 per_gpu_batchsize=8 batch_size=8 max_steps=50 log_every_n_steps=10 num_workers=2)
echo "| workload | file MB | peak RSS MB | seconds |"
echo "|---|---|---|---|"
echo "| m3ae data check (every image decoded) | $size_mb | $(( check_kb / 1024 )) | $check_s |"
echo "| 50 pre-training steps, batch 8 + false images | $size_mb | $(( train_kb / 1024 )) | $train_s |"
