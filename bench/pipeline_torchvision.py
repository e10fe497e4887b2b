#!/usr/bin/env python3
"""Upstream's image path on one core: PIL open + convert("RGBA") + clip_transform(size)
(torchvision Resize bicubic, CenterCrop, RGB, ToTensor, Normalize), as BaseDataset does."""
import os
import sys
import time

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor

torch.set_num_threads(1)
folder, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
transform = Compose([
    Resize(size, interpolation=Image.BICUBIC),
    CenterCrop(size),
    lambda image: image.convert("RGB"),
    ToTensor(),
    Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
])
start = time.perf_counter()
n = 0
for _ in range(repeats):
    for f in files:
        transform(Image.open(f).convert("RGBA"))
        n += 1
seconds = time.perf_counter() - start
print(f"torchvision clip {size}px: {n} samples in {seconds:.3f} s on 1 thread(s): {n / seconds:.1f} samples/s")
