#!/usr/bin/env bash
# Installs libtorch 2.11.0 (PyPI's torch==2.11.0) plus the Python tools our scripts use,
# into a per-user cache keyed by the torch version, and links it as ./.venv.
# Every clone reuses the cache, so only the first run downloads (~3 GB).
set -euo pipefail
TORCH_VERSION=2.11.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${M3AE_CACHE:-$HOME/.cache/m3ae}/torch-$TORCH_VERSION"
venv="$cache/venv"
stamp="$venv/.m3ae-ready"
if [ ! -f "$stamp" ]; then
  echo "[setup] creating $venv (first run downloads torch==$TORCH_VERSION from PyPI)" >&2
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION" numpy safetensors pillow pyarrow pandas "torchvision==0.26.0" pydicom
  "$venv/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
  touch "$stamp"
fi
ln -sfn "$venv" "$here/.venv"
torch_dir="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
ln -sfn "$torch_dir" "$here/.libtorch"
echo "$venv"
