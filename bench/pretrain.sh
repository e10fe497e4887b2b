#!/usr/bin/env bash
# The `pretrain` benchmark: MLM + MIM + ITM pre-training steps at the paper's size, fed from
# Arrow files through each side's real input pipeline. PyTorch: upstream M3AE's own roco
# datamodule, collate and MLM collator, M3AETransformerSS, compute_mlm / compute_mim /
# compute_itm and set_schedule's AdamW in a plain loop (bench/pretrain_upstream.py). Rust:
# `m3ae pretrain`. Same Arrow files, model folder, batch, steps, threads and loader workers, in
# the same run; rounds alternate which side goes first.
#
# Usage: bench/pretrain.sh [--image-size PX] [--batch B] [--warmup K] [--steps M] [--threads T]
#                          [--workers W] [--rounds R] [--upstream PATH] [--dir DIR] [--notes]
#   --image-size  default 288 (run_scripts/pretrain_m3ae.sh)
#   --batch       per_gpu_batchsize = batch_size (default 4)
#   --warmup      untimed steps first (default 1)
#   --steps       timed steps (default 2)
#   --threads     intra-op threads of both sides (default 2)
#   --workers     loader workers of both sides, >= 1 (default 2)
#   --rounds      PyTorch/Rust pairs, alternating which side goes first (default 3)
#   --upstream    upstream M3AE checkout, the folder holding m3ae/ (default $M3AE_UPSTREAM or
#                 /tmp/m3ae-upstream)
#   --dir         work folder: data-n<N>/, model-<px>/, results-…/ (default /tmp/m3ae-pretrain-bench)
#   --notes       also append the table to bench/NOTES.md
# Environment: PYTHON (default .venv/bin/python), M3AE_BIN (default target/release/m3ae; copied
#   into the results folder first), BENCH_TIMEOUT seconds per process (default 1800).
# Writes DIR/results-<px>px-b<B>-t<T>-w<W>/{py,rust}_<round>.json (+ _time.txt, _tree.json, .log)
# and the Markdown table to bench/pretrain_latest.md (also printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
upstream="${M3AE_UPSTREAM:-/tmp/m3ae-upstream}"
dir=/tmp/m3ae-pretrain-bench
image_size=288; batch=4; warmup=1; steps=2; threads=2; workers=2; rounds=3; notes=0
cmdline="bench/pretrain.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --image-size) image_size="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --upstream) upstream="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --notes) notes=1; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pretrain.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$workers" -ge 1 ] || { echo "pretrain.sh: --workers must be >= 1 (the port always loads in worker threads)" >&2; exit 2; }
py="${PYTHON:-$root/.venv/bin/python}"
bin_src="${M3AE_BIN:-$root/target/release/m3ae}"
tmo="${BENCH_TIMEOUT:-1800}"
script="$root/bench/pretrain_upstream.py"
tokenizer="$root/parity/train-vqa/tokenizer"
[ -d "$upstream/m3ae" ] || { echo "pretrain.sh: no upstream checkout at $upstream (need $upstream/m3ae)" >&2; exit 2; }
[ -x "$bin_src" ] || { echo "pretrain.sh: no m3ae binary at $bin_src (cargo build --release)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "pretrain.sh: needs GNU time at /usr/bin/time (peak RSS)" >&2; exit 2; }
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"

# 1. Data and model, once per shape (kept between runs).
total=$((warmup + steps))
n_train=$(( (total + 1) * batch ))
n_train=$(( (n_train + 63) / 64 * 64 ))
data="$dir/data-n$n_train"
model="$dir/model-$image_size"
mkdir -p "$dir"
if [ ! -s "$data/manifest.json" ]; then
  echo "== prepare data -> $data ($n_train train images, 512 px JPEG)"
  "$py" "$script" prepare-data --out "$data" --train "$n_train" --eval "$batch"
fi
if [ ! -s "$model/manifest.json" ]; then
  echo "== prepare model -> $model ($image_size px)"
  "$py" "$script" prepare-model --upstream "$upstream" --out "$model" --image-size "$image_size"
fi

res="$dir/results-${image_size}px-b$batch-t$threads-w$workers"
rm -rf "$res"
mkdir -p "$res"
bin="$res/m3ae"
cp "$bin_src" "$bin"
M3AE_ROOT="$root" "$py" - "$res/meta.json" "$image_size" "$threads" "$workers" "$bin_src" <<'EOF'
import hashlib, json, os, subprocess, sys
out, px, threads, workers, binary = sys.argv[1:]
commit = subprocess.run(["git", "-C", os.environ.get("M3AE_ROOT", "."), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
json.dump(dict(image_size=int(px), threads=int(threads), workers=int(workers), commit=commit,
               uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               binary=binary, binary_sha256=hashlib.sha256(open(binary, "rb").read()).hexdigest()[:16]),
          open(out, "w"), indent=1)
EOF
echo "== $(uptime)"

# 2. Each side in its own process, /usr/bin/time for peak RSS, tree_rss.py beside it.
measured_pid="" watcher_pid=""
stop_measured() {
  if [ -n "$measured_pid" ]; then
    for c in $(cat /proc/"$measured_pid"/task/*/children 2>/dev/null); do kill "$c" 2>/dev/null || true; done
  fi
  [ -z "$watcher_pid" ] || kill "$watcher_pid" 2>/dev/null || true
}
trap 'stop_measured; exit 130' INT TERM

measure() {  # name command...
  local name="$1" rc=0; shift
  cut -d' ' -f1 /proc/loadavg >"$res/$name.loadavg"
  /usr/bin/time -f '%M %e' -o "$res/${name}_time.txt" timeout "$tmo" "$@" >"$res/$name.log" 2>&1 &
  measured_pid=$!
  "$py" "$root/bench/tree_rss.py" --pid "$measured_pid" --out "$res/${name}_tree.json" &
  watcher_pid=$!
  wait "$measured_pid" || rc=$?
  wait "$watcher_pid" || true
  measured_pid="" watcher_pid=""
  return "$rc"
}

run_py() {
  local r="$1" rc=0
  echo "== round $r: PyTorch"
  measure "py_$r" "$py" "$script" run --upstream "$upstream" --model "$model" --data "$data" --tokenizer "$tokenizer" \
    --batch "$batch" --warmup "$warmup" --steps "$steps" --threads "$threads" --workers "$workers" \
    --out "$res/py_$r.json" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "   FAILED (exit $rc; see $res/py_$r.log):" >&2; tail -n 5 "$res/py_$r.log" | sed 's/^/   | /' >&2
    rm -f "$res/py_$r.json"
  else
    tail -n 1 "$res/py_$r.log" | sed 's/^/   /'
  fi
}

run_rust() {
  local r="$1" rc=0 run="$res/run_$r"
  echo "== round $r: Rust"
  measure "rust_$r" "$bin" pretrain --run-dir "$run" --config "$model/config.json" \
    --set "data_root=\"$data\"" "tokenizer=\"$tokenizer\"" "load_path=\"$model\"" \
    per_gpu_batchsize="$batch" batch_size="$batch" max_steps="$total" log_every_n_steps=1 \
    num_workers="$workers" val_check_interval=1.0 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "   FAILED (exit $rc; see $res/rust_$r.log):" >&2; tail -n 5 "$res/rust_$r.log" | sed 's/^/   | /' >&2
  elif "$py" "$script" rust-result --metrics "$run/metrics.jsonl" --batch "$batch" --warmup "$warmup" --steps "$steps" \
      --time-file "$res/rust_${r}_time.txt" --loadavg "$res/rust_$r.loadavg" --out "$res/rust_$r.json" | sed 's/^/   /'; then
    rm -rf "$run/checkpoints"  # several GB of weights and optimizer state per run
  fi
}

for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run_py "$r"; run_rust "$r"; else run_rust "$r"; run_py "$r"; fi
done

# 3. The table.
echo
"$py" "$script" report --results "$res" --out "$root/bench/pretrain_latest.md" --command "$cmdline"
echo "(written to bench/pretrain_latest.md)"
if [ "$notes" = 1 ]; then
  { echo; cat "$root/bench/pretrain_latest.md"; } >>"$root/bench/NOTES.md"
  echo "(appended to bench/NOTES.md)"
fi
