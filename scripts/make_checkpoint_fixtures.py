"""Writes the small checkpoint fixtures of tests/checkpoint.rs (tests/fixtures/checkpoint/).

Run with the project's venv: `.venv/bin/python scripts/make_checkpoint_fixtures.py`.
Everything is seeded, so reruns give the same tensors. Files:
  tensors.pt         torch.save of views: offsets, transposes, expanded strides, every dtype
  clip_tiny.pt       torch.jit.save of a tiny module shaped like OpenAI CLIP (width 64, 2 visual blocks, 48 px)
  roberta_tiny/      config.json + pytorch_model.bin with HF RoBERTa key names (`roberta.` prefix, lm_head)
  legacy.pt          torch.save(..., _use_new_zipfile_serialization=False)
  os_system.pkl      a pickle whose REDUCE would call os.system (must never run)
"""
import os
import pickle
import json
from collections import OrderedDict

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "checkpoint")


def tensors():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    sd = OrderedDict()
    sd["f32"] = base
    sd["f32_transposed"] = base.t()  # strides (1, 8)
    sd["f32_offset_slice"] = base[2:5, 3:7]  # storage offset 19, strides (8, 1)
    sd["f32_expanded"] = torch.arange(3.0).unsqueeze(1).expand(3, 4)  # stride 0
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(4, generator=g).double()
    sd["i64"] = torch.arange(-3, 4)
    sd["i32"] = torch.arange(10, dtype=torch.int32).view(2, 5)[:, 1::2]
    sd["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = nn.Parameter(torch.ones(2, 2))
    torch.save({"state_dict": sd, "meta": {"nested": [1, (2.5, "x"), None], "big": 2**70}}, f"{OUT}/tensors.pt")
    # what the Rust test compares against: every view, made contiguous
    torch.save({k: v.detach().contiguous().clone() for k, v in sd.items()}, f"{OUT}/tensors_expected.pt")


class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, w // 8)
        self.ln_1 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(w, 4 * w), c_proj=nn.Linear(4 * w, w)))
        self.ln_2 = nn.LayerNorm(w)

    def forward(self, x):
        return x + self.mlp(self.ln_2(x + self.attn(self.ln_1(x), x, x, need_weights=False)[0]))


class Transformer(nn.Module):
    def __init__(self, w, layers):
        super().__init__()
        self.resblocks = nn.Sequential(*[Block(w) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class Visual(nn.Module):
    def __init__(self, w, patch, grid, layers, out):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w))
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, layers)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, out))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        return self.ln_post(self.transformer(self.ln_pre(x + self.positional_embedding[1:]))) @ self.proj


class TinyClip(nn.Module):
    """OpenAI CLIP's parameter tree, tiny: visual width 64 (one head of 64, as CLIP's width // 64), patch 16, 48 px (grid 3), 2 blocks."""

    def __init__(self):
        super().__init__()
        self.visual = Visual(64, 16, 3, 2, 8)
        self.transformer = Transformer(8, 1)
        self.token_embedding = nn.Embedding(20, 8)
        self.positional_embedding = nn.Parameter(torch.randn(5, 8))
        self.ln_final = nn.LayerNorm(8)
        self.text_projection = nn.Parameter(torch.randn(8, 8))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image):
        return self.visual(image) * self.logit_scale


def clip():
    torch.manual_seed(1)
    model = TinyClip().eval()
    torch.jit.save(torch.jit.script(model), f"{OUT}/clip_tiny.pt")
    torch.save(model.state_dict(), f"{OUT}/clip_tiny_expected.pt")


def roberta():
    torch.manual_seed(2)
    h, layers, inter, vocab, pos = 16, 1, 32, 30, 12
    shapes = {
        "embeddings.word_embeddings.weight": (vocab, h),
        "embeddings.position_embeddings.weight": (pos, h),
        "embeddings.token_type_embeddings.weight": (1, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)), ("attention.self.value", (h, h)),
                            ("attention.output.dense", (h, h)), ("intermediate.dense", (inter, h)), ("output.dense", (h, inter))]:
            shapes[p + name + ".weight"] = shape
            shapes[p + name + ".bias"] = shape[:1]
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"]:
            shapes[p + ln + ".weight"] = (h,)
            shapes[p + ln + ".bias"] = (h,)
    sd = OrderedDict(("roberta." + k, torch.randn(*s)) for k, s in shapes.items())
    sd["roberta.embeddings.position_ids"] = torch.arange(pos).unsqueeze(0)
    sd["lm_head.bias"] = torch.randn(vocab)
    os.makedirs(f"{OUT}/roberta_tiny", exist_ok=True)
    torch.save(sd, f"{OUT}/roberta_tiny/pytorch_model.bin")
    config = {"model_type": "roberta", "architectures": ["RobertaForMaskedLM"], "vocab_size": vocab, "hidden_size": h,
              "num_hidden_layers": layers, "num_attention_heads": 2, "intermediate_size": inter,
              "max_position_embeddings": pos, "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1}
    with open(f"{OUT}/roberta_tiny/config.json", "w") as f:
        json.dump(config, f, indent=1)


class SystemCall:
    """Pickles as `os.system("touch <marker>")`; the marker must never appear."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/m3ae_pickle_exploit_marker",))


def hostile():
    torch.save({"a": torch.ones(2)}, f"{OUT}/legacy.pt", _use_new_zipfile_serialization=False)
    with open(f"{OUT}/os_system.pkl", "wb") as f:
        pickle.dump({"state_dict": SystemCall()}, f, protocol=2)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tensors()
    clip()
    roberta()
    hostile()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes)")
