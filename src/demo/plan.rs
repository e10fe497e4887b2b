//! The study as a list of `m3ae` command lines: per seed, one pre-training run per variant,
//! then each fine-tuning task from each variant (and from no pre-training), then `m3ae test`
//! on the best fine-tuned checkpoint.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// A pre-training variant of the ablation, or the no-pre-training baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// MLM + MIM + ITM, the paper's model.
    Full,
    /// MIM off.
    NoMim,
    /// MLM off.
    NoMlm,
    /// ITM only.
    None,
    /// No pre-training: fine-tuning starts from a fresh model.
    Scratch,
}

impl Variant {
    /// The pre-training variants, in table order.
    pub const PRETRAINED: [Variant; 4] = [Variant::Full, Variant::NoMim, Variant::NoMlm, Variant::None];

    /// The name used in `--variants`, folder names and the report.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::NoMim => "no-mim",
            Variant::NoMlm => "no-mlm",
            Variant::None => "none",
            Variant::Scratch => "no-pretraining",
        }
    }

    /// The objectives switched off (`--ablate`).
    pub fn ablated(self) -> &'static [&'static str] {
        match self {
            Variant::Full | Variant::Scratch => &[],
            Variant::NoMim => &["mim"],
            Variant::NoMlm => &["mlm"],
            Variant::None => &["mim", "mlm"],
        }
    }

    /// Whether the variant pre-trains MIM (it has a reconstruction to show).
    pub fn has_mim(self) -> bool {
        matches!(self, Variant::Full | Variant::NoMlm)
    }

    /// A pre-training variant by name.
    pub fn parse(name: &str) -> Result<Variant> {
        Variant::PRETRAINED.into_iter().find(|v| v.name() == name).ok_or_else(|| {
            Error::Config(format!("unknown variant `{name}`; the variants are full, no-mim, no-mlm, none"))
        })
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// Stage 0 (`m3ae pretrain-encoders`): the encoders every run starts from.
    Encoders,
    Pretrain,
    Finetune { task: String },
    Test { task: String },
}

/// One `m3ae` invocation of the study.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique name, also the run folder's (e.g. `pretrain-full-s0`, `vqa_vqa_rad-no-mim-s1`).
    pub id: String,
    pub kind: JobKind,
    pub variant: Variant,
    pub seed: u64,
    /// The run folder (for `Test`, the fine-tuning run it evaluates).
    pub run_dir: PathBuf,
    /// The arguments after `m3ae`.
    pub args: Vec<String>,
    /// The arguments that continue the run after an interruption (`--resume`).
    pub resume_args: Option<Vec<String>>,
    /// Jobs (indices) that must finish first.
    pub deps: Vec<usize>,
    /// Optimizer steps the run takes (progress), when known.
    pub steps: Option<u64>,
}

/// What the study runs.
#[derive(Debug, Clone)]
pub struct StudySpec {
    /// The study folder: `runs/` and the report.
    pub out: PathBuf,
    /// Pre-training variants.
    pub variants: Vec<Variant>,
    /// Also fine-tune from no pre-training.
    pub scratch_baseline: bool,
    pub seeds: Vec<u64>,
    /// Fine-tuning tasks (e.g. `vqa_vqa_rad`, `irtr_roco`).
    pub tasks: Vec<String>,
    /// `--config` of every run.
    pub config_file: Option<PathBuf>,
    /// `--set` of every run.
    pub common: Vec<(String, Value)>,
    /// `--set` of the pre-training runs.
    pub pretrain: Vec<(String, Value)>,
    /// `--set` of each task's fine-tuning runs.
    pub finetune: Vec<(String, Vec<(String, Value)>)>,
    /// Stage 0: the arguments of one `m3ae pretrain-encoders` run that every pre-training run
    /// and the no-pre-training baseline wait for (`common` points `vit` and `tokenizer` at
    /// what it writes).
    pub encoders: Option<Vec<String>>,
    /// The report's `chance` row (empty: none).
    pub baselines: super::baselines::Baselines,
}

impl StudySpec {
    /// The run folders' parent.
    pub fn runs(&self) -> PathBuf {
        self.out.join("runs")
    }

