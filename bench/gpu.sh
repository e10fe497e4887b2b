#!/usr/bin/env bash
# Device check for issue 5's GPU row: infer (batch 4) and retrieval on one CUDA card, the Rust
# port in bf16 with fused SDPA against upstream's PyTorch modules eagerly in bf16, plus fp32
# on both sides, same card, same run. Prints the JSON of each run and a table.
#
#   bash bench/gpu.sh --build   # here (no GPU): binary, upstream checkout and the Python
#                               # wheels the device may lack, into dist/ (about 45 MB)
#   bash bench/gpu.sh --run     # on the device, with dist/ carried (run tool: carry ["dist"])
#
# The device has torch 2.11.0+cu130 but no network: transformers and einops come from
# dist/wheels. The model weights are made there by `upstream_bench.py prepare` (1.6 GB, ~1 min).
# Budget: prepare ≈ 60 s, each side ≈ 20–40 s per workload (GPU warm-up included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case "${1:-}" in
  --build)
    cargo build --release
    mkdir -p dist/wheels
    cp target/release/m3ae dist/
    upstream="${M3AE_UPSTREAM:-/tmp/m3ae-upstream}"
    [ -d "$upstream/m3ae" ] || { echo "gpu.sh: no upstream checkout at $upstream" >&2; exit 2; }
    rm -rf dist/upstream && cp -r "$upstream" dist/upstream
    .venv/bin/python -m pip download --quiet --no-deps -d dist/wheels \
      transformers==4.57.6 einops==0.8.1 tokenizers huggingface_hub safetensors regex pyyaml tqdm filelock fsspec
    echo "dist/ ready: $(du -sh dist | cut -f1)"
    ;;
  --run)
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    py=python3
    torch_lib=$($py -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
    $py -c 'import transformers, einops' 2>/dev/null || $py -m pip install --quiet --no-index --find-links dist/wheels transformers einops
    dir=/tmp/m3ae-bench-gpu
    [ -s "$dir/state_dict.safetensors" ] || $py bench/upstream_bench.py prepare --upstream dist/upstream --dir "$dir"
    out=dist/gpu-results && mkdir -p "$out"
    for w in infer retrieval; do
      for prec in fp32 bf16; do
        flag=(); [ "$prec" = bf16 ] && flag=(--bf16)
        $py bench/upstream_bench.py run --upstream dist/upstream --dir "$dir" --workload "$w" --device cuda "${flag[@]}" \
          --repeats 5 --warmup 2 --out "$out/py_${w}_$prec.json" >/dev/null
        ./dist/m3ae --cuda bench --dir "$dir" --workload "$w" "${flag[@]}" --repeats 5 --out "$out/rust_${w}_$prec.json" >/dev/null
      done
    done
    $py - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
print("| workload | dtype | PyTorch eager s | Rust s | ratio |\n|---|---|---|---|---|")
for w in ("infer", "retrieval"):
    for prec in ("fp32", "bf16"):
        p = json.load(open(os.path.join(out, f"py_{w}_{prec}.json")))
        r = json.load(open(os.path.join(out, f"rust_{w}_{prec}.json")))
        print(f"| {w} | {prec} | {p['seconds']:.4f} | {r['seconds']:.4f} | {p['seconds'] / r['seconds']:.2f}x |")
PY
    ;;
  *) echo "usage: $0 --build | --run" >&2; exit 2 ;;
esac
