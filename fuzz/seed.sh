#!/usr/bin/env bash
# Seeds the fuzz corpora from the repository's own checkpoint fixtures:
#   fuzz/corpus/archive/  whole small `torch.save` files (zip container + pickle + storages)
#   fuzz/corpus/pickle/   the `data.pkl` record of every fixture and parity checkpoint
# Then: cargo +nightly fuzz run pickle -- -max_total_time=120   (see fuzz/README.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fx="$root/tests/fixtures/checkpoint"
mkdir -p "$root/fuzz/corpus/archive" "$root/fuzz/corpus/pickle"
for f in "$fx"/*.pt "$fx"/roberta_tiny/pytorch_model.bin; do
  # archives under 256 KiB keep each execution fast; the parity .ckpt files are MBs
  [ "$(stat -c %s "$f")" -le 262144 ] && cp "$f" "$root/fuzz/corpus/archive/$(basename "$(dirname "$f")")_$(basename "$f")"
done
for f in "$fx"/*.pt "$fx"/roberta_tiny/pytorch_model.bin "$root"/parity/*/model.ckpt; do
  name="$(basename "$(dirname "$f")")_$(basename "$f").pkl"
  # torch.save zips hold exactly one <archive>/data.pkl; the legacy fixture is not a zip
  rec="$(unzip -Z1 "$f" 2>/dev/null | grep '/data.pkl$' | head -1 || true)"
  [ -n "$rec" ] && unzip -p "$f" "$rec" >"$root/fuzz/corpus/pickle/$name"
done
ls -l "$root/fuzz/corpus/archive" "$root/fuzz/corpus/pickle"
