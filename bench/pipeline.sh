#!/usr/bin/env bash
# Image pipeline throughput at 288 px, one core each, same images, same run:
# the Rust pipeline (`m3ae data bench`) vs upstream's PIL + torchvision clip_transform.
# Usage: bench/pipeline.sh [IMAGES=48] [REPEATS=3]   (run from anywhere; builds release first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
count="${1:-48}"
repeats="${2:-3}"
size=288
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
cargo build --release --quiet
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
.venv/bin/python bench/pipeline_images.py "$dir" "$count"
pin() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
# Warm the page cache, then measure each side on core 0.
cat "$dir"/* >/dev/null
rust="$(pin "$CARGO_TARGET_DIR/release/m3ae" data bench "$dir" --size "$size" --threads 1 --repeats "$repeats")"
py="$(pin .venv/bin/python bench/pipeline_torchvision.py "$dir" "$size" "$repeats")"
echo "$rust"
echo "$py"
rate() { sed -E 's/.*: ([0-9.]+) samples\/s$/\1/' <<<"$1"; }
awk -v r="$(rate "$rust")" -v p="$(rate "$py")" 'BEGIN { printf "ratio rust/torchvision per core: %.2fx\n", r / p }'
