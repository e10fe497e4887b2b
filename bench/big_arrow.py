"""Writes an upstream-shaped pre-training split of a given size for the memory benchmark
(bench/data_rss.sh): `roco_train.arrow` and a small `roco_val.arrow` in upstream's schema
(image bytes, caption list, image_id, split), the images incompressible 512x512 JPEGs of
noise (~0.45 MB each), in record batches of 256 rows as a pandas-written table can have.

    python bench/big_arrow.py OUT_DIR --gb 2
"""
import argparse
import io
import os

import numpy as np
import pyarrow as pa
from PIL import Image


def jpeg(rng):
    pixels = rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write(path, n, rng, schema):
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, n, 256):
            rows = range(start, min(n, start + 256))
            writer.write_batch(pa.record_batch({
                "image": [jpeg(rng) for _ in rows],
                "caption": [[f"Axial CT image {i} shows a nodule in the right lower lobe."] for i in rows],
                "image_id": [f"img{i}.jpg" for i in rows],
                "split": ["train"] * len(rows),
            }, schema=schema))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gb", type=float, default=2.0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    schema = pa.schema([("image", pa.binary()), ("caption", pa.list_(pa.string())), ("image_id", pa.string()), ("split", pa.string())])
    per = len(jpeg(rng))
    n = int(args.gb * 1e9 / per) + 1
    write(os.path.join(args.out, "roco_train.arrow"), n, rng, schema)
    write(os.path.join(args.out, "roco_val.arrow"), 64, rng, schema)
    size = os.path.getsize(os.path.join(args.out, "roco_train.arrow"))
    print(f"wrote {n} images, roco_train.arrow {size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
