#!/usr/bin/env bash
# Seeds the fuzz corpora from the repository's own fixtures (see fuzz/README.md):
#   fuzz/corpus/archive/      whole small `torch.save` files (zip container + pickle + storages)
#   fuzz/corpus/pickle/       the `data.pkl` record of every fixture and parity checkpoint
#   fuzz/corpus/safetensors/  small safetensors files for the target's model (fc.weight [4,3],
#                             fc.bias [4], steps i64 [2]) in f32, f16, f64, with a wrong shape,
#                             an integer weight, a missing and an extra key
#   fuzz/corpus/arrow/        the test suite's upstream-shaped Arrow files, the first byte
#                             choosing the file name the target opens them as
#   fuzz/corpus/image/        the test images (PNG, JPEG, TIFF, BMP) and pydicom's DICOM samples of
#                             every transfer syntax (native, deflated, RLE, JPEG, JPEG 2000, JPEG-LS)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fx="$root/tests/fixtures/checkpoint"
c="$root/fuzz/corpus"
mkdir -p "$c/archive" "$c/pickle" "$c/safetensors" "$c/arrow" "$c/image"
for f in "$fx"/*.pt "$fx"/roberta_tiny/pytorch_model.bin; do
  # archives under 256 KiB keep each execution fast; the parity .ckpt files are MBs
  [ "$(stat -c %s "$f")" -le 262144 ] && cp "$f" "$c/archive/$(basename "$(dirname "$f")")_$(basename "$f")"
done
for f in "$fx"/*.pt "$fx"/roberta_tiny/pytorch_model.bin "$root"/parity/*/model.ckpt; do
  name="$(basename "$(dirname "$f")")_$(basename "$f").pkl"
  # torch.save zips hold exactly one <archive>/data.pkl; the legacy fixture is not a zip
  rec="$(unzip -Z1 "$f" 2>/dev/null | grep '/data.pkl$' | head -1 || true)"
  [ -n "$rec" ] && unzip -p "$f" "$rec" >"$c/pickle/$name"
done
"$root/.venv/bin/python" - "$c" <<'PY'
import os, shutil, sys, torch
from pydicom.data import get_testdata_file
from safetensors.torch import save_file
c = sys.argv[1]
w, b, s = torch.randn(4, 3), torch.randn(4), torch.tensor([1, 2])
variants = {
    "f32": {"fc.weight": w, "fc.bias": b, "steps": s},
    "f16": {"fc.weight": w.half(), "fc.bias": b.half(), "steps": s},
    "f64": {"fc.weight": w.double(), "fc.bias": b.bfloat16(), "steps": s},
    "wrong_shape": {"fc.weight": w.t().contiguous(), "fc.bias": b, "steps": s},
    "int_weight": {"fc.weight": w.long(), "fc.bias": b, "steps": s},
    "missing": {"fc.weight": w},
    "extra": {"fc.weight": w, "fc.bias": b, "steps": s, "head.weight": torch.zeros(2, 2)},
}
for name, sd in variants.items():
    save_file(sd, os.path.join(c, "safetensors", name + ".safetensors"))
for name in ("MR_small.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "image_dfl.dcm",
             "MR_small_RLE.dcm", "SC_rgb_rle_32bit_2frame.dcm", "SC_rgb_small_odd_jpeg.dcm", "SC_rgb_jpeg.dcm",
             "SC_rgb_jpeg_gdcm.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "liver_1frame.dcm", "SC_ybr_full_422_uncompressed.dcm"):
    shutil.copy(get_testdata_file(name), os.path.join(c, "image", name))
PY
# the arrow target reads byte 0 as the file-name choice (index into its NAMES), then the file
i=0
for f in roco_train vqa_vqa_rad_train cls_melinda_train irtr_roco_test; do
  case $f in roco_train) k=0;; vqa_vqa_rad_train) k=2;; cls_melinda_train) k=4;; irtr_roco_test) k=5;; esac
  { printf "\\x0$k"; cat "$root/tests/fixtures/data/arrow/$f.arrow"; } >"$c/arrow/$f"
  i=$((i + 1))
done
for f in "$root"/tests/fixtures/data/images/*.{png,jpg,tif,bmp}; do
  cp "$f" "$c/image/"
done
ls "$c"/* | head -80
