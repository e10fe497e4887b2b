#!/usr/bin/env python3
"""Upstream's image path on one core: PIL open + convert("RGBA") + clip_transform(size)
(torchvision Resize bicubic, CenterCrop, RGB, ToTensor, Normalize), as BaseDataset does."""
import os
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from clip_transform import clip_transform  # noqa: E402

torch.set_num_threads(1)
folder, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
transform = clip_transform(size)
start = time.perf_counter()
n = 0
for _ in range(repeats):
    for f in files:
        transform(Image.open(f).convert("RGBA"))
        n += 1
seconds = time.perf_counter() - start
print(f"torchvision clip {size}px: {n} samples in {seconds:.3f} s on 1 thread(s): {n / seconds:.1f} samples/s")
