//! The upstream config dict (`m3ae/config.py`), key for key, with upstream's defaults,
//! plus the two encoder configs that upstream reads from the pretrained weights.
//!
//! - [`keys`]: the known keys (an unknown one is an error naming the closest), `--set`
//!   overrides and the layering of a base config.
//! - [`text`]: the RoBERTa config, from where upstream takes it; never guessed.
//! - [`from_weights`]: what a checkpoint's shapes say about the config.
pub mod from_weights;
pub mod keys;
pub mod text;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `_loss_names`: the weight of each objective. A head exists only when its weight is > 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LossNames {
    pub mlm: f64,
    pub mim: f64,
    pub itm: f64,
    pub vqa: f64,
    pub cls: f64,
    pub irtr: f64,
}

/// `warmup_steps`: an int is a step count, a float a fraction of max_steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Warmup {
    Steps(u64),
    Fraction(f64),
}

/// `decay_power`: the polynomial decay's power, or `"cosine"` for the cosine schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DecayPower {
    Power(f64),
    Named(String),
}

/// `precision`: 32, 16 (fp16 with loss scaling on CUDA) or `"bf16"` (autocast on CUDA).
/// CPU runs compute in fp32 whatever it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Precision {
    Bits(i64),
    Named(String),
}

/// What `precision` asks of a CUDA run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionMode {
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    pub fn mode(&self) -> Result<PrecisionMode> {
        match self {
            Precision::Bits(32) => Ok(PrecisionMode::Fp32),
            Precision::Bits(16) => Ok(PrecisionMode::Fp16),
            Precision::Named(s) if s == "32" => Ok(PrecisionMode::Fp32),
            Precision::Named(s) if s == "16" => Ok(PrecisionMode::Fp16),
            Precision::Named(s) if s == "bf16" => Ok(PrecisionMode::Bf16),
            other => Err(Error::Config(format!("`precision`: {other:?} is not 32, 16 or \"bf16\""))),
        }
    }
}

/// The config of upstream's `M3AETransformerSS`, as saved in `hyper_parameters.config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct M3aeConfig {
    pub exp_name: String,
    pub seed: u64,
    pub datasets: Vec<String>,
    pub loss_names: LossNames,
    pub batch_size: usize,
    // image
    pub train_transform_keys: Vec<String>,
    pub val_transform_keys: Vec<String>,
    pub image_size: i64,
    pub patch_size: i64,
    pub draw_false_image: usize,
    pub image_only: bool,
    // text
    pub vqa_label_size: i64,
    pub mlc_label_size: i64,
    pub max_text_len: i64,
    pub tokenizer: String,
    pub vocab_size: i64,
    pub whole_word_masking: bool,
    pub mlm_prob: f64,
    pub draw_false_text: usize,
    // transformer
    pub num_top_layer: usize,
    pub input_image_embed_size: i64,
    pub input_text_embed_size: i64,
    pub vit: String,
    pub hidden_size: i64,
    pub num_heads: i64,
    pub num_layers: usize,
    pub mlp_ratio: i64,
    pub drop_rate: f64,
    // MIM decoder
    pub mim_prob: f64,
    pub mim_decoder_hidden_size: i64,
    pub mim_decoder_num_layers: usize,
    pub mim_decoder_num_heads: i64,
    pub norm_pix_loss: bool,
    pub mim_layer: i64,
    // optimizer
    pub optim_type: String,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub decay_power: DecayPower,
    pub max_epoch: usize,
    pub max_steps: Option<u64>,
    pub warmup_steps: Warmup,
    pub end_lr: f64,
    pub lr_multiplier_head: f64,
    pub lr_multiplier_multi_modal: f64,
    // downstream / trainer
    pub get_recall_metric: bool,
    pub resume_from: Option<String>,
    pub fast_dev_run: bool,
    pub val_check_interval: f64,
    pub test_only: bool,
    pub default_root_dir: String,
    pub data_root: String,
    pub log_dir: String,
    pub per_gpu_batchsize: usize,
    pub num_gpus: usize,
    pub num_nodes: usize,
    pub load_path: String,
    pub num_workers: usize,
    pub precision: Precision,
    pub label_column_name: String,
    pub melinda_label_size: BTreeMap<String, i64>,
    // the port's trainer (not upstream keys; Lightning's defaults where it has one)
    /// Write `checkpoints/last` every N optimizer steps (0: at validations and the end only).
    pub checkpoint_every_n_steps: u64,
    /// Log the training metrics every N optimizer steps (Lightning's `log_every_n_steps`).
    pub log_every_n_steps: u64,
    /// Clip the global gradient norm to this value before each step (None: no clipping, as
    /// upstream's Trainer).
    pub grad_clip_norm: Option<f64>,
    /// Stop after this many validations without a better `val/the_metric` (None: never).
    pub early_stop_patience: Option<u64>,
    /// Multi-process runs: how long a rendezvous, a store operation or a collective may take
    /// before the ranks give up with an error naming the absent rank (seconds).
    pub dist_timeout_s: u64,
    /// An unreadable image stops the run (`--strict-images`). Off: training replaces the
    /// sample with another, as upstream's `get_suite` does, and evaluation leaves it out;
    /// both count it as `{phase}/unreadable_images`.
    pub strict_images: bool,
    /// Not an upstream key: the CLIP shape, which upstream reads from the CLIP weights.
    /// When absent it follows `vit` (or the loaded state_dict's shapes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vision_encoder_config: Option<VisionEncoderConfig>,
    /// Not an upstream key: the RoBERTa config, which upstream reads from the `tokenizer`
    /// folder (`RobertaConfig.from_pretrained(config["tokenizer"])`). When absent it is read
    /// from there, or is roberta-base's for roberta-base-shaped weights ([`text::resolve`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_encoder_config: Option<TextEncoderConfig>,
}

