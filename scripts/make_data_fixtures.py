#!/usr/bin/env python3
"""Writes the input-pipeline test fixtures under tests/fixtures/data/ (run from the repo root
with the project venv: .venv/bin/python scripts/make_data_fixtures.py).

- images/: small crops of the real images in parity/preprocess/ encoded as JPEG (4:2:0, 4:4:4,
  grey), PNG (8/16-bit, grey+alpha, palette with transparency), TIFF and BMP, each with
  `<file>.rgba` = Pillow's `Image.open(file).convert("RGBA").tobytes()` and their sizes in
  images/manifest.json.
- arrow/: upstream-shaped Arrow IPC files written like prepro/make_arrow.py (pandas frame ->
  pa.Table.from_pandas -> pa.RecordBatchFileWriter), one per dataset family, plus
  arrow/bad/ files with schema errors.
- images/clip_goldens.safetensors: upstream's clip_transform(S) (torchvision Resize bicubic,
  CenterCrop, RGB, ToTensor, Normalize) of each JPEG/TIFF/BMP fixture opened as RGBA, at
  S = 64 and 97, named `clip.<file>.<S>`.
- toy-bpe/: vocab.json + merges.txt of parity/preprocess/toy-roberta-tokenizer.json.
"""
import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

ROOT = os.path.join("tests", "fixtures", "data")
SRC = os.path.join("parity", "preprocess")


