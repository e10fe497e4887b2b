#!/usr/bin/env bash
# Benchmark driver: the Rust port (`m3ae bench`) against upstream M3AE's PyTorch modules at the
# paper's full pre-training size, workload by workload, each side in its own process.
#
# Usage: bench/run.sh [--upstream PATH] [--dir DIR] [--quick] [--workloads "infer train ..."]
#                     [--threads N] [--all] [--bf16] [--pretrain-args "..."] [--finetune-args "..."]
#   --upstream   upstream M3AE checkout, the folder holding m3ae/ (default $M3AE_UPSTREAM or
#                /tmp/m3ae-upstream)
#   --dir        bench folder: `prepare` output + results/ (default /tmp/m3ae-bench)
#   --quick      1 timed run per workload (matmul 3), retrieval on 2 of the 8 images (PyTorch)
#   --workloads  subset, in the order given (default: infer train retrieval load matmul);
#                also pretrain (bench/pretrain.sh), finetune (bench/finetune.sh --size base)
#                and pipeline (bench/pipeline.sh), each its own benchmark with its own table,
#                summarised in this one
#   --all        every workload: infer train retrieval load matmul pretrain finetune pipeline
#   --bf16       pretrain and finetune also in bf16 on both sides (their --bf16)
#   --pretrain-args, --finetune-args  more options for those two (e.g. "--rounds 3 --steps 2")
#   --threads    intra-op threads of both sides (default 2; exported as OMP/MKL_NUM_THREADS
#                and passed to the Python side as torch.set_num_threads)
#   --same-allocator  give the PyTorch side the glibc settings the Rust binary applies to
#                itself (src/runtime.rs) through MALLOC_* variables: isolates what the
#                allocator is worth from what the port does
# Environment: PYTHON (default .venv/bin/python), M3AE_BIN (default target/release/m3ae),
#   BENCH_TIMEOUT seconds per process (default 1800).
# Writes DIR/results/{py,rust}_<workload>.{json,log,loadavg} and the Markdown table to
# bench/latest.md (also printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
upstream="${M3AE_UPSTREAM:-/tmp/m3ae-upstream}"
dir=/tmp/m3ae-bench
quick=0
workloads="infer train retrieval load matmul"
threads=2
same_alloc=0
e2e_flags=(); pretrain_args=""; finetune_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --upstream) upstream="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --workloads) workloads="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --same-allocator) same_alloc=1; shift ;;
    --all) workloads="infer train retrieval load matmul pretrain finetune pipeline"; shift ;;
    --bf16) e2e_flags+=(--bf16); shift ;;
    --pretrain-args) pretrain_args="$2"; shift 2 ;;
    --finetune-args) finetune_args="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-$root/.venv/bin/python}"
bin="${M3AE_BIN:-$root/target/release/m3ae}"
tmo="${BENCH_TIMEOUT:-1800}"
script="$root/bench/upstream_bench.py"
[ -d "$upstream/m3ae" ] || { echo "run.sh: no upstream checkout at $upstream (need $upstream/m3ae)" >&2; exit 2; }
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"

# 1. Inputs, weights and checkpoint, once.
need=(config.json state_dict.safetensors inputs.safetensors model.ckpt)
missing=0
for f in "${need[@]}"; do [ -s "$dir/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  echo "== prepare -> $dir"
  "$py" "$script" prepare --upstream "$upstream" --dir "$dir"
else
  echo "== prepare: $dir already has ${need[*]}; skipped"
fi

[ "$same_alloc" = 1 ] && e2e_flags+=(--same-allocator)

# 2. Each workload on both sides, alternating which side goes first; the end-to-end ones
# through their own scripts (which alternate within their rounds), into results/<name>.
res="$dir/results"
rm -rf "$res"
mkdir -p "$res"
have_rust=0
if [ -x "$bin" ] && "$bin" bench --help >/dev/null 2>&1; then
  have_rust=1
else
  echo "== WARNING: $bin has no 'bench' subcommand: PyTorch side only" >&2
fi

repeats_for() {  # workload -> timed runs
  if [ "$quick" = 1 ]; then
    case "$1" in matmul) echo 3 ;; *) echo 1 ;; esac
  else
    case "$1" in load|infer) echo 3 ;; train) echo 2 ;; retrieval) echo 1 ;; matmul) echo 5 ;; esac
  fi
}

