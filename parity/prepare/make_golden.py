"""Golden Arrow files for `m3ae data prepare`, written by upstream's own prepro.

Usage (from the repository root):
    M3AE_PREPARE_RAW=/tmp/raw cargo test --release --test prepare write_raw_release -- --ignored
    .venv/bin/python parity/prepare/make_golden.py --upstream PATH/TO/M3AE --raw /tmp/raw \
        --out tests/fixtures/prepare

1. The raw release under --raw (upstream's `data/` folder) is the one tests/prepare/raw.rs
   writes; its files' FNV-1a hashes go to manifest.json so the test can check it reads the same.
2. Upstream's prepro/ modules are imported from --upstream. They read and write hard-coded
   paths under `data/`: the script runs them in a scratch folder whose `data/pretrain_data`
   and `data/finetune_data` link to --raw. `pdb.set_trace` (left in make_arrow_melinda) is
   disabled. `label2ans`, a local of make_arrow_vqa that upstream never saves, is captured
   with a profile hook when the function returns.
3. It copies the Arrow files to --out/arrows/, writes answers/<dataset>_answers.json, and the
   CPython reference sequences for the Mersenne Twister port (pyrandom.json) and the answer
   normalisation (normalize.json).
"""
import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def manifest(raw):
    out = {}
    for base, _, files in os.walk(raw):
        for f in files:
            p = os.path.join(base, f)
            with open(p, "rb") as fp:
                out[os.path.relpath(p, raw)] = fnv1a(fp.read())
    return dict(sorted(out.items()))


def pyrandom_vectors():
    random.seed(42)
    words = [random.getrandbits(32) for _ in range(8)]
    random.seed(42)
    shuffles = []
    for n in [0, 1, 2, 5, 17, 1000, 2300]:
        x = list(range(n))
        random.shuffle(x)
        shuffles.append(x)
    random.seed(12345678901)
    big = [random.getrandbits(32) for _ in range(4)]
    return {"seed42_getrandbits32": words, "seed42_shuffles_carried": shuffles, "seed12345678901_getrandbits32": big}


NORMALIZE_INPUTS = [
    "Yes", "the left lung.", "3", "none", "two masses", "x-ray, ct", "1,000 mm", "right-sided, (mostly)",
    "isnt it", "a" + "." * 40 + "b", "3.5 cm", "ct w/contrast (iv)", "lung , mediastinum", "an upper lobe",
    "Id've", "hes here", "a/b", "what?!", "one-two", "\u0663,\u0664 x", "end.", "...", "Ten", "r. kidney",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="a checkout of zhjohnchan/M3AE")
    ap.add_argument("--raw", required=True, help="the raw release (upstream's data/ folder)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw, out = os.path.abspath(args.raw), os.path.abspath(args.out)
    sys.path.insert(0, os.path.join(os.path.abspath(args.upstream), "prepro"))
    import pdb

    pdb.set_trace = lambda *a, **k: None
    import glossary
    import make_arrow
    import prepro_finetuning_data as fin
    import prepro_pretraining_data as pre

    captured = {}

    def hook(frame, event, arg):
        if event == "return" and frame.f_code is make_arrow.make_arrow_vqa.__code__:
            captured[frame.f_locals["dataset_name"]] = list(frame.f_locals["label2ans"])

    work = tempfile.mkdtemp(prefix="m3ae-prepare-golden-")
    cwd = os.getcwd()
    try:
        os.makedirs(os.path.join(work, "data"))
        for d in ["pretrain_data", "finetune_data"]:
            os.symlink(os.path.join(raw, d), os.path.join(work, "data", d))
        os.chdir(work)
        sys.setprofile(hook)
        pre.prepro_medicat()
        pre.prepro_roco()
        fin.prepro_vqa_vqa_rad()
        fin.prepro_vqa_slack()
        fin.prepro_vqa_medvqa2019()
        fin.prepro_cls_melinda()
        fin.prepro_irtr_roco()
        sys.setprofile(None)
        os.chdir(cwd)
        shutil.rmtree(os.path.join(out, "arrows"), ignore_errors=True)
        os.makedirs(os.path.join(out, "arrows"))
        os.makedirs(os.path.join(out, "answers"), exist_ok=True)
        for sub in ["pretrain_arrows", "finetune_arrows"]:
            for f in sorted(os.listdir(os.path.join(work, "data", sub))):
                shutil.copy(os.path.join(work, "data", sub, f), os.path.join(out, "arrows", f))
    finally:
        sys.setprofile(None)
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    for name, label2ans in captured.items():
        with open(os.path.join(out, "answers", f"{name}_answers.json"), "w") as fp:
            json.dump(label2ans, fp, ensure_ascii=False, indent=1)
    import pandas
    import pyarrow

    with open(os.path.join(out, "manifest.json"), "w") as fp:
        json.dump({"python": platform.python_version(), "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
                   "raw_files": manifest(raw)}, fp, indent=1)
    with open(os.path.join(out, "pyrandom.json"), "w") as fp:
        json.dump(pyrandom_vectors(), fp)
    with open(os.path.join(out, "normalize.json"), "w") as fp:
        json.dump([[s, glossary.normalize_word(s)] for s in NORMALIZE_INPUTS], fp, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
