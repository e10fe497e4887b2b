#!/usr/bin/env python3
"""Writes tests/fixtures/data/mlm_reference.json: what transformers' MLM collators do to the same
tokenized texts, counted over many draws (run from the repo root with the project venv, which has
transformers: .venv/bin/python scripts/make_mlm_reference.py).

Upstream (m3ae/datamodules/base_datamodule.py) builds its MLM collator as
    collator = DataCollatorForWholeWordMask if _config["whole_word_masking"] else DataCollatorForLanguageModeling
    self.mlm_collator = collator(tokenizer=self.tokenizer, mlm=True, mlm_probability=_config["mlm_prob"])
and hands it the encodings of BaseDataset.get_text:
    self.tokenizer(text, padding="max_length", truncation=True, max_length=self.max_text_len,
                   return_special_tokens_mask=True, return_offsets_mapping=True)
Both are reproduced here with RobertaTokenizerFast on the toy byte-level BPE of tests/fixtures/data/toy-bpe
(it has no <mask>: RobertaTokenizerFast appends it as id 1000, so len(tokenizer) is 1001), max_text_len 32,
mlm_prob 0.15. Upstream pins transformers 4.6.0; the collators' algorithm (candidate words, the count
max(1, round(L * p)), Bernoulli(p) per token, 80% <mask> / 10% random id in [0, len(tokenizer)) / 10% kept)
is the same in the transformers this script runs (the version is written into the file).

For each collator, over DRAWS draws of the 4 texts, the file holds:
- ids: the 4 padded input id sequences (the Rust test checks it tokenizes to the same);
- selected[s][i]: draws in which position i of text s has a label (was selected);
- count_hist[s][k]: draws in which text s had k selected positions (k = 0..32);
- outcome: over all selected positions, how many became <mask>, kept their id, or became another id;
- random_hist: the "another id" replacements in 11 bins of 91 ids over [0, 1001).
"""
import json
import os
import random

import numpy as np
import torch
import transformers
from transformers import DataCollatorForLanguageModeling, DataCollatorForWholeWordMask, RobertaTokenizerFast

ROOT = os.path.join("tests", "fixtures", "data")
TEXTS = [
    "Axial CT of the chest shows a nodule in the right upper lobe.",
    "no acute abnormality",
    "",
    "MRI T2 weighted lesion (arrow) see Fig. 3b; size 14mm",
]
MAX_LEN, PROB, DRAWS, COPIES = 32, 0.15, 20000, 500
BINS, BIN_WIDTH = 11, 91


def stats(collator, encodings, tok):
    ids = torch.tensor([e["input_ids"] for e in encodings])
    n = len(TEXTS)
    selected = np.zeros((n, MAX_LEN), dtype=np.int64)
    count_hist = np.zeros((n, MAX_LEN + 1), dtype=np.int64)
    outcome = {"mask": 0, "kept": 0, "other": 0}
    random_hist = np.zeros(BINS, dtype=np.int64)
    for _ in range(DRAWS // COPIES):
        # COPIES copies of the 4 texts in one batch: each example is masked independently
        out = collator([dict(e) for _ in range(COPIES) for e in encodings])
        labels = out["labels"].view(COPIES, n, MAX_LEN)
        inputs = out["input_ids"].view(COPIES, n, MAX_LEN)
        sel = labels != -100
        assert torch.equal(labels[sel], ids.expand(COPIES, n, MAX_LEN)[sel])
        selected += sel.sum(0).numpy()
        for s in range(n):
            count_hist[s] += np.bincount(sel[:, s].sum(1).numpy(), minlength=MAX_LEN + 1)
        got, orig = inputs[sel], labels[sel]
        outcome["mask"] += int((got == tok.mask_token_id).sum())
        outcome["kept"] += int(((got == orig) & (got != tok.mask_token_id)).sum())
        other = got[(got != orig) & (got != tok.mask_token_id)]
        outcome["other"] += int(other.numel())
        random_hist += np.bincount((other // BIN_WIDTH).numpy(), minlength=BINS)[:BINS]
        assert other.numel() == 0 or int(other.max()) < len(tok)
    return {"selected": selected.tolist(), "count_hist": count_hist.tolist(), "outcome": outcome,
            "random_hist": random_hist.tolist()}


def main():
    bpe = os.path.join(ROOT, "toy-bpe")
    tok = RobertaTokenizerFast(vocab_file=os.path.join(bpe, "vocab.json"), merges_file=os.path.join(bpe, "merges.txt"))
    assert (tok.mask_token_id, len(tok)) == (1000, 1001), (tok.mask_token_id, len(tok))
    encodings = [tok(t, padding="max_length", truncation=True, max_length=MAX_LEN, return_special_tokens_mask=True,
                     return_offsets_mapping=True) for t in TEXTS]
    out = {"transformers": transformers.__version__, "texts": TEXTS, "max_text_len": MAX_LEN, "mlm_prob": PROB,
           "draws": DRAWS, "mask_id": tok.mask_token_id, "len_tokenizer": len(tok), "bin_width": BIN_WIDTH,
           "ids": [e["input_ids"] for e in encodings]}
    for name, cls, seed in [("whole_word", DataCollatorForWholeWordMask, 1), ("language_modeling", DataCollatorForLanguageModeling, 2)]:
        random.seed(seed)
        torch.manual_seed(seed)
        out[name] = stats(cls(tokenizer=tok, mlm=True, mlm_probability=PROB), encodings, tok)
    path = os.path.join(ROOT, "mlm_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, "transformers", transformers.__version__)


if __name__ == "__main__":
    main()
