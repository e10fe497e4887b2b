//! The demo's model and schedule: one small M3AE, sized so that the whole study (stage 0, four
//! pre-training variants and a no-pre-training baseline, two fine-tuning tasks, three seeds)
//! runs in about ten minutes on two CPU cores, and `--long` in about an hour.
//!
//! Everything here is an ordinary config laid over the task presets, exactly as `--config`
//! would be: the study runs the real `m3ae pretrain`, `finetune` and `test` commands.
use serde_json::{json, Value};

use crate::data::synth::SynthOptions;

/// How long each phase trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Pre-training optimizer steps (batch [`Schedule::batch`]).
    pub pretrain_steps: u64,
    /// VQA fine-tuning steps.
    pub vqa_steps: u64,
    /// Retrieval fine-tuning steps.
    pub irtr_steps: u64,
    /// Samples per step, every phase.
    pub batch: usize,
    /// Stage 0 (`pretrain-encoders`): epochs over its corpus, and its contrastive batch.
    pub encoder_epochs: usize,
    pub encoder_batch: usize,
}

/// How large a study `m3ae demo` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A smoke test (CI, `--quick`): a tenth of the data, a few steps; the numbers mean nothing.
    Quick,
    /// The default: about ten minutes on two cores.
    Standard,
    /// `--long`: three times the pre-training, more fine-tuning and five seeds, about an hour.
    Long,
}

impl Size {
    /// Seeds when `--seeds` is not given.
    pub fn default_seeds(self) -> u64 {
        if self == Size::Long { 5 } else { 3 }
    }
}

impl Schedule {
    /// The study's schedule. Fixed before any variant was compared (stage 0's epochs and the
    /// pre-training steps were chosen on single runs of the ITM-only variant and the 10-minute
    /// budget; nothing is set per variant).
    pub fn new(size: Size) -> Schedule {
        match size {
            Size::Quick => Schedule { pretrain_steps: 6, vqa_steps: 4, irtr_steps: 3, batch: 8, encoder_epochs: 1, encoder_batch: 16 },
            // 128 steps: two epochs of the 2,000 pairs
            Size::Standard => Schedule { pretrain_steps: 128, vqa_steps: 112, irtr_steps: 20, batch: 32, encoder_epochs: 24, encoder_batch: 64 },
            Size::Long => Schedule { pretrain_steps: 384, vqa_steps: 224, irtr_steps: 60, batch: 32, encoder_epochs: 60, encoder_batch: 64 },
        }
    }
}

/// The text encoder's HF `config.json`, written into the generated `tokenizer/` folder: the
/// place upstream (and the port) reads the RoBERTa config from.
pub fn roberta_config(vocab_size: usize, max_text_len: usize) -> Value {
    json!({
        "architectures": ["RobertaModel"], "model_type": "roberta",
        "vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 256, "max_position_embeddings": max_text_len + 2, "type_vocab_size": 1,
        "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1
    })
}

/// The generated data: the generator's defaults, with 80 retrieval candidates in val and
/// test (each evaluation fuses every image with every caption: 6,400 pairs) and 1,200 VQA test
/// questions (one run's score then has a binomial standard error of at most
/// √(0.25/1200) = 1.44 points); `quick` takes a tenth of everything.
pub fn synth_options(size: Size) -> crate::Result<SynthOptions> {
    let o = SynthOptions { irtr_images: [1000, 80, 80], vqa_questions: [1500, 300, 1200], ..SynthOptions::default() };
    if size == Size::Quick { o.scaled(0.1) } else { Ok(o) }
}

/// Stage 0's corpus, apart from the study's data as CLIP's is from M3AE's: another seed, its
/// own 2,000 training and 200 validation image–caption pairs (`roco_*`; the generator's other
/// files are written with one row each and not read).
pub fn encoder_synth_options(size: Size) -> crate::Result<SynthOptions> {
    let o = SynthOptions { seed: 1, pretrain_images: [2000, 200, 1], vqa_questions: [1, 1, 1], irtr_images: [1, 1, 1], ..SynthOptions::default() };
    if size == Size::Quick { o.scaled(0.1) } else { Ok(o) }
}

/// Longest tokenized caption (the generator's longest, three findings and the film sentence,
/// measured 68 tokens with `<s>` and `</s>` on the demo's 2,000 pre-training captions).
pub const MAX_TEXT_LEN: usize = 72;

/// The demo's patch side (the MIM chance level reads it).
pub const PATCH_SIZE: i64 = 8;

/// Longest tokenized VQA question (the generator's longest is 15).
pub const MAX_QUESTION_LEN: usize = 16;

/// The architecture and the settings every run shares: a 64-px image in 8-px patches (64
/// patches), a 2-block CLIP-style ViT 64 wide (1 head), the 2-layer RoBERTa above, 2 fusion
/// layers 64 wide with 2 heads, and a 1-layer MIM decoder.
pub fn model_config(data_root: &str, tokenizer: &str, vocab_size: usize) -> Value {
    json!({
        "data_root": data_root, "tokenizer": tokenizer, "vocab_size": vocab_size,
        "image_size": 64, "patch_size": PATCH_SIZE, "vit": "demo",
        // CLIP builds `layers - 1` blocks; the text-tower sizes are unused by M3AE
        "vision_encoder_config": {"width": 64, "layers": 3, "patch_size": 8, "context_length": 4, "vocab_size": 8, "transformer_width": 16},
        "input_image_embed_size": 64, "input_text_embed_size": 64,
        "hidden_size": 64, "num_heads": 2, "num_top_layer": 2, "mlp_ratio": 4,
        "max_text_len": MAX_TEXT_LEN, "mim_layer": -1,
        "mim_decoder_hidden_size": 64, "mim_decoder_num_layers": 1, "mim_decoder_num_heads": 2,
        "precision": 32, "num_workers": 1, "log_every_n_steps": 5, "checkpoint_every_n_steps": 50
    })
}

/// `--set` values of the pre-training phase: the generated `roco_*` files, a learning rate
/// for encoders that start from scratch (upstream starts from pre-trained CLIP and RoBERTa
/// at 1e-5), and one validation at the end.
pub fn pretrain_sets(s: &Schedule) -> Vec<(String, Value)> {
    sets(json!({
        "datasets": ["roco"], "per_gpu_batchsize": s.batch, "batch_size": s.batch, "max_steps": s.pretrain_steps,
        "learning_rate": 5e-4, "warmup_steps": 0.1, "val_check_interval": 1.0, "get_recall_metric": false
    }))
}

/// `--set` values of one fine-tuning task.
pub fn finetune_sets(task: &str, s: &Schedule, vqa_labels: usize) -> Vec<(String, Value)> {
    // the heads' lr multiplier stays the task preset's (upstream: VQA 50, retrieval 5)
    let common = json!({"per_gpu_batchsize": s.batch, "batch_size": s.batch, "learning_rate": 5e-4, "warmup_steps": 0.1,
                        "val_check_interval": 1.0});
    let mut out = sets(common);
    out.extend(match task {
        "irtr_roco" => sets(json!({"max_steps": s.irtr_steps, "draw_false_text": 3, "get_recall_metric": true})),
        _ => sets(json!({"max_steps": s.vqa_steps, "vqa_label_size": vqa_labels, "max_text_len": MAX_QUESTION_LEN})),
    });
    out
}

/// `{"k": v, …}` as ordered `--set` pairs.
pub fn sets(v: Value) -> Vec<(String, Value)> {
    v.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}
