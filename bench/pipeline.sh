#!/usr/bin/env bash
# Image pipeline throughput at 288 px, one core each, same images, same run:
# the Rust pipeline (`m3ae data bench`) vs upstream's PIL + torchvision clip_transform.
# Both sides run ROUNDS times, alternating, and the best rate of each is compared, so that a
# transient load on the core penalises neither side.
# Usage: bench/pipeline.sh [IMAGES=48] [REPEATS=3] [ROUNDS=3]   (builds release first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
count="${1:-48}"
repeats="${2:-3}"
rounds="${3:-3}"
size=288
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
cargo build --release --quiet
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
.venv/bin/python bench/pipeline_images.py "$dir" "$count"
pin() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
# Warm the page cache, then measure each side on core 0.
cat "$dir"/* >/dev/null
rate() { sed -E 's/.*: ([0-9.]+) samples\/s$/\1/' <<<"$1"; }
best_rust=0
best_py=0
for _ in $(seq "$rounds"); do
  rust="$(pin "$CARGO_TARGET_DIR/release/m3ae" data bench "$dir" --size "$size" --threads 1 --repeats "$repeats")"
  py="$(pin .venv/bin/python bench/pipeline_torchvision.py "$dir" "$size" "$repeats")"
  echo "$rust"
  echo "$py"
  best_rust="$(awk -v a="$best_rust" -v b="$(rate "$rust")" 'BEGIN { print (b > a ? b : a) }')"
  best_py="$(awk -v a="$best_py" -v b="$(rate "$py")" 'BEGIN { print (b > a ? b : a) }')"
done
awk -v r="$best_rust" -v p="$best_py" 'BEGIN { printf "best of each: rust %.1f, torchvision %.1f samples/s per core; ratio %.2fx\n", r, p, r / p }'
