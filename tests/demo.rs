//! `cargo test --test demo`: the ablation study's plan, its aggregation, and `m3ae demo
//! --quick` end to end (data generation, every job, the report, and a rerun that resumes).
use std::path::PathBuf;

use m3ae::demo::plan::{plan, JobKind, StudySpec, Variant};
use m3ae::demo::results::Cell;
use serde_json::{json, Value};

fn spec(out: &str) -> StudySpec {
    StudySpec {
        out: PathBuf::from(out),
        variants: Variant::PRETRAINED.to_vec(),
        scratch_baseline: true,
        seeds: vec![0, 1],
        tasks: vec!["vqa_vqa_rad".into(), "irtr_roco".into()],
        config_file: Some(PathBuf::from("/m/model.json")),
        common: vec![("num_workers".into(), json!(1))],
        pretrain: vec![("max_steps".into(), json!(7))],
        finetune: vec![("vqa_vqa_rad".into(), vec![("max_steps".into(), json!(3))])],
        encoders: None,
        baselines: Default::default(),
    }
}

#[test]
fn the_plan_ablates_each_variant_and_finetunes_from_its_checkpoint() {
    let jobs = plan(&spec("/s"));
    // per seed: 4 pre-training runs, then 2 tasks x 5 starts x (finetune + test)
    assert_eq!(jobs.len(), 2 * (4 + 2 * 5 * 2));
    let ids: std::collections::HashSet<_> = jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids.len(), jobs.len(), "job ids are unique");
    for j in &jobs {
        let args = j.args.join(" ");
        let seeded = args.contains(&format!("--set seed={}", j.seed));
        assert_eq!(seeded, !matches!(j.kind, JobKind::Test { .. }), "training runs take their seed: {args}");
        assert!(j.deps.iter().all(|&d| d < jobs.len() && jobs[d].seed == j.seed && jobs[d].variant == j.variant), "{}: deps of its own seed and variant", j.id);
        match &j.kind {
            JobKind::Pretrain => {
                assert!(args.starts_with("pretrain --run-dir /s/runs/pretrain-") && args.contains("--config /m/model.json"), "{args}");
                let ablated: Vec<&str> = j.args.windows(2).filter(|w| w[0] == "--ablate").map(|w| w[1].as_str()).collect();
                assert_eq!(ablated, j.variant.ablated(), "{}", j.id);
                assert_eq!(j.steps, Some(7));
                assert!(j.deps.is_empty());
            }
            JobKind::Finetune { task } => {
                let load = j.args.iter().find_map(|a| a.strip_prefix("load_path=")).expect("load_path is set");
                if j.variant == Variant::Scratch {
                    assert_eq!(load, "\"\"", "the baseline starts from a fresh model");
                    assert!(j.deps.is_empty());
                } else {
                    let pre = &jobs[j.deps[0]];
                    assert_eq!(pre.kind, JobKind::Pretrain);
                    assert_eq!(load, format!("\"{}\"", pre.run_dir.join("checkpoints/last").display()));
                }
                assert_eq!(j.steps, if task == "vqa_vqa_rad" { Some(3) } else { None });
                assert!(!args.contains("--ablate"), "fine-tuning ablates nothing: {args}");
            }
            JobKind::Test { task } => {
                let ft = &jobs[j.deps[0]];
                assert_eq!(ft.kind, JobKind::Finetune { task: task.clone() });
                assert_eq!(j.run_dir, ft.run_dir);
                assert!(args.ends_with("--checkpoint best --split test"), "{args}");
            }
            JobKind::Encoders => panic!("no stage 0 was asked for"),
        }
    }
    // with stage 0: one job first, which every pre-training run and every baseline waits for
    let mut s = spec("/s");
    s.encoders = Some(vec!["pretrain-encoders".into(), "--out".into(), "/s/runs/encoders".into()]);
    let staged = plan(&s);
    assert_eq!(staged.len(), jobs.len() + 1);
    assert_eq!((staged[0].kind.clone(), staged[0].args.join(" ")), (JobKind::Encoders, "pretrain-encoders --out /s/runs/encoders".to_string()));
    for j in &staged[1..] {
        let waits = j.kind == JobKind::Pretrain || (j.variant == Variant::Scratch && matches!(j.kind, JobKind::Finetune { .. }));
        assert_eq!(j.deps.contains(&0), waits, "{}: deps {:?}", j.id, j.deps);
    }
}

