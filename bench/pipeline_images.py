#!/usr/bin/env python3
"""Writes the benchmark images: N JPEG (quality 90, 4:2:0) and PNG files cut and rescaled from
the real images in parity/preprocess/, at ROCO-like sizes (about 400-700 px per side)."""
import os
import random
import sys

from PIL import Image

out, count = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
rng = random.Random(0)
sources = [Image.open(os.path.join("parity", "preprocess", n)).convert("RGB") for n in ("ihc.png", "microaneurysms.png")]
for i in range(count):
    src = sources[i % len(sources)]
    w, h = rng.randint(400, 700), rng.randint(400, 700)
    img = src.resize((w, h), Image.BICUBIC)
    if i % 4 == 3:
        img.save(os.path.join(out, f"{i:03d}.png"))
    else:
        img.save(os.path.join(out, f"{i:03d}.jpg"), quality=90)
