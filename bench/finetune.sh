#!/usr/bin/env bash
# The `finetune` benchmark: VQA fine-tuning steps fed from Arrow files through each side's real
# input pipeline. PyTorch: upstream M3AE's own datamodule (DataLoader, dataset, collate, clip
# transform, tokenizer), model, compute_vqa and set_schedule's AdamW in a plain loop
# (bench/finetune_upstream.py). Rust: `m3ae finetune vqa_vqa_rad`. Same Arrow files, model
# folder, batch, steps, threads and loader workers, in the same run.
#
# Usage: bench/finetune.sh [--size tiny|base] [--image-size PX] [--batch B] [--warmup K]
#                          [--steps M] [--threads T] [--workers W] [--rounds R]
#                          [--upstream PATH] [--dir DIR] [--bf16] [--notes]
#   --size        tiny: parity/train-vqa's architecture (default); base: the paper's (CLIP
#                 ViT-B/16, roberta-base-shaped text encoder with the toy vocabulary, 6
#                 fusion layers of 768, 12 heads)
#   --image-size  default 224
#   --batch       per_gpu_batchsize = batch_size (default: tiny 16, base 4)
#   --warmup      untimed steps first (default: tiny 5, base 2)
#   --steps       timed steps (default: tiny 20, base 3)
#   --threads     intra-op threads of both sides (default 2: OMP/MKL_NUM_THREADS, and
#                 torch.set_num_threads on the PyTorch side)
#   --workers     loader workers of both sides, >= 1 (default 2: DataLoader worker processes;
#                 the port's loader threads)
#   --rounds      PyTorch/Rust pairs, alternating which side goes first (default 1)
#   --upstream    upstream M3AE checkout, the folder holding m3ae/ (default $M3AE_UPSTREAM
#                 or /tmp/m3ae-upstream)
#   --dir         work folder: data-n<N>/, model-<size>-<px>/, results-…/ (default
#                 /tmp/m3ae-finetune-bench)
#   --same-allocator  give the PyTorch side the glibc settings the Rust binary applies to
#                 itself (src/runtime.rs), as run.sh's option of that name does
#   --bf16        three columns: each round also runs PyTorch under
#                 torch.autocast("cpu", dtype=torch.bfloat16) around upstream's forward, and
#                 the port with precision "bf16" (CPU autocast); PyTorch fp32 as upstream runs
#   --notes       also append the table to bench/NOTES.md
# Environment: PYTHON (default .venv/bin/python), M3AE_BIN (default target/release/m3ae;
#   copied into the results folder first, so a rebuild during the run changes nothing),
#   BENCH_TIMEOUT seconds per process (default 1800).
# Writes DIR/results-<size>-<px>px-b<B>-t<T>-w<W>/{py,rust}_<round>.json (+ _time.txt, _tree.json, .log), the
# Markdown table to bench/finetune_latest.md (also printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
upstream="${M3AE_UPSTREAM:-/tmp/m3ae-upstream}"
dir=/tmp/m3ae-finetune-bench
size=tiny; image_size=224; batch=""; warmup=""; steps=""; threads=2; workers=2; rounds=1; notes=0
same_alloc=0; bf16=0
cmdline="bench/finetune.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --image-size) image_size="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --upstream) upstream="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --same-allocator) same_alloc=1; shift ;;
    --bf16) bf16=1; shift ;;
    --notes) notes=1; shift ;;
    -h|--help) sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "finetune.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$size" in
  tiny) batch="${batch:-16}"; warmup="${warmup:-5}"; steps="${steps:-20}" ;;
  base) batch="${batch:-4}"; warmup="${warmup:-2}"; steps="${steps:-3}" ;;
  *) echo "finetune.sh: --size tiny or base" >&2; exit 2 ;;
