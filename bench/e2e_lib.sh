# The shell half of the end-to-end benchmarks (bench/finetune.sh, bench/pretrain.sh), sourced
# by them after they set: bench (their name), script (their Python side), dir and the
# defaults of the options below, rust_cmd (the m3ae subcommand), rust_set (its task-specific
# --set values), help_lines (how many lines of their header --help prints), and
# bench_option (a function for their own options: sets `used` to the words it took, or
# returns 1). bench/e2e_common.py is the Python half.
#
# Options common to both:
#   --image-size PX --batch B --warmup K --steps M   shape of the run
#   --threads T   intra-op threads of both sides (OMP/MKL_NUM_THREADS, torch.set_num_threads)
#   --workers W   loader workers of both sides, >= 1 (DataLoader worker processes; the port's
#                 loader threads)
#   --rounds R    PyTorch/Rust pairs, alternating which side goes first
#   --upstream P  upstream M3AE checkout, the folder holding m3ae/ (default $M3AE_UPSTREAM or
#                 /tmp/m3ae-upstream)
#   --dir D       work folder: data-n<N>/, model-…/, results-…/
#   --results D   results folder (default: under --dir, named after the run's shape)
#   --same-allocator  give the PyTorch side the glibc settings the Rust binary applies to
#                 itself (src/runtime.rs), as run.sh's option of that name does
#   --bf16        each round also runs the port with precision "bf16" (CPU autocast) and
#                 PyTorch under torch.autocast("cpu", dtype=torch.bfloat16) around upstream's
#                 training_step: the report adds three columns (port bf16, PyTorch bf16,
#                 upstream fp32)
#   --allow-slow-bf16  with --bf16 on a CPU without avx512_bf16 or amx_bf16: the port's flag
#                 of that name (it refuses bf16 there otherwise); both sides then emulate bf16
#   --profile     after the rounds, one more PyTorch process with one step under
#                 torch.profiler (results/profile_py.txt); untimed
#   --notes       also append the table to bench/NOTES.md
# Environment: PYTHON (default .venv/bin/python), M3AE_BIN (default target/release/m3ae;
#   copied into the results folder first, so a rebuild during the run changes nothing),
#   BENCH_TIMEOUT seconds per process (default 1800).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
upstream="${M3AE_UPSTREAM:-/tmp/m3ae-upstream}"
threads=2; workers=2; notes=0; same_alloc=0; bf16=0; profile=0; res=""; slow_bf16=()

e2e_parse() {
  cmdline="bench/$bench.sh $*"
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
      --results) res="$2"; shift 2 ;;
      --same-allocator) same_alloc=1; shift ;;
      --bf16) bf16=1; shift ;;
      --allow-slow-bf16) slow_bf16=(--allow-slow-bf16); shift ;;
      --profile) profile=1; shift ;;
      --notes) notes=1; shift ;;
      -h|--help) sed -n "2,${help_lines}p" "$0" | sed 's/^# \{0,1\}//'; sed -n '8,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) used=0; bench_option "$@" || { echo "$bench.sh: unknown argument $1" >&2; exit 2; }; shift "$used" ;;
    esac
  done
  [ "$workers" -ge 1 ] || { echo "$bench.sh: --workers must be >= 1 (the port always loads in worker threads)" >&2; exit 2; }
  py="${PYTHON:-$root/.venv/bin/python}"
  bin_src="${M3AE_BIN:-$root/target/release/m3ae}"
  tmo="${BENCH_TIMEOUT:-1800}"
  tokenizer="$root/parity/train-vqa/tokenizer"
  [ -d "$upstream/m3ae" ] || { echo "$bench.sh: no upstream checkout at $upstream (need $upstream/m3ae)" >&2; exit 2; }
  [ -x "$bin_src" ] || { echo "$bench.sh: no m3ae binary at $bin_src (cargo build --release)" >&2; exit 2; }
  [ -x /usr/bin/time ] || { echo "$bench.sh: needs GNU time at /usr/bin/time (peak RSS)" >&2; exit 2; }
  export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
}

# Data (kept between runs): enough train samples for warm-up + timed steps + one spare batch
# (no epoch ends inside the steps; the spare one feeds --profile), rounded up to 64 so nearby
# settings share the tables.
e2e_data() {  # what (for the message)
  local total=$((warmup + steps)) n
  n=$(( (total + 1) * batch ))
  n=$(( (n + 63) / 64 * 64 ))
  data="$dir/data-n$n"
  mkdir -p "$dir"
  if [ ! -s "$data/manifest.json" ]; then
    echo "== prepare data -> $data ($n train $1, 512 px JPEG)"
    "$py" "$script" prepare-data --out "$data" --train "$n" --eval "$batch"
  fi
}

