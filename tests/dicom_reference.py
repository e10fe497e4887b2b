"""Reference arrays for tests/dicom.rs, from pydicom (with Pillow, as scripts/requirements.txt
installs them): for every DICOM file of a corpus, pydicom's `pixel_array` and the model-input
rendering of README "DICOM" written here with pydicom's LUT functions and numpy.

usage: python dicom_reference.py CORPUS_DIR OUT_DIR

OUT_DIR/manifest.json lists, per file (path relative to CORPUS_DIR, sorted): whether pydicom
decoded it, its error otherwise, transfer syntax, frames, rows, columns, samples. For file
number i that pydicom decodes: OUT_DIR/i.pixels holds every frame's samples as little-endian
int64 (frames x rows x columns x samples), OUT_DIR/i.rgb every frame rendered to 8-bit RGB.
"""
import json
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut

warnings.filterwarnings("ignore")


def to_u8(y):
    """clamp to 0..255, then floor(y + 0.5): the Rust side's rounding."""
    return np.floor(np.clip(y, 0.0, 255.0) + 0.5).astype(np.uint8)


def first(value):
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def voi(x, c, w, function):
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        if w <= 0:
            return np.where(x <= c, 0.0, 255.0)
        return ((x - c) / w + 0.5) * 255.0
    if w <= 1:
        return np.where(x <= c - 0.5, 0.0, 255.0)
    return ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0


def render(ds, frame):
    """One frame of pixel_array (YBR already converted to RGB by pydicom) to RGB uint8."""
    pi = str(ds.PhotometricInterpretation).strip()
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        x = apply_modality_lut(frame, ds).astype(np.float64)
        if "VOILUTSequence" in ds:
            item = ds.VOILUTSequence[0]
            n, first_map, bits = (int(v) for v in item.LUTDescriptor)
            raw = item["LUTData"].value
            data = np.frombuffer(raw, "<u2") if isinstance(raw, bytes) else np.asarray(raw)
            idx = np.clip(np.floor(x).astype(np.int64) - first_map, 0, len(data) - 1)
            grey = to_u8(data[idx].astype(np.float64) / float(2**bits - 1) * 255.0)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
            grey = to_u8(voi(x, first(ds.WindowCenter), first(ds.WindowWidth), function))
        else:
            lo, hi = x.min(), x.max()
            grey = to_u8((x - lo) / (hi - lo) * 255.0) if hi > lo else np.zeros(x.shape, np.uint8)
        if pi == "MONOCHROME1":
            grey = 255 - grey
        return np.stack([grey] * 3, axis=-1)
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
    shift = max(int(ds.BitsStored) - 8, 0)
    v = np.maximum(frame.astype(np.int64), 0) >> shift
    return np.minimum(v, 255).astype(np.uint8)


def main(corpus, out):
    files = []
    for root, _, names in os.walk(corpus):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                head = f.read(132)
            if n.endswith(".dcm") or head[128:132] == b"DICM":
                files.append(os.path.relpath(p, corpus))
    files.sort()
    manifest = []
    for i, rel in enumerate(files):
        entry = {"file": rel, "decoded": False}
        try:
            ds = pydicom.dcmread(os.path.join(corpus, rel))
            entry["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
            arr = ds.pixel_array
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            spp = int(ds.get("SamplesPerPixel", 1))
            arr = arr.reshape((frames, int(ds.Rows), int(ds.Columns), spp))
            arr.astype("<i8").tofile(os.path.join(out, f"{i}.pixels"))
            entry.update(decoded=True, frames=frames, rows=int(ds.Rows), columns=int(ds.Columns), samples=spp)
            rgb = np.stack([render(ds, f[..., 0] if spp == 1 else f) for f in arr])
            rgb.astype(np.uint8).tofile(os.path.join(out, f"{i}.rgb"))
            entry["rendered"] = True
        except Exception as e:  # noqa: BLE001 - the table records why pydicom could not
            entry["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        manifest.append(entry)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"pydicom": pydicom.__version__, "files": manifest}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
