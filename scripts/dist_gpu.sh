#!/usr/bin/env bash
# Device check: a few data-parallel VQA steps on NCCL on a lent GPU machine.
# Build here first (no GPU needed; fetches the two CUDA header wheels NCCL's header needs):
#   bash scripts/dist_gpu.sh --build
# Then on the device, with dist/ carried:  bash scripts/dist_gpu.sh --run
# It runs one process without a group, world size 1 on NCCL, and world size 2 (--nproc 2)
# when the machine has 2 GPUs, and checks that their losses agree (TF32 off).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --build)
    hdr="${M3AE_CACHE:-$HOME/.cache/m3ae}/cuda-headers-13.0"
    if [ ! -f "$hdr/nvidia/cu13/include/crt/host_defines.h" ]; then
      .venv/bin/pip install --quiet --no-deps --target "$hdr" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
    fi
    M3AE_CUDA_INCLUDE="$hdr/nvidia/cu13/include:$hdr/nvidia/cu13/include/cccl" cargo build --release
    nm -C target/release/m3ae | grep -q 'c10d::ProcessGroupNCCL::ProcessGroupNCCL' || { echo "built without NCCL" >&2; exit 1; }
    mkdir -p dist
    cp target/release/m3ae dist/
    echo "dist/ ready (NCCL): $(du -sh dist | cut -f1)"
    ;;
  --run)
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
    export NVIDIA_TF32_OVERRIDE=0 TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0
    gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
    out=$(mktemp -d)
    v=parity/train-vqa
    args=(--cuda finetune vqa_vqa_rad --config $v/config.json --set data_root=\"$v/data\" tokenizer=\"$v/tokenizer\"
          load_path=\"$v/model\" test_only=true per_gpu_batchsize=5 batch_size=10 max_steps=3 log_every_n_steps=1 dist_timeout_s=60)
    timeout 300 ./dist/m3ae "${args[@]}" --run-dir "$out/plain"
    MASTER_ADDR=127.0.0.1 MASTER_PORT=29533 RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 timeout 300 ./dist/m3ae "${args[@]}" --run-dir "$out/world1"
    runs=(plain world1)
    if [ "$gpus" -ge 2 ]; then
      timeout 300 ./dist/m3ae "${args[@]}" --run-dir "$out/world2" --nproc 2
      runs+=(world2)
    fi
    python3 - "$out" "${runs[@]}" <<'EOF'
import json, sys
out, runs = sys.argv[1], sys.argv[2:]
loss = {r: [l["vqa/train/loss"] for l in map(json.loads, open(f"{out}/{r}/metrics.jsonl")) if "vqa/train/loss" in l] for r in runs}
for r in runs:
    print(r, loss[r])
ref = loss["plain"]
bad = [r for r in runs if len(loss[r]) != 3 or any(abs(a - b) > 1e-4 * abs(a) for a, b in zip(ref, loss[r]))]
sys.exit(f"losses differ: {bad}" if bad else 0)
EOF
    echo "NCCL data parallel: ${runs[*]} agree"
    ;;
  *) echo "usage: $0 --build | --run" >&2; exit 2 ;;
esac