impl Default for M3aeConfig {
    fn default() -> Self {
        M3aeConfig {
            exp_name: "meter".into(),
            seed: 0,
            datasets: vec!["medicat".into(), "roco".into()],
            loss_names: LossNames { itm: 1.0, mlm: 1.0, ..Default::default() },
            batch_size: 4096,
            train_transform_keys: vec!["clip".into()],
            val_transform_keys: vec!["clip".into()],
            image_size: 224,
            patch_size: 32,
            draw_false_image: 1,
            image_only: false,
            vqa_label_size: 3129,
            mlc_label_size: 14,
            max_text_len: 40,
            tokenizer: "bert-base-uncased".into(),
            vocab_size: 30522,
            whole_word_masking: true,
            mlm_prob: 0.15,
            draw_false_text: 0,
            num_top_layer: 6,
            input_image_embed_size: 768,
            input_text_embed_size: 768,
            vit: "ViT-B/32".into(),
            hidden_size: 768,
            num_heads: 12,
            num_layers: 6,
            mlp_ratio: 4,
            drop_rate: 0.1,
            mim_prob: 0.75,
            mim_decoder_hidden_size: 384,
            mim_decoder_num_layers: 4,
            mim_decoder_num_heads: 6,
            norm_pix_loss: true,
            mim_layer: -1,
            optim_type: "adamw".into(),
            learning_rate: 1e-5,
            weight_decay: 0.01,
            decay_power: DecayPower::Power(1.0),
            max_epoch: 100,
            max_steps: Some(100_000),
            warmup_steps: Warmup::Steps(10_000),
            end_lr: 0.0,
            lr_multiplier_head: 5.0,
            lr_multiplier_multi_modal: 5.0,
            get_recall_metric: false,
            resume_from: None,
            fast_dev_run: false,
            val_check_interval: 1.0,
            test_only: false,
            default_root_dir: "checkpoints".into(),
            data_root: String::new(),
            log_dir: "result".into(),
            per_gpu_batchsize: 0,
            num_gpus: 8,
            num_nodes: 1,
            load_path: String::new(),
            num_workers: 8,
            precision: Precision::Bits(16),
            label_column_name: String::new(),
            checkpoint_every_n_steps: 0,
            log_every_n_steps: 50,
            grad_clip_norm: None,
            early_stop_patience: None,
            dist_timeout_s: crate::dist::DEFAULT_TIMEOUT_S,
            strict_images: false,
            melinda_label_size: [("i_meth", 85), ("p_meth", 45), ("i_meth_label", 15), ("p_meth_label", 7)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            vision_encoder_config: None,
            language_encoder_config: None,
        }
    }
}

/// The shape of OpenAI CLIP as `clip_model.build_model` reads it off the weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VisionEncoderConfig {
    /// `visual.conv1.weight.shape[0]`; heads = width / 64.
    pub width: i64,
    /// CLIP's nominal layer count; upstream builds `layers - 1` blocks.
    pub layers: usize,
    pub patch_size: i64,
    /// The unused text tower: `positional_embedding.shape[0]`.
    pub context_length: i64,
    /// `token_embedding.weight.shape[0]`.
    pub vocab_size: i64,
    /// `ln_final.weight.shape[0]`.
    pub transformer_width: i64,
}

impl VisionEncoderConfig {
    /// The OpenAI CLIP vision transformers upstream can download, by name.
    pub fn preset(vit: &str) -> Option<Self> {
        let (width, layers, patch_size, transformer_width) = match vit {
            "ViT-B/32" => (768, 12, 32, 512),
            "ViT-B/16" => (768, 12, 16, 512),
            "ViT-L/14" | "ViT-L/14@336px" => (1024, 24, 14, 768),
            _ => return None,
        };
        Some(VisionEncoderConfig { width, layers, patch_size, context_length: 77, vocab_size: 49408, transformer_width })
    }