e2e_model() {  # model folder, prepare-model arguments...
  model="$1"; shift
  if [ ! -s "$model/manifest.json" ]; then
    echo "== prepare model -> $model"
    "$py" "$script" prepare-model --upstream "$upstream" --out "$model" --image-size "$image_size" "$@"
  fi
}

e2e_results() {  # default folder name; meta arguments...
  local name="$1"; shift
  if [ -z "$res" ]; then
    res="$dir/$name"
    [ "$same_alloc" = 1 ] && res="$res-same-allocator"
    [ "$bf16" = 1 ] && res="$res-bf16"
  fi
  rm -rf "$res"
  mkdir -p "$res"
  bin="$res/m3ae"
  cp "$bin_src" "$bin"
  local flags=()
  [ "$same_alloc" = 1 ] && flags+=(--same-allocator)
  [ "$bf16" = 1 ] && flags+=(--bf16)
  "$py" "$script" meta --out "$res/meta.json" --image-size "$image_size" --threads "$threads" --workers "$workers" \
    --binary "$bin_src" "${flags[@]}" "$@"
  echo "== $(uptime)"
}

# Each side in its own process, /usr/bin/time for peak RSS, tree_rss.py beside it.
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

failed() {  # name rc
  echo "   FAILED (exit $2; see $res/$1.log):" >&2; tail -n 5 "$res/$1.log" | sed 's/^/   | /' >&2
}

run_py() {  # name round [--bf16] [--profile FILE]: py_<r>.json; pybf16_<r>.json under CPU autocast
  local name="$1" r="$2" alloc=() rc=0; shift 2
  echo "== round $r: PyTorch${1:+ ($*)}"
  # the values of src/runtime.rs (MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD)
  [ "$same_alloc" = 1 ] && alloc=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864)
  measure "$name" env "${alloc[@]}" "$py" "$script" run --upstream "$upstream" --model "$model" --data "$data" \
    --tokenizer "$tokenizer" --batch "$batch" --warmup "$warmup" --steps "$steps" --threads "$threads" \
    --workers "$workers" "$@" --out "$res/$name.json" || rc=$?
  if [ "$rc" != 0 ]; then failed "$name" "$rc"; rm -f "$res/$name.json"; else tail -n 1 "$res/$name.log" | sed 's/^/   /'; fi
}

run_rust() {  # name round [bf16]: rust_<r>.json; rustbf16_<r>.json with precision "bf16"
  local name="$1" r="$2" rc=0 flags=() precision=()
  [ "${3:-}" = bf16 ] && { flags=("${slow_bf16[@]}"); precision=('precision="bf16"'); }
  local run="$res/run_$name"
  echo "== round $r: Rust${3:+ (precision bf16)}"
  measure "$name" "$bin" "${flags[@]}" "${rust_cmd[@]}" --run-dir "$run" --config "$model/config.json" \
    --set "${rust_set[@]}" "data_root=\"$data\"" "tokenizer=\"$tokenizer\"" "load_path=\"$model\"" \
    per_gpu_batchsize="$batch" batch_size="$batch" max_steps="$((warmup + steps))" log_every_n_steps=1 \
    num_workers="$workers" val_check_interval=1.0 "${precision[@]}" || rc=$?
  if [ "$rc" != 0 ]; then
    failed "$name" "$rc"
  elif "$py" "$script" rust-result --metrics "$run/metrics.jsonl" --run-config "$run/config.json" --batch "$batch" \
      --warmup "$warmup" --steps "$steps" --time-file "$res/${name}_time.txt" --loadavg "$res/$name.loadavg" \
      --out "$res/$name.json" | sed 's/^/   /'; then
    rm -rf "$run/checkpoints"  # paper size: GBs of weights and optimizer state per run
  fi
}

# Rounds alternate which side goes first; with --bf16 the bf16 pair follows in the same order.
e2e_rounds() {
  local r
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then run_py "py_$r" "$r"; run_rust "rust_$r" "$r"; else run_rust "rust_$r" "$r"; run_py "py_$r" "$r"; fi
    [ "$bf16" = 1 ] || continue
    if [ $((r % 2)) = 1 ]; then
      run_py "pybf16_$r" "$r" --bf16; run_rust "rustbf16_$r" "$r" bf16
    else
      run_rust "rustbf16_$r" "$r" bf16; run_py "pybf16_$r" "$r" --bf16
    fi
  done
  if [ "$profile" = 1 ]; then run_py profile_py "+1" --profile "$res/profile_py.txt"; fi
}

e2e_report() {  # the table, to bench/<bench>_latest.md (and NOTES.md with --notes)
  echo
  "$py" "$script" report --results "$res" --out "$root/bench/${bench}_latest.md" --command "$cmdline"
  echo "(written to bench/${bench}_latest.md)"
  if [ "$notes" = 1 ]; then
    { echo; cat "$root/bench/${bench}_latest.md"; } >>"$root/bench/NOTES.md"
    echo "(appended to bench/NOTES.md)"
  fi
}
