"""Reads a training set (parity/FORMAT.md, "Training sets") back and checks it is whole.

Usage:
    python parity/check_train_set.py SET_DIR [SET_DIR ...] [--upstream /path/to/M3AE]

Checks: config.json equals model/config.json; every Arrow table opens as an IPC file with
upstream's columns and types; model/model.safetensors is float32 and (with --upstream) has
exactly the state_dict keys and shapes of upstream's model built from config.json (minus
`language_encoder.embeddings.position_ids`) and loads into it strictly; the tokenizer folder
loads with RobertaTokenizerFast and with `tokenizers.Tokenizer.from_file(tokenizer.json)`,
both giving the same ids for every question/caption in the tables, with <s>=0 <pad>=1 </s>=2
<unk>=3 and <mask>, len(tokenizer) == vocab_size, and its config.json agrees with
`language_encoder_config`; the manifest's expected numbers are consistent with each other.
"""
import argparse
import json
import os
import sys

import pyarrow as pa
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = {
    "vqa_vqa_rad": {"image": "binary", "questions": "list<item: string>",
                    "answers": "list<item: list<item: string>>", "answer_labels": "list<item: list<item: int64>>",
                    "answer_scores": "list<item: list<item: double>>", "image_id": "string",
                    "question_id": "list<item: int64>", "answer_type": "list<item: int64>", "split": "string"},
    "irtr_roco": {"image": "binary", "caption": "list<item: string>", "image_id": "string", "split": "string"},
}


