"""Upstream's `clip_transform(size)` (m3ae/transforms), rebuilt from torchvision so our scripts
need no upstream checkout: Resize bicubic, CenterCrop, RGB, ToTensor, CLIP Normalize. Applied
to `Image.open(f).convert("RGBA")`, as upstream's BaseDataset opens images."""
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_transform(size):
    return Compose([
        Resize(size, interpolation=Image.BICUBIC),
        CenterCrop(size),
        lambda image: image.convert("RGB"),
        ToTensor(),
        Normalize(CLIP_MEAN, CLIP_STD),
    ])