    fn finetune_sets(&self, task: &str) -> &[(String, Value)] {
        self.finetune.iter().find(|(t, _)| t == task).map(|(_, s)| s.as_slice()).unwrap_or(&[])
    }
}

fn steps_of(sets: &[(String, Value)]) -> Option<u64> {
    sets.iter().rev().find(|(k, _)| k == "max_steps").and_then(|(_, v)| v.as_u64())
}

fn push_sets(args: &mut Vec<String>, sets: &[(String, Value)]) {
    for (k, v) in sets {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The jobs of `spec`, dependencies first.
pub fn plan(spec: &StudySpec) -> Vec<Job> {
    let runs = spec.runs();
    let mut jobs: Vec<Job> = Vec::new();
    let config: Vec<String> = spec.config_file.iter().flat_map(|c| ["--config".to_string(), path_arg(c)]).collect();
    // stage 0, shared by every seed and variant (its job carries seed 0 and the baseline's name)
    let stage0: Vec<usize> = match &spec.encoders {
        Some(args) => {
            jobs.push(Job { id: "encoders".into(), kind: JobKind::Encoders, variant: Variant::Scratch, seed: 0, run_dir: runs.join("encoders"), args: args.clone(), resume_args: None, deps: vec![], steps: None });
            vec![0]
        }
        None => vec![],
    };
    for &seed in &spec.seeds {
        let seed_set = vec![("seed".to_string(), Value::from(seed))];
        let mut starts: Vec<(Variant, Option<usize>)> = Vec::new();
        for &variant in &spec.variants {
            let id = format!("pretrain-{}-s{seed}", variant.name());
            let run_dir = runs.join(&id);
            let mut args = vec!["pretrain".to_string(), "--run-dir".into(), path_arg(&run_dir)];
            args.extend(config.iter().cloned());
            push_sets(&mut args, &spec.common);
            push_sets(&mut args, &spec.pretrain);
            push_sets(&mut args, &seed_set);
            for o in variant.ablated() {
                args.extend(["--ablate".to_string(), o.to_string()]);
            }
            let resume = vec!["pretrain".into(), "--run-dir".into(), path_arg(&run_dir), "--resume".into()];
            jobs.push(Job { id, kind: JobKind::Pretrain, variant, seed, run_dir, args, resume_args: Some(resume), deps: stage0.clone(), steps: steps_of(&spec.pretrain) });
            starts.push((variant, Some(jobs.len() - 1)));
        }
        if spec.scratch_baseline {
            starts.push((Variant::Scratch, None));
        }
        for task in &spec.tasks {
            for &(variant, pre) in &starts {
                let id = format!("{task}-{}-s{seed}", variant.name());
                let run_dir = runs.join(&id);
                let mut args = vec!["finetune".to_string(), task.clone(), "--run-dir".into(), path_arg(&run_dir)];
                args.extend(config.iter().cloned());
                push_sets(&mut args, &spec.common);
                push_sets(&mut args, spec.finetune_sets(task));
                // the pre-trained `last` checkpoint, or "" (a fresh model) for the baseline
                let load = pre.map(|i| path_arg(&jobs[i].run_dir.join("checkpoints/last"))).unwrap_or_default();
                push_sets(&mut args, &[("load_path".into(), Value::from(load))]);
                push_sets(&mut args, &seed_set);
                let resume = vec!["finetune".into(), task.clone(), "--run-dir".into(), path_arg(&run_dir), "--resume".into()];
                let steps = steps_of(spec.finetune_sets(task));
                jobs.push(Job { id: id.clone(), kind: JobKind::Finetune { task: task.clone() }, variant, seed, run_dir: run_dir.clone(), args, resume_args: Some(resume), deps: pre.map_or_else(|| stage0.clone(), |i| vec![i]), steps });
                let ft = jobs.len() - 1;
                let args = vec!["test".into(), task.clone(), "--run-dir".into(), path_arg(&run_dir), "--checkpoint".into(), "best".into(), "--split".into(), "test".into()];
                jobs.push(Job { id: format!("{id}-test"), kind: JobKind::Test { task: task.clone() }, variant, seed, run_dir, args, resume_args: None, deps: vec![ft], steps: None });
            }
        }
    }
    jobs
}