def check(folder, upstream):
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    config = json.load(open(os.path.join(folder, manifest["config"])))
    assert manifest["kind"] == "train"
    assert config == json.load(open(os.path.join(folder, "model", "config.json"))), "model/config.json differs"
    task = manifest["task"]
    assert config["datasets"] == [task]

    texts = []
    for split in ("train", "val", "test"):
        path = os.path.join(folder, config["data_root"], f"{task}_{split}.arrow")
        table = pa.ipc.RecordBatchFileReader(pa.memory_map(path, "r")).read_all()
        types = {f.name: str(f.type) for f in table.schema}
        assert types == COLUMNS[task], f"{path}: {types}"
        assert set(table["split"].to_pylist()) == {split}
        column = "questions" if task == "vqa_vqa_rad" else "caption"
        texts += [t for row in table[column].to_pylist() for t in row]
        if task == "vqa_vqa_rad":
            labels = [l for q in table["answer_labels"].to_pylist() for ls in q for l in ls]
            assert max(labels) < config["vqa_label_size"]
            assert set(t for q in table["answer_type"].to_pylist() for t in q) == {0, 1}
        print(f"  {os.path.relpath(path, folder)}: {table.num_rows} rows, {len(texts)} texts so far")

    with safe_open(os.path.join(folder, "model", "model.safetensors"), "pt") as f:
        weights = {k: f.get_tensor(k) for k in f.keys()}
    assert all(str(v.dtype) == "torch.float32" for v in weights.values())
    if upstream:
        import generate
        import torch
        up = generate.import_upstream(upstream)
        import types as pytypes
        enc = pytypes.SimpleNamespace(lang=config["language_encoder_config"], vision=config["vision_encoder_config"])
        run = dict(config, tokenizer="roberta-base")  # the substring upstream tests; the encoders are stood in
        with generate.stand_in_encoders(up, enc):
            model = up.module.M3AETransformerSS(run)
        reference = {k: v.shape for k, v in model.state_dict().items() if k != "language_encoder.embeddings.position_ids"}
        assert set(reference) == set(weights), (set(reference) ^ set(weights))
        assert all(tuple(reference[k]) == tuple(weights[k].shape) for k in weights)
        result = model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys and set(result.missing_keys) <= {"language_encoder.embeddings.position_ids"}
        with torch.no_grad():
            assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
        print(f"  model.safetensors: {len(weights)} keys = upstream's state_dict keys and shapes")
    else:
        print(f"  model.safetensors: {len(weights)} float32 tensors (keys not compared: no --upstream)")

    from tokenizers import Tokenizer
    from transformers import RobertaTokenizerFast
    tok_dir = os.path.join(folder, config["tokenizer"])
    hf = RobertaTokenizerFast.from_pretrained(tok_dir)
    raw = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    ids = {t: hf.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    assert list(ids.values())[:4] == [0, 1, 2, 3] and ids["<mask>"] not in (None, 3), ids
    assert len(hf) == config["vocab_size"] == config["language_encoder_config"]["vocab_size"] == raw.get_vocab_size()
    hf_config = json.load(open(os.path.join(tok_dir, "config.json")))
    assert all(hf_config[k] == v for k, v in config["language_encoder_config"].items())
    L, truncated = config["max_text_len"], 0
    for text in texts:
        a = hf(text, padding="max_length", truncation=True, max_length=L)["input_ids"]
        b = raw.encode(text).ids
        truncated += len(b) > L
        assert a == (b if len(b) <= L else b[:L - 1] + [2]) + [1] * max(0, L - len(b)), text
    print(f"  tokenizer: {len(hf)} tokens, <mask>={ids['<mask>']}; {len(texts)} texts give equal ids "
          f"in both loaders ({truncated} truncated to {L})")

    import torch
    import torch.nn.functional as F
    expected = manifest["expected"]
    train = expected["train"]
    assert len(train["steps"]) == train["max_steps"] == config["max_steps"]
    assert sum(len(g["params"]) for g in train["param_groups"]) == len(train["params_after"])
    if task == "vqa_vqa_rad":
        for key in ("test", "test_after"):
            t = expected[key]
            preds = t["predictions"]
            hit = [dict(zip(p["labels"], p["scores"])).get(p["pred"], 0.0) for p in preds]
            assert abs(sum(hit) / len(hit) - t["vqa/test/score"]) < 1e-6
            assert abs(sum(t["batch_losses"]) / len(t["batch_losses"]) - t["vqa/test/loss"]) < 1e-6
            # the per-batch losses from the recorded logits: BCE-with-logits (mean) x vqa_label_size
            start = 0
            for size, loss in zip(t["batch_sizes"], t["batch_losses"]):
                logits = torch.tensor([p["logits"] for p in preds[start:start + size]])
                target = torch.zeros_like(logits)
                for i, p in enumerate(preds[start:start + size]):
                    target[i, p["labels"]] = torch.tensor(p["scores"])
                value = F.binary_cross_entropy_with_logits(logits, target) * logits.shape[1]
                assert abs(float(value) - loss) < 1e-5 * max(1.0, abs(loss)), (float(value), loss)
                start += size
    else:
        n_train = len(train["train_texts"])
        for step in train["steps"]:
            assert len(step["false_text_indices"]) == n_train
            assert all(len(i) == config["draw_false_text"] and max(i) < n_train for i in step["false_text_indices"])
        for key in ("recalls", "recalls_after"):
            r = expected[key]
            assert len(r["scores"]) == len(r["image_index"]) >= 10 and len(r["scores"][0]) == len(r["text_image_index"]) >= 10
            # the recalls from the recorded score matrix, by their definitions
            scores, iids, tiids = torch.tensor(r["scores"]), torch.tensor(r["image_index"]), torch.tensor(r["text_image_index"])
            for k in (1, 5, 10):
                tr = (tiids[scores.topk(k, dim=1).indices] == iids[:, None]).any(1).float().mean()
                ir = (iids[scores.topk(k, dim=0).indices] == tiids[None, :]).any(0).float().mean()
                assert abs(float(tr) - r[f"tr_r{k}"]) < 1e-6 and abs(float(ir) - r[f"ir_r{k}"]) < 1e-6
    print(f"  manifest: consistent ({', '.join(expected)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--upstream", help="upstream checkout: also compare the weights' keys with upstream's model")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    for folder in args.sets:
        print(folder)
        check(folder, args.upstream)
    print("ok")


if __name__ == "__main__":
    main()
