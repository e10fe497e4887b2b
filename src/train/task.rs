//! The tasks `m3ae pretrain`, `finetune` and `test` run: which objective family, which
//! datasets, and upstream's named config for each (`config.py`'s `task_*`, plus `clip16` and
//! `text_roberta`, as upstream's run scripts add them).
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::M3aeConfig;
use crate::error::{Error, Result};

/// The objective family a task trains and evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// MLM + MIM + ITM on image–caption pairs.
    Pretrain,
    /// VQA: BCE over the answer vocabulary, scored by answer type.
    Vqa,
    /// MELINDA classification.
    Cls,
    /// Image–text retrieval: IRTR loss, recall@k.
    Irtr,
}

/// Every fine-tuning task, by its `m3ae finetune` name.
pub const FINETUNE_TASKS: &[&str] = &[
    "vqa_vqa_rad",
    "vqa_slack",
    "vqa_medvqa_2019",
    "cls_melinda_i_meth",
    "cls_melinda_i_meth_label",
    "cls_melinda_p_meth",
    "cls_melinda_p_meth_label",
    "irtr_roco",
];

/// A task: its name (`pretrain` or one of [`FINETUNE_TASKS`]) and family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
}

impl Task {
    pub fn pretrain() -> Task {
        Task { name: "pretrain".into(), kind: TaskKind::Pretrain }
    }

    /// A fine-tuning task by name, or an error listing them.
    pub fn finetune(name: &str) -> Result<Task> {
        let kind = match name {
            _ if !FINETUNE_TASKS.contains(&name) => {
                return Err(Error::Config(format!("unknown task `{name}`; the tasks are {}", FINETUNE_TASKS.join(", "))))
            }
            _ if name.starts_with("vqa_") => TaskKind::Vqa,
            _ if name.starts_with("cls_") => TaskKind::Cls,
            _ => TaskKind::Irtr,
        };
        Ok(Task { name: name.into(), kind })
    }

    /// Upstream's named config for the task, then `clip16` and `text_roberta`: the keys they
    /// set, to lay over upstream's defaults.
    pub fn preset(&self) -> Value {
        let mut p = match self.name.as_str() {
            "pretrain" => json!({
                "exp_name": "task_pretrain_m3ae", "datasets": ["medicat", "roco"],
                "loss_names": (json!({"itm": 1, "mlm": 1, "mim": 1})), "batch_size": 256, "max_epoch": 10,
                "max_steps": 100000, "warmup_steps": 0.1, "whole_word_masking": true, "vocab_size": 30522,
                "max_text_len": 64, "image_size": 224, "tokenizer": "bert-base-uncased",
                "train_transform_keys": ["clip"], "val_transform_keys": ["clip"], "learning_rate": 1e-5,
                "val_check_interval": 1.0, "lr_multiplier_head": 5, "lr_multiplier_multi_modal": 5,
                "num_top_layer": 6, "hidden_size": 768, "num_heads": 12, "precision": 16, "mim_layer": 3
            }),
            vqa if self.kind == TaskKind::Vqa => {
                let (batch, epochs, labels) = match vqa {
                    "vqa_vqa_rad" => (64, 50, 498),
                    "vqa_slack" => (32, 15, 222),
                    _ => (32, 10, 79),
                };
                json!({
                    "exp_name": format!("task_finetune_{vqa}"), "datasets": [vqa],
                    "loss_names": (json!({"vqa": 1})), "batch_size": batch, "max_epoch": epochs,
                    "max_steps": null, "warmup_steps": 0.1, "draw_false_image": 0, "learning_rate": 5e-6,
                    "val_check_interval": 1.0, "lr_multiplier_head": 50, "lr_multiplier_multi_modal": 5,
                    "tokenizer": "bert-base-uncased", "max_text_len": 32, "input_text_embed_size": 768,
                    "vit": "ViT-B/32", "train_transform_keys": ["clip"], "val_transform_keys": ["clip"],
                    "input_image_embed_size": 768, "image_size": 576, "vqa_label_size": labels
                })
            }
            cls if self.kind == TaskKind::Cls => json!({
                "exp_name": format!("task_finetune_{cls}"), "datasets": ["cls_melinda"],
                "loss_names": (json!({"cls": 1})), "batch_size": 16, "max_epoch": 20, "max_steps": null,
                "warmup_steps": 0.1, "draw_false_image": 0, "learning_rate": 5e-6, "lr_multiplier_head": 10,
                "lr_multiplier_multi_modal": 5, "tokenizer": "bert-base-uncased", "max_text_len": 128,
                "input_text_embed_size": 768, "vit": "ViT-B/32", "train_transform_keys": ["clip"],
                "val_transform_keys": ["clip"], "input_image_embed_size": 768, "image_size": 384,
                "label_column_name": cls.trim_start_matches("cls_melinda_")
            }),
            _ => json!({
                "exp_name": "task_finetune_irtr_roco", "datasets": ["irtr_roco"],
                "loss_names": (json!({"irtr": 1})), "batch_size": 256, "max_epoch": 10, "max_steps": null,
                "warmup_steps": 0.1, "get_recall_metric": true, "draw_false_text": 15, "learning_rate": 5e-6,
                "lr_multiplier_head": 5, "lr_multiplier_multi_modal": 5, "tokenizer": "bert-base-uncased",
                "input_text_embed_size": 768, "vit": "ViT-B/32", "train_transform_keys": ["clip"],
                "val_transform_keys": ["clip"], "input_image_embed_size": 768, "image_size": 384
            }),
        };
        // clip16, then text_roberta
        let extra = json!({
            "vit": "ViT-B/16", "image_size": 224, "patch_size": 16, "train_transform_keys": ["clip"],
            "val_transform_keys": ["clip"], "input_image_embed_size": 768,
            "tokenizer": "roberta-base", "vocab_size": 50265, "input_text_embed_size": 768
        });
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        p
    }

    /// The Arrow files of `split`: `{data_root}/{dataset}_{split}.arrow` for each of the
    /// config's `datasets`. A missing file is an error naming its path.
    pub fn split_files(c: &M3aeConfig, split: &str) -> Result<Vec<PathBuf>> {
        if c.datasets.is_empty() {
            return Err(Error::Config("`datasets` is empty".into()));
        }
        c.datasets
            .iter()
            .map(|d| {
                let path = Path::new(&c.data_root).join(format!("{d}_{split}.arrow"));
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(Error::Config(format!("{}: the {split} split of `{d}` is missing (data_root `{}`)", path.display(), c.data_root)))
                }
            })
            .collect()
    }
}