#[test]
fn a_cell_is_the_mean_and_sample_standard_deviation() {
    let c = Cell::of(vec![0.5, 0.7, 0.9]).unwrap();
    assert!((c.mean - 0.7).abs() < 1e-12);
    assert!((c.spread - 0.2).abs() < 1e-12, "sample std of 0.5, 0.7, 0.9 is 0.2: {}", c.spread);
    assert_eq!(Cell::of(vec![0.3]).unwrap().spread, 0.0);
    assert!(Cell::of(vec![]).is_none());
}

fn demo(out: &std::path::Path) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae")).args(["demo", "--quick", "--seeds", "2", "--out"]).arg(out).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "m3ae demo failed:\n{text}\n{}", String::from_utf8_lossy(&o.stderr));
    text
}

#[test]
fn the_paired_interval_matches_a_worked_example() {
    use m3ae::demo::stats::{paired_interval, t_critical_95};
    // Student t 0.975 quantiles from the tables (Abramowitz & Stegun 26.7; to 6 digits)
    for (df, t) in [(1, 12.7062), (2, 4.30265), (3, 3.18245), (4, 2.77645), (9, 2.26216), (30, 2.04227)] {
        assert!((t_critical_95(df) - t).abs() < 1e-4, "df {df}: {} against {t}", t_critical_95(df));
    }
    // three seeds: differences 0.05, 0.08, 0.03; mean 0.053333; sd sqrt(0.0012667 / 2) = 0.025166;
    // half width 4.302653 · 0.025166 / sqrt(3) = 0.062516: [-0.009183, 0.115849], not resolved
    let i = paired_interval(&[0.50, 0.55, 0.53], &[0.45, 0.47, 0.50]).unwrap();
    assert!((i.mean - 0.053333).abs() < 1e-6 && (i.sd - 0.025166).abs() < 1e-6, "{i:?}");
    assert!((i.low + 0.009183).abs() < 1e-5 && (i.high - 0.115849).abs() < 1e-5, "{i:?}");
    assert!(!i.resolved && i.n == 3);
    // shifting the second variant down by 0.02 moves the interval to [0.0108, 0.1358]: resolved
    let j = paired_interval(&[0.50, 0.55, 0.53], &[0.43, 0.45, 0.48]).unwrap();
    assert!(j.resolved && (j.low - 0.010817).abs() < 1e-5, "{j:?}");
    assert!(paired_interval(&[0.5], &[0.4]).is_none() && paired_interval(&[0.5, 0.6], &[0.4]).is_none());
}