    pub fn heads(&self) -> i64 {
        self.width / 64
    }
}

/// HF `RobertaConfig` fields the language encoder uses. A field a `config.json` leaves out
/// takes `RobertaConfig`'s class default, as `from_pretrained` does; other fields of an HF
/// config are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextEncoderConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: usize,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
}

impl Default for TextEncoderConfig {
    /// `RobertaConfig()`'s class defaults (transformers 4.x), which fill what a
    /// `config.json` leaves out.
    fn default() -> Self {
        TextEncoderConfig {
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 1,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
        }
    }
}

impl TextEncoderConfig {
    /// roberta-base's `config.json`, what upstream reads for `tokenizer: roberta-base`.
    pub fn roberta_base() -> Self {
        TextEncoderConfig { max_position_embeddings: 514, type_vocab_size: 1, layer_norm_eps: 1e-5, ..Default::default() }
    }
}

impl M3aeConfig {
    /// A config file: upstream's config dict as JSON. Every key must be known
    /// ([`keys::check`]); missing keys take upstream's defaults.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        keys::build_config(Some(keys::read_json(path)?), &path.display().to_string(), &[], None)
    }

    /// Rejects configs the model cannot be built from, naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("`{key}`: {why}")));
        if self.hidden_size <= 0 || self.num_heads <= 0 || self.hidden_size % self.num_heads != 0 {
            return bad("num_heads", format!("hidden_size {} is not a multiple of num_heads {}", self.hidden_size, self.num_heads));
        }
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return bad("image_size", format!("{} is not a multiple of patch_size {}", self.image_size, self.patch_size));
        }
        if self.mim_decoder_num_heads <= 0 || self.mim_decoder_hidden_size % self.mim_decoder_num_heads != 0 {
            return bad("mim_decoder_num_heads", format!("does not divide mim_decoder_hidden_size {}", self.mim_decoder_hidden_size));
        }
        if self.mim_decoder_hidden_size % 4 != 0 {
            return bad("mim_decoder_hidden_size", "the 2-D sin-cos table needs a multiple of 4".into());
        }
        if self.mim_layer < -1 || self.mim_layer >= self.num_top_layer as i64 {
            return bad("mim_layer", format!("{} is outside -1..{}", self.mim_layer, self.num_top_layer));
        }
        if !(0.0..1.0).contains(&self.mim_prob) {
            return bad("mim_prob", format!("{} is outside [0, 1)", self.mim_prob));
        }
        if let Some(v) = &self.vision_encoder_config {
            // CLIP: heads = width // 64, and nn.MultiheadAttention needs width % heads == 0
            if v.heads() < 1 || v.width % v.heads() != 0 {
                return bad("vision_encoder_config.width", format!("{} gives CLIP {} head(s) of width/64: it must be at least 64 and divisible by its head count", v.width, v.heads()));
            }
        }
        if let Some(t) = &self.language_encoder_config {
            if t.num_attention_heads <= 0 || t.hidden_size % t.num_attention_heads != 0 {
                return bad("language_encoder_config.num_attention_heads", format!("{} does not divide hidden_size {}", t.num_attention_heads, t.hidden_size));
            }
        }
        if let DecayPower::Named(name) = &self.decay_power {
            if name != "cosine" {
                return bad("decay_power", format!("`{name}` is neither a number nor \"cosine\""));
            }
        }
        self.precision.mode()?;
        if self.loss_names.cls > 0.0 && !self.melinda_label_size.contains_key(&self.label_column_name) {
            return bad("label_column_name", format!("`{}` is not a key of melinda_label_size", self.label_column_name));
        }
        Ok(())
    }

    /// The number of image patches per side at `image_size`.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// `melinda_label_size[label_column_name]`: the classification head's width.
    pub fn cls_label_size(&self) -> i64 {
        self.melinda_label_size.get(&self.label_column_name).copied().unwrap_or(0)
    }

    pub fn vision(&self) -> Result<VisionEncoderConfig> {
        self.vision_encoder_config
            .or_else(|| VisionEncoderConfig::preset(&self.vit))
            .ok_or_else(|| Error::Config(format!("`vit`: unknown CLIP model `{}` and no vision_encoder_config", self.vit)))
    }

    /// The RoBERTa config; resolved beforehand by [`text::resolve`], never defaulted here.
    pub fn text(&self) -> Result<TextEncoderConfig> {
        self.language_encoder_config.ok_or_else(|| {
            Error::Config("`language_encoder_config`: the RoBERTa config was not resolved (state it, or set `tokenizer` to a folder holding its config.json)".into())
        })
    }
}
