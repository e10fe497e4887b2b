#!/usr/bin/env python3
"""Upstream's own pre-training validation of a port model, over many independent draws.

    .venv/bin/python scripts/make_val_reference.py --upstream /path/to/M3AE --set parity/val-pretrain \
        [--draws 200] [--out parity/val-pretrain/reference.json]

`--set DIR` holds `model/` (a port model folder: `model.safetensors`, whose parameter names are
upstream's state_dict keys, and the port's resolved `config.json`), `data/roco_val.arrow` and
`tokenizer/` (a RoBERTa folder). `--model`, `--data` and `--tokenizer` override those paths, so
any port checkpoint (`RUN/checkpoints/last`) can be scored the same way.

Each draw is one pass of upstream's validation as Lightning runs it: the val split through
upstream's MTDataModule (ROCODataset, `collate` with the MLM collator `whole_word_masking`
picks), batches of `per_gpu_batchsize` in order, `model.eval()`, `validation_step` (set_task,
then compute_mlm, compute_mim, compute_itm) and `m3ae_utils.epoch_wrapup`; the draw's random
streams (`random`, `numpy`, `torch`) seeded with 1000 + draw (`--seed-base`). The MLM masks and replacements,
the MIM noise, the ITM pairing and the false images are that draw's. Writes every draw's logged
epoch metrics (and the number of masked tokens), their means and standard deviations.

upstream is imported from the checkout named by --upstream (nothing of it is in this project);
the two encoder downloads and pytorch-lightning are bridged by parity/generate.py and
parity/upstream_shims.py.
"""
import argparse
import copy
import json
import os
import random
import sys
import tempfile
import types
import warnings

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "parity"))
import generate  # noqa: E402  (import_upstream, upstream_defaults, stand_in_encoders)

METRICS = ["mlm/val/loss_epoch", "mlm/val/accuracy_epoch", "mim/val/loss_epoch", "itm/val/loss_epoch",
           "itm/val/accuracy_epoch", "n_masked"]


def upstream_config(up, port, data_root, tokenizer):
    """Upstream's defaults, the named configs run_scripts/pretrain_m3ae.sh stacks, then the
    port's keys; paths made absolute; one process, fp32, no checkpoint to load."""
    config = generate.upstream_defaults(up.config)
    for name in ("task_pretrain_m3ae", "clip16", "text_roberta"):
        scope = dict(vars(up.config), config=getattr(up.config, name))
        config.update(generate.upstream_defaults(types.SimpleNamespace(**scope)))
    for k, v in port.items():
        if k in config:
            config[k] = copy.deepcopy(v)
    # upstream picks its RoBERTa branch by the substring "roberta" in `tokenizer`
    link = os.path.join(tempfile.mkdtemp(), "roberta")
    os.symlink(os.path.abspath(tokenizer), link)
    # MTDataModule.setup reads every split: a folder with the val file alone lends it to the others
    data = tempfile.mkdtemp()
    for split in ("train", "val", "test"):
        for name in port.get("datasets", ["roco"]):
            own = os.path.join(os.path.abspath(data_root), f"{name}_{split}.arrow")
            val = os.path.join(os.path.abspath(data_root), f"{name}_val.arrow")
            os.symlink(own if os.path.isfile(own) else val, os.path.join(data, f"{name}_{split}.arrow"))
    config.update(tokenizer=link, data_root=data, num_workers=0, num_gpus=1, num_nodes=1,
                  load_path="", test_only=False, precision=32)
    return config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="an upstream M3AE checkout (github zhjohnchan/M3AE)")
    ap.add_argument("--set", required=True, help="folder with model/, data/, tokenizer/")
    ap.add_argument("--model", help="model folder: model.safetensors + config.json (default: SET/model)")
    ap.add_argument("--data", help="folder of roco_val.arrow (default: SET/data)")
    ap.add_argument("--tokenizer", help="RoBERTa tokenizer folder (default: SET/tokenizer)")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed-base", type=int, default=1000, help="draw r seeds random, numpy and torch with SEED_BASE + r")
    ap.add_argument("--out", help="output JSON (default: SET/reference.json)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    model_dir = a.model or os.path.join(a.set, "model")
    port = json.load(open(os.path.join(model_dir, "config.json")))
    model_path = os.path.join(model_dir, "model.safetensors")
    up = generate.import_upstream(a.upstream)
    config = upstream_config(up, port, a.data or os.path.join(a.set, "data"), a.tokenizer or os.path.join(a.set, "tokenizer"))
    spec = types.SimpleNamespace(config=config, lang=port["language_encoder_config"], vision=port["vision_encoder_config"])
    with generate.stand_in_encoders(up, spec):
        model = up.module.M3AETransformerSS(config)
    # upstream's load_path branch: adapt_position_encoding, then load_state_dict(strict=False)
    sd = up.module.adapt_position_encoding(load_file(model_path), after=config["image_size"], patch_size=config["patch_size"])
    res = model.load_state_dict(sd, strict=False)
    if res.unexpected_keys or any(not k.endswith("position_ids") for k in res.missing_keys):
        sys.exit(f"{model_path}: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    from m3ae.datamodules.multitask_datamodule import MTDataModule
    from m3ae.modules import m3ae_utils
    dm = MTDataModule(config, dist=False)
    dm.setup("fit")
    loader = DataLoader(dm.val_dataset, batch_size=config["per_gpu_batchsize"], shuffle=False, num_workers=0,
                        collate_fn=dm.collate)
    logged = {}
    model.log = lambda name, value, *x, **k: logged.__setitem__(name, float(value))
    draws = []
    for r in range(a.draws):
        random.seed(a.seed_base + r)
        np.random.seed(a.seed_base + r)
        torch.manual_seed(a.seed_base + r)
        model.eval()
        n_masked = 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                n_masked += int((batch["text_labels_mlm"] != -100).sum())
                model.validation_step(batch, i)
        logged.clear()
        m3ae_utils.epoch_wrapup(model)
        # float32 values: 8 significant digits keep them
        draws.append([float(f"{logged[k]:.8g}") if k != "n_masked" else float(n_masked) for k in METRICS])
        print(r, dict(zip(METRICS, draws[-1])), flush=True)
    d = np.array(draws)
    import transformers
    out = {"metrics": METRICS, "draws": draws, "mean": d.mean(0).tolist(), "sd": d.std(0, ddof=1).tolist(),
           "val_samples": len(dm.val_dataset), "batch": config["per_gpu_batchsize"],
           "collator": type(dm.dms[0].mlm_collator).__name__, "torch": torch.__version__,
           "transformers": transformers.__version__}
    path = a.out or os.path.join(a.set, "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, {k: f"{m:.5f} ± {s / np.sqrt(len(draws)):.5f}" for k, m, s in zip(METRICS, out["mean"], out["sd"])})


if __name__ == "__main__":
    main()