esac
[ "$workers" -ge 1 ] || { echo "finetune.sh: --workers must be >= 1 (the port always loads in worker threads)" >&2; exit 2; }
py="${PYTHON:-$root/.venv/bin/python}"
bin_src="${M3AE_BIN:-$root/target/release/m3ae}"
tmo="${BENCH_TIMEOUT:-1800}"
script="$root/bench/finetune_upstream.py"
tokenizer="$root/parity/train-vqa/tokenizer"
[ -d "$upstream/m3ae" ] || { echo "finetune.sh: no upstream checkout at $upstream (need $upstream/m3ae)" >&2; exit 2; }
[ -x "$bin_src" ] || { echo "finetune.sh: no m3ae binary at $bin_src (cargo build --release)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "finetune.sh: needs GNU time at /usr/bin/time (peak RSS)" >&2; exit 2; }
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"

# 1. Data and model, once per shape (kept between runs).
total=$((warmup + steps))
n_train=$(( (total + 1) * batch ))             # one batch to spare: no epoch ends inside the steps
n_train=$(( (n_train + 63) / 64 * 64 ))        # rounded up, so nearby settings share the tables
data="$dir/data-n$n_train"
model="$dir/model-$size-$image_size"
mkdir -p "$dir"
if [ ! -s "$data/manifest.json" ]; then
  echo "== prepare data -> $data ($n_train train questions, 512 px JPEG)"
  "$py" "$script" prepare-data --out "$data" --train "$n_train" --eval "$batch"
fi
if [ ! -s "$model/manifest.json" ]; then
  echo "== prepare model -> $model ($size, $image_size px)"
  "$py" "$script" prepare-model --upstream "$upstream" --out "$model" --size "$size" --image-size "$image_size"
fi

res="$dir/results-$size-${image_size}px-b$batch-t$threads-w$workers"
[ "$same_alloc" = 1 ] && res="$res-same-allocator"
[ "$bf16" = 1 ] && res="$res-bf16"
rm -rf "$res"
mkdir -p "$res"
bin="$res/m3ae"
cp "$bin_src" "$bin"
M3AE_ROOT="$root" "$py" - "$res/meta.json" "$size" "$image_size" "$threads" "$workers" "$bin_src" "$same_alloc" <<'EOF'
import hashlib, json, os, subprocess, sys
out, size, px, threads, workers, binary, same_alloc = sys.argv[1:]
commit = subprocess.run(["git", "-C", os.environ.get("M3AE_ROOT", "."), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
json.dump(dict(size=size, image_size=int(px), threads=int(threads), workers=int(workers), commit=commit,
               same_allocator=same_alloc == "1",
               uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               binary=binary, binary_sha256=hashlib.sha256(open(binary, "rb").read()).hexdigest()[:16]),
          open(out, "w"), indent=1)
EOF
echo "== $(uptime)"

# 2. Each side in its own process, /usr/bin/time for peak RSS, tree_rss.py beside it.
measured_pid="" watcher_pid=""
stop_measured() {  # on Ctrl-C / kill: end what this script started (timeout forwards to its child)
  if [ -n "$measured_pid" ]; then
    for c in $(cat /proc/"$measured_pid"/task/*/children 2>/dev/null); do kill "$c" 2>/dev/null || true; done
  fi
  [ -z "$watcher_pid" ] || kill "$watcher_pid" 2>/dev/null || true
}
trap 'stop_measured; exit 130' INT TERM

measure() {  # name command... ; runs the command, samples its tree's memory
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

run_py() {  # round [bf16]: py_<r>.json, or pybf16_<r>.json under CPU autocast
  local r="$1" name="py_$1" extra=() rc=0
  [ "${2:-}" = bf16 ] && { name="pybf16_$1"; extra=(--bf16); }
  echo "== round $r: PyTorch${2:+ (bf16 autocast)}"
  local alloc=()
  # the values of src/runtime.rs (MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD)
  [ "$same_alloc" = 1 ] && alloc=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864)
  measure "$name" env "${alloc[@]}" "$py" "$script" run --upstream "$upstream" --model "$model" --data "$data" --tokenizer "$tokenizer" \
    --batch "$batch" --warmup "$warmup" --steps "$steps" --threads "$threads" --workers "$workers" "${extra[@]}" \
    --out "$res/$name.json" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "   FAILED (exit $rc; see $res/$name.log):" >&2; tail -n 5 "$res/$name.log" | sed 's/^/   | /' >&2
    rm -f "$res/$name.json"
  else
    tail -n 1 "$res/$name.log" | sed 's/^/   /'
  fi
}

precision=()
if [ "$bf16" = 1 ]; then precision=('precision="bf16"'); fi
run_rust() {
  local r="$1" rc=0 run="$res/run_$r"
  echo "== round $r: Rust"
  measure "rust_$r" "$bin" finetune vqa_vqa_rad --run-dir "$run" --config "$model/config.json" \
    --set "data_root=\"$data\"" "tokenizer=\"$tokenizer\"" "load_path=\"$model\"" test_only=true \
    per_gpu_batchsize="$batch" batch_size="$batch" max_steps="$total" log_every_n_steps=1 \
    num_workers="$workers" val_check_interval=1.0 "${precision[@]}" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "   FAILED (exit $rc; see $res/rust_$r.log):" >&2; tail -n 5 "$res/rust_$r.log" | sed 's/^/   | /' >&2
  elif "$py" "$script" rust-result --metrics "$run/metrics.jsonl" --run-config "$run/config.json" --batch "$batch" \
      --warmup "$warmup" --steps "$steps" --time-file "$res/rust_${r}_time.txt" --loadavg "$res/rust_$r.loadavg" \
      --out "$res/rust_$r.json" | sed 's/^/   /'; then
    rm -rf "$run/checkpoints"  # base: ~4 GB of weights and optimizer state per run
  fi
}

for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run_py "$r"; run_rust "$r"; else run_rust "$r"; run_py "$r"; fi
  if [ "$bf16" = 1 ]; then run_py "$r" bf16; fi
done

# 3. The table.
echo
"$py" "$script" report --results "$res" --out "$root/bench/finetune_latest.md" --command "$cmdline"
echo "(written to bench/finetune_latest.md)"
if [ "$notes" = 1 ]; then
  { echo; cat "$root/bench/finetune_latest.md"; } >>"$root/bench/NOTES.md"
  echo "(appended to bench/NOTES.md)"
fi
