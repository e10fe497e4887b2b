#!/usr/bin/env bash
# Installs libtorch 2.11.0 (PyPI's torch==2.11.0) and the Python packages of
# scripts/requirements.txt into a per-user cache keyed by the torch version, and links it
# as ./.venv and ./.libtorch. Every clone reuses the cache: only the first run downloads
# torch (~3 GB); a changed requirements file triggers a re-sync.
set -euo pipefail
TORCH_VERSION=2.11.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${M3AE_CACHE:-$HOME/.cache/m3ae}/torch-$TORCH_VERSION"
venv="$cache/venv"
reqs="$here/scripts/requirements.txt"
stamp="$venv/.m3ae-requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] syncing $venv with scripts/requirements.txt (the first run downloads torch==$TORCH_VERSION)" >&2
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$reqs"
  "$venv/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
  echo "$want" > "$stamp"
fi
# The JPEG decoder (libjpeg-turbo, as Pillow uses) builds from source with cmake and nasm.
if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
  echo "[setup] installing cmake and nasm" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq cmake nasm >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq cmake nasm >/dev/null; fi
fi
ln -sfn "$venv" "$here/.venv"
torch_dir="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
ln -sfn "$torch_dir" "$here/.libtorch"
echo "$venv"