run_side() {  # side workload repeats
  local side="$1" w="$2" n="$3" rc=0
  local out="$res/${side}_$w.json" log="$res/${side}_$w.log"
  cut -d' ' -f1 /proc/loadavg >"$res/${side}_$w.loadavg"
  if [ "$side" = py ]; then
    local extra=()
    if [ "$w" = retrieval ] && [ "$quick" = 1 ]; then extra=(--pairs-images 2); fi
    echo "== $w: PyTorch (repeats $n${extra[*]:+, ${extra[*]}})"
    local alloc=()
    # the values of src/runtime.rs (MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD)
    [ "$same_alloc" = 1 ] && alloc=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864)
    timeout "$tmo" env "${alloc[@]}" "$py" "$script" run --upstream "$upstream" --dir "$dir" --workload "$w" \
      --repeats "$n" --threads "$threads" --out "$out" "${extra[@]}" >"$log" 2>&1 || rc=$?
  else
    [ "$have_rust" = 1 ] || return 0
    echo "== $w: Rust (repeats $n)"
    timeout "$tmo" "$bin" bench --dir "$dir" --workload "$w" --repeats "$n" --out "$out" >"$log" 2>&1 || rc=$?
  fi
  if [ "$rc" != 0 ]; then
    echo "   FAILED (exit $rc; see $log):" >&2
    tail -n 5 "$log" | sed 's/^/   | /' >&2
    rm -f "$out"
  elif [ -s "$out" ]; then
    "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("   %.3f s median, peak RSS %.0f MB" % (d["seconds"], d["peak_rss_mb"]))' "$out" || true
  fi
}

run_e2e() {  # workload: bench/<script> into results/<workload>, output to results/<workload>.log
  local w="$1" rc=0 args=()
  echo "== $w (bench/$w.sh; its log: $res/$w.log)"
  case "$w" in
    # shellcheck disable=SC2206  # the option strings are split on purpose
    pretrain) args=(--upstream "$upstream" --threads "$threads" --results "$res/pretrain" "${e2e_flags[@]}" $pretrain_args) ;;
    # shellcheck disable=SC2206
    finetune) args=(--size base --upstream "$upstream" --threads "$threads" --results "$res/finetune" "${e2e_flags[@]}" $finetune_args) ;;
  esac
  M3AE_BIN="$bin" timeout "$tmo" bash "$root/bench/$w.sh" "${args[@]}" >"$res/$w.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { echo "   FAILED (exit $rc; see $res/$w.log):" >&2; tail -n 5 "$res/$w.log" | sed 's/^/   | /' >&2; }
  grep -E "^   (PyTorch|Rust)|best of each" "$res/$w.log" | sed 's/^ */   /' || true
}

i=0
for w in $workloads; do
  case "$w" in pretrain|finetune|pipeline) run_e2e "$w"; continue ;; esac
  n="$(repeats_for "$w")"
  if [ "$w" = retrieval ]; then  # score files of this run only
    rm -f "$dir/retrieval_scores_upstream.safetensors" "$dir/retrieval_scores_rust.safetensors"
  fi
  if [ $((i % 2)) = 0 ]; then
    run_side py "$w" "$n"; run_side rust "$w" "$n"
  else
    run_side rust "$w" "$n"; run_side py "$w" "$n"
  fi
  i=$((i + 1))
done

# 3. The table.
echo
report=(report --dir "$dir" --results "$res" --out "$root/bench/latest.md")
[ "$quick" = 1 ] && report+=(--quick)
[ -d "$res/pretrain" ] && report+=(--pretrain-results "$res/pretrain")
[ -d "$res/finetune" ] && report+=(--finetune-results "$res/finetune")
[ -s "$res/pipeline.log" ] && report+=(--pipeline-log "$res/pipeline.log")
"$py" "$script" "${report[@]}"
echo "(written to bench/latest.md)"