def crop(name, box):
    return Image.open(os.path.join(SRC, name)).convert("RGB").crop(box)


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_images():
    out = os.path.join(ROOT, "images")
    os.makedirs(out, exist_ok=True)
    ihc = crop("ihc.png", (200, 150, 297, 226))  # 97x76, odd sizes exercise chroma edges
    retina = Image.open(os.path.join(SRC, "microaneurysms.png")).convert("L").crop((10, 10, 70, 55))
    rgba = Image.open(os.path.join(SRC, "gradient_rgba.png")).convert("RGBA")
    arr16 = (np.asarray(retina, dtype=np.uint16) * 257 + np.arange(45)[:, None].astype(np.uint16))
    files = {
        "ihc_420.jpg": encode(ihc, "JPEG", quality=85),
        "ihc_444.jpg": encode(ihc, "JPEG", quality=92, subsampling=0),
        "retina_grey.jpg": encode(retina, "JPEG", quality=90),
        "ihc.png": encode(ihc, "PNG"),
        "retina_la.png": encode(Image.merge("LA", [retina, retina.point(lambda v: 255 - v)]), "PNG"),
        "gradient_palette.png": encode(rgba.convert("RGB").quantize(16), "PNG", transparency=3),
        "retina16.png": encode(Image.fromarray(arr16 // 200), "PNG"),
        "ihc.tif": encode(ihc, "TIFF"),
        "ihc.bmp": encode(ihc, "BMP"),
    }
    manifest = {}
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        img = Image.open(io.BytesIO(data))
        manifest[name] = {"size": list(img.size), "pil_mode": img.mode}
        with open(os.path.join(out, name + ".rgba"), "wb") as f:
            f.write(img.convert("RGBA").tobytes())
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    write_clip_goldens(out, [n for n in files if not n.endswith(".png")])


def write_clip_goldens(out, names):
    from safetensors.torch import save_file

    from clip_transform import clip_transform

    tensors = {}
    for size in (64, 97):
        transform = clip_transform(size)
        for name in names:
            tensors[f"clip.{name}.{size}"] = transform(Image.open(os.path.join(out, name)).convert("RGBA")).contiguous()
    save_file(tensors, os.path.join(out, "clip_goldens.safetensors"))


def small_images():
    """Real image bytes for the tables: PNG and JPEG crops of ihc.png / microaneurysms.png."""
    ihc = Image.open(os.path.join(SRC, "ihc.png")).convert("RGB")
    retina = Image.open(os.path.join(SRC, "microaneurysms.png")).convert("L")
    return [
        encode(ihc.crop((0, 0, 40, 30)), "PNG"),
        encode(ihc.crop((300, 300, 348, 332)), "JPEG", quality=90),
        encode(retina.crop((20, 20, 52, 60)), "PNG"),
        encode(ihc.crop((100, 400, 136, 436)), "JPEG", quality=90),
    ]


def write_table(path, frame):
    table = pa.Table.from_pandas(frame)
    with pa.OSFile(path, "wb") as sink:
        with pa.RecordBatchFileWriter(sink, table.schema) as writer:
            writer.write_table(table)


def write_arrow():
    out = os.path.join(ROOT, "arrow")
    os.makedirs(os.path.join(out, "bad"), exist_ok=True)
    imgs = small_images()
    cols = ["image", "caption", "image_id", "split"]
    captions = [
        ["Axial CT of the chest shows a nodule in the right upper lobe.", "Chest CT, axial view."],
        [""],
        ["MRI T2-weighted: hyperintense lesion (arrow). " * 8],
        ["Ultrasound of the liver."],
    ]
    rows = [[imgs[i], captions[i], f"img{i}.png", "train"] for i in range(4)]
    write_table(os.path.join(out, "roco_train.arrow"), pd.DataFrame(rows, columns=cols))
    # Unreadable images: a truncated PNG at row 1 and bytes that are no image at row 2.
    val = [[imgs[0], ["a readable image"], "v0", "val"],
           [imgs[2][: len(imgs[2]) // 2], ["a truncated png"], "v1", "val"],
           [b"not an image at all", ["garbage bytes"], "v2", "val"]]
    write_table(os.path.join(out, "roco_val.arrow"), pd.DataFrame(val, columns=cols))
    irtr = [[imgs[i], [captions[i][0]], f"img{i}.png", "test"] for i in (0, 2, 3)]
    write_table(os.path.join(out, "irtr_roco_test.arrow"), pd.DataFrame(irtr, columns=cols))

    vqa_cols = ["image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                "question_id", "answer_type", "split"]
    vqa = [
        [imgs[0], ["is there a nodule?", "where is the lesion?"], [["yes"], ["right upper lobe"]],
         [[0], [3]], [[1.0], [1.0]], "img0.png", [11, 12], [0, 1], "train"],
        [imgs[1], ["what modality is this?"], [["ct"]], [[2]], [[1.0]], "img1.jpg", [13], [1], "train"],
    ]
    write_table(os.path.join(out, "vqa_vqa_rad_train.arrow"), pd.DataFrame(vqa, columns=vqa_cols))

    cls_cols = ["image", "caption", "image_id", "i_meth", "p_meth", "i_meth_label", "p_meth_label", "split"]
    cls = [
        [imgs[1], ["Fluorescence micrograph of stained cells."], "c0", ["microscopy"], ["fluorescence"], [1], [4], "train"],
        [imgs[3], ["Western blot of lysates.", "Blot, lane 2."], "c1", ["molecular", "molecular"],
         ["western blot", "western blot"], [0, 0], [2, 2], "train"],
    ]
    write_table(os.path.join(out, "cls_melinda_train.arrow"), pd.DataFrame(cls, columns=cls_cols))

    # Schema errors: captions as plain strings; a VQA file without answer_scores.
    bad = [[imgs[0], "a plain string caption", "b0", "train"]]
    write_table(os.path.join(out, "bad", "roco_train.arrow"), pd.DataFrame(bad, columns=cols))
    write_table(os.path.join(out, "bad", "vqa_slack_train.arrow"),
                pd.DataFrame([row[:4] + row[5:] for row in vqa],
                             columns=[c for c in vqa_cols if c != "answer_scores"]))


def write_toy_bpe():
    out = os.path.join(ROOT, "toy-bpe")
    os.makedirs(out, exist_ok=True)
    model = json.load(open(os.path.join(SRC, "toy-roberta-tokenizer.json")))["model"]
    with open(os.path.join(out, "vocab.json"), "w") as f:
        json.dump(model["vocab"], f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for merge in model["merges"]:
            f.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")


if __name__ == "__main__":
    write_images()
    write_arrow()
    write_toy_bpe()
