"""The PyTorch half of bench/load_checkpoint.sh: torch.load of a Lightning .ckpt plus
load_state_dict into an nn.Module with the same parameter tree, best of N runs.

usage: load_checkpoint.py BENCH_DIR [RUNS]
"""
import sys
import time

import torch
from torch import nn


def module_like(state_dict):
    """An nn.Module whose state_dict has the same names and shapes (built outside the timing)."""
    root = nn.Module()
    for name, t in state_dict.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if not hasattr(m, part):
                m.add_module(part, nn.Module())
            m = getattr(m, part)
        m.register_parameter(leaf, nn.Parameter(torch.empty_like(t), requires_grad=t.is_floating_point()))
    return root


def main():
    bench_dir, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ckpt = f"{bench_dir}/model.ckpt"
    torch.set_num_threads(torch.get_num_threads())
    model = module_like(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    n = sum(p.numel() for p in model.parameters())
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(sd, strict=True)
        best = min(best, time.perf_counter() - start)
        del sd
    print(f"BENCH python torch.load + load_state_dict: best of {runs} {best:.3f} s ({n / 1e6:.1f} M parameters, torch {torch.__version__})")


if __name__ == "__main__":
    main()