#[test]
fn the_quick_demo_runs_end_to_end_writes_the_report_and_resumes() {
    let out = std::env::temp_dir().join(format!("m3ae-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let printed = demo(&out);
    for f in ["report.md", "results.json", "losses.png", "metrics.png", "mim_reconstructions.png", "attention.png"] {
        assert!(std::fs::metadata(out.join(f)).map(|m| m.len() > 500).unwrap_or(false), "{f} is missing or empty");
    }
    let results: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let rows = results["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["variant"].as_str().unwrap()).collect();
    assert_eq!(names, ["full", "no-mim", "no-mlm", "none", "no-pretraining"]);
    for r in rows {
        let cells = r["cells"].as_object().unwrap();
        for m in ["VQA", "VQA closed", "VQA open", "IR R@1", "TR R@10"] {
            assert_eq!(cells[m]["values"].as_array().map(Vec::len), Some(2), "{}: {m} has one value per seed", r["variant"]);
        }
        let v = r["variant"].as_str().unwrap();
        assert_eq!(cells.contains_key("MIM loss"), v == "full" || v == "no-mlm", "{v}: MIM loss only where MIM ran");
        assert_eq!(cells.contains_key("MLM loss"), v == "full" || v == "no-mim", "{v}: MLM loss only where MLM ran");
        assert_eq!(cells.contains_key("ITM loss"), v != "no-pretraining");
    }
    assert!(printed.contains("| no-pretraining |"), "the table is printed:\n{printed}");
    // the chance row: R@1 = 1/8 with the quick study's 8 test images, MIM (192 − 1)/192
    assert!(printed.contains("| *chance* |") && printed.contains("| 12.5 |") && printed.contains("0.995"), "chance levels:\n{printed}");
    // the MLM row of the chance line: the commonest maskable token's share of the val captions
    let mlm = results["chance"]["MLM acc"].as_array().unwrap();
    assert!(mlm[0].as_f64().is_some_and(|x| x > 0.0 && x < 0.5) && mlm[1].as_str().unwrap().contains("roco_val.arrow"), "{mlm:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("m3ae pretrain --run-dir") && report.contains("--ablate mim"), "the report lists the exact commands");
    // stage 0 ran once, and every pre-training run and the baseline started from its encoders
    assert!(report.contains("m3ae pretrain-encoders --out"), "stage 0 is in the commands");
    for log in ["pretrain-full-s0.log", "pretrain-none-s1.log", "vqa_vqa_rad-no-pretraining-s0.log", "irtr_roco-no-pretraining-s1.log"] {
        let text = std::fs::read_to_string(out.join("runs").join(log)).unwrap();
        assert!(text.contains("encoders from") && text.contains("clip.pt"), "{log} loads stage 0's encoders");
    }
    assert!(report.contains("full − no-pretraining"), "the contrasts are reported");
    assert_eq!(results["contrasts"].as_array().map(Vec::len), Some(7 * 9), "7 contrasts × 9 fine-tuning metrics");
    // a rerun skips every finished job and writes the same table
    let again = demo(&out);
    assert!(again.contains("0 job(s) run now"), "{again}");
    let table = |s: &str| s.lines().filter(|l| l.starts_with('|')).map(String::from).collect::<Vec<_>>();
    assert_eq!(table(&printed), table(&again));
}

#[test]
fn bad_study_input_is_an_error_that_names_it() {
    let e = Variant::parse("no-itm").unwrap_err().to_string();
    assert!(e.contains("no-itm") && e.contains("full, no-mim, no-mlm, none"), "{e}");
    let o = m3ae::demo::DemoOptions { out: std::env::temp_dir().join("m3ae-demo-never-written"), seeds: Some(0), size: m3ae::demo::presets::Size::Quick, parallel: None };
    let e = m3ae::demo::run_demo(&o).unwrap_err().to_string();
    assert!(e.contains("--seeds"), "{e}");
    assert!(!o.out.exists(), "nothing is written for a refused study");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m3ae")).args(["ablate", "--tasks", "vqa_nope", "--out"]).arg(std::env::temp_dir().join("m3ae-ablate-never")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("unknown task `vqa_nope`"), "{err}");
}

#[test]
fn the_mlm_baseline_is_the_commonest_maskable_tokens_share() {
    use m3ae::data::arrow_write::{write_captions, CaptionRow, Flavor};
    use m3ae::data::tokenizer::TextTokenizer;
    let dir = std::env::temp_dir().join(format!("m3ae-mlm-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("roco_val.arrow");
    // the toy tokenizer splits "heart" into `he` `art`; "a" and "he" are one token each
    let rows: Vec<CaptionRow> = ["a", "a", "a", "he", "heart"]
        .iter()
        .enumerate()
        .map(|(i, c)| CaptionRow { image: vec![0], captions: vec![c.to_string()], image_id: format!("{i}.jpg"), split: "val".into() })
        .collect();
    write_captions(&file, &rows, Flavor::PANDAS1).unwrap();
    let toy = std::path::Path::new("parity/train-irtr/tokenizer");
    // `<s>`, `</s>` and padding are never targets: `a` is 3 of the 6 word tokens
    let (share, how) = m3ae::demo::baselines::mlm_majority(&file, &TextTokenizer::load(toy, 8).unwrap()).unwrap();
    assert!((share - 0.5).abs() < 1e-12, "{share}: {how}");
    assert!(how.contains("3 of the 6"), "{how}");
    // at max_text_len 3 "heart" keeps only `he`: 3 of 5
    let (share, _) = m3ae::demo::baselines::mlm_majority(&file, &TextTokenizer::load(toy, 3).unwrap()).unwrap();
    assert!((share - 0.6).abs() < 1e-12, "{share}");
    let e = m3ae::demo::baselines::mlm_majority(&dir.join("nope.arrow"), &TextTokenizer::load(toy, 8).unwrap()).unwrap_err().to_string();
    assert!(e.contains("nope.arrow"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_checks_compare_each_objective_with_its_baseline_and_say_which_are_met() {
    use m3ae::demo::checks::evaluate;
    use m3ae::demo::results::{Contrast, Row, StudyResults};
    use m3ae::demo::stats::paired_interval;
    let row = |variant: &str, cells: &[(&str, &[f64])]| Row { variant: variant.into(), cells: cells.iter().map(|(k, v)| (k.to_string(), Cell::of(v.to_vec()).unwrap())).collect() };
    let rows = vec![
        row("full", &[("ITM acc", &[0.82, 0.80, 0.81]), ("MLM acc", &[0.25, 0.24, 0.26]), ("MIM loss", &[0.70, 0.72, 0.71]), ("IR R@10", &[0.55, 0.50, 0.60]), ("TR R@10", &[0.40, 0.45, 0.50])]),
        row("none", &[("ITM acc", &[0.78, 0.80, 0.79])]),
    ];
    let baselines = [("MLM acc", 0.08), ("MIM loss", 0.995), ("IR R@10", 0.125), ("TR R@10", 0.125)].iter().map(|(k, v)| (k.to_string(), (*v, String::new()))).collect();
    let contrast = |column: &str, a: &[f64], b: &[f64]| Contrast { a: "full".into(), b: "no-pretraining".into(), column: column.into(), seeds: vec![0, 1, 2], interval: paired_interval(a, b) };
    let contrasts = vec![contrast("IR R@10", &[0.55, 0.50, 0.60], &[0.13, 0.12, 0.14]), contrast("VQA", &[0.3, 0.2, 0.35], &[0.3, 0.3, 0.3])];
    let checks = evaluate(&StudyResults { rows, curves: vec![], contrasts, baselines });
    let met = |what: &str| checks.iter().find(|c| c.what.starts_with(what)).map(|c| c.met).unwrap_or_else(|| panic!("no check `{what}` in {checks:?}"));
    assert!(met("full: ITM"), "0.81 ≥ 0.80");
    assert!(!met("none: ITM"), "0.79 < 0.80");
    assert!(met("full: MLM"), "0.25 ≥ 3 × 0.08");
    assert!(met("full: MIM"), "0.71 ≤ 0.8 × 0.995");
    assert!(met("full: IR R@10"), "0.55 ≥ 4 × 0.125");
    assert!(!met("full: TR R@10"), "0.45 < 0.5");
    // the transfer check takes the contrast whose interval sits highest: IR R@10, well above 0
    let t = checks.iter().find(|c| c.what.contains("no-pretraining")).unwrap();
    assert!(t.met && t.what.contains("IR R@10") && t.measured > 0.3, "{t:?}");
    assert_eq!(checks.len(), 7, "{checks:?}");
}
