#!/usr/bin/env bash
# Issue 23's accuracy check of `precision: "bf16"` on the CPU, at the demo's model size
# (src/demo/presets.rs: 64-px images in 8-px patches, a 2-block ViT 64 wide, a 2-layer
# RoBERTa 64 wide, 2 fusion layers, 1-layer MIM decoder) on `m3ae data synth`'s data:
#  1. 200 pre-training steps (MLM + MIM + ITM, batch $BATCH, default 8: the demo's 32 takes
#     ~30 min per run on the shared 2-core machine), fp32 and bf16, same seed: the
#     bf16 losses track fp32's. Bound, stated before the runs: for each objective and each
#     window of 25 steps, |mean bf16 − mean fp32| ≤ 3% of mean fp32.
#  2. VQA fine-tuning (112 steps of $BATCH, the demo's step count) from each run's checkpoint,
#     then `m3ae test` on the test split: the bf16 score ends within 2·√2 binomial standard
#     errors of the fp32 one (two independent scores on N questions, p(1−p) ≤ 1/4: margin
#     2·√(2·0.25/N)·100 points; N = 300 gives 8.2).
# Prints the comparison; exits 1 when a bound is exceeded.
# usage: scripts/bf16_accuracy.sh [OUT_DIR]   (after cargo build --release; ~10 min on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-/tmp/m3ae-bf16-accuracy}"
# a copy: a rebuild while the script runs (cargo test rebuilds the binary) changes nothing
mkdir -p "${1:-/tmp/m3ae-bf16-accuracy}"
m3ae="${1:-/tmp/m3ae-bf16-accuracy}/m3ae"
cp "$here/target/release/m3ae" "$m3ae"
py="${PYTHON:-$here/.venv/bin/python}"
batch="${BATCH:-8}"
mkdir -p "$out"
[ -s "$out/data/vqa_vqa_rad_test.arrow" ] || "$m3ae" data synth --out "$out/data" > "$out/synth.log" 2>&1
vocab=$("$py" -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$out/data/tokenizer/vocab.json")
# src/demo/presets.rs roberta_config: the text encoder's config, where upstream reads it
cat > "$out/data/tokenizer/config.json" <<EOF
{"architectures": ["RobertaModel"], "model_type": "roberta", "vocab_size": $vocab, "hidden_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 74,
 "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
 "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
EOF
# src/demo/presets.rs model_config
cat > "$out/model.json" <<EOF
{"data_root": "$out/data", "tokenizer": "$out/data/tokenizer", "vocab_size": $vocab,
 "image_size": 64, "patch_size": 8, "vit": "demo",
 "vision_encoder_config": {"width": 64, "layers": 3, "patch_size": 8, "context_length": 4, "vocab_size": 8, "transformer_width": 16},
 "input_image_embed_size": 64, "input_text_embed_size": 64, "hidden_size": 64, "num_heads": 2, "num_top_layer": 2,
 "mlp_ratio": 4, "max_text_len": 72, "mim_layer": -1, "mim_decoder_hidden_size": 64, "mim_decoder_num_layers": 1,
 "mim_decoder_num_heads": 2, "num_workers": 1, "log_every_n_steps": 1, "checkpoint_every_n_steps": 0}
EOF
for prec in 32 bf16; do
  p="$prec"; [ "$prec" = bf16 ] && p='"bf16"'
  run="$out/pretrain-$prec"
  if [ ! -e "$run/checkpoints/last" ]; then
    rm -rf "$run"
    /usr/bin/time -f "%e s wall, %U s user" -o "$out/pretrain-$prec.time" "$m3ae" pretrain --run-dir "$run" --config "$out/model.json" \
      --set 'datasets=["roco"]' per_gpu_batchsize=$batch batch_size=$batch max_steps=200 learning_rate=0.0005 warmup_steps=0.1 \
      val_check_interval=1.0 get_recall_metric=false seed=0 "precision=$p" > "$out/pretrain-$prec.log" 2>&1
  fi
  run="$out/vqa-$prec"
  if [ ! -s "$run/test_metrics.json" ]; then
    rm -rf "$run"
    /usr/bin/time -f "%e s wall, %U s user" -o "$out/vqa-$prec.time" "$m3ae" finetune vqa_vqa_rad --run-dir "$run" --config "$out/model.json" \
      --set per_gpu_batchsize=$batch batch_size=$batch learning_rate=0.0005 warmup_steps=0.1 val_check_interval=1.0 max_steps=112 \
      max_text_len=16 vqa_label_size=20 "load_path=\"$out/pretrain-$prec/checkpoints/last\"" seed=0 "precision=$p" > "$out/vqa-$prec.log" 2>&1
    "$m3ae" test vqa_vqa_rad --run-dir "$run" --checkpoint best --split test >> "$out/vqa-$prec.log" 2>&1
  fi
done
"$py" - "$out" <<'PY'
import json, math, sys
out = sys.argv[1]
def losses(prec):
    rows = [json.loads(l) for l in open(f"{out}/pretrain-{prec}/metrics.jsonl")]
    per = {}
    for r in rows:
        for k, v in r.items():
            if k.endswith("/train/loss"):
                per.setdefault(k, {})[r["step"]] = v
    return per
a, b = losses("32"), losses("bf16")
ok = True
print("pre-training, 200 steps: mean loss per window of 25 steps, fp32 / bf16 (relative difference)")
for k in sorted(a):
    cells, worst, step_max = [], 0.0, 0.0
    for w in range(0, 200, 25):
        steps = [s for s in range(w + 1, w + 26) if s in a[k] and s in b[k]]
        ma = sum(a[k][s] for s in steps) / len(steps); mb = sum(b[k][s] for s in steps) / len(steps)
        rel = abs(mb - ma) / abs(ma); worst = max(worst, rel)
        cells.append(f"{ma:.3f}/{mb:.3f}")
    step_max = max(abs(b[k][s] - a[k][s]) / abs(a[k][s]) for s in a[k] if s in b[k])
    print(f"  {k:<18} {' '.join(cells)}  worst window {100*worst:.2f}% (bound 3%), worst single step {100*step_max:.2f}%")
    ok &= worst <= 0.03
def score(prec):
    m = json.load(open(f"{out}/vqa-{prec}/test_metrics.json"))["metrics"]
    return 100 * m["vqa/test/score_epoch"]
sa, sb = score("32"), score("bf16")
n = 300
margin = 2 * math.sqrt(2 * 0.25 / n) * 100
print(f"VQA test score: fp32 {sa:.2f}, bf16 {sb:.2f}, difference {sb - sa:+.2f} points (margin {margin:.1f})")
ok &= abs(sb - sa) <= margin
for f in ["pretrain-32", "pretrain-bf16", "vqa-32", "vqa-bf16"]:
    print(f"  {f}: {open(f'{out}/{f}.time').read().strip()}" if __import__('os').path.exists(f"{out}/{f}.time") else f"  {f}: (reused)")
sys.exit(0 if ok else 1)
PY
