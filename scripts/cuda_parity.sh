#!/usr/bin/env bash
# Device check: run the parity suite on CUDA on a lent GPU machine.
# Build here first (no GPU needed):  bash scripts/cuda_parity.sh --build
# Then on the device, with dist/ carried:  bash scripts/cuda_parity.sh --run
# TF32 is off (NVIDIA_TF32_OVERRIDE=0 covers cuBLAS and cuDNN) and the tolerances are ×10.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --build)
    cargo build --release
    mkdir -p dist
    cp target/release/m3ae dist/
    echo "dist/ ready: $(du -sh dist | cut -f1)"
    ;;
  --run)
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    which cargo || echo "no Rust toolchain on the device (expected: we carry the binary)"
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
    export NVIDIA_TF32_OVERRIDE=0 TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
    # --cuda is an error without a usable GPU, so a pass here is a CUDA pass (the table says the device)
    ./dist/m3ae --cuda parity --tol-scale 10 parity/tiny-a parity/tiny-b parity/tiny-c
    ./dist/m3ae --cuda parity --tol-scale 10 --from-ckpt parity/tiny-a parity/tiny-b parity/tiny-c
    ;;
  *) echo "usage: $0 --build | --run" >&2; exit 2 ;;
esac
