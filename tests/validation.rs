//! `cargo test --test validation`: the port's pre-training validation against upstream's own
//! (`validation_step` + `epoch_wrapup`) on the same weights: parity/val-pretrain (40 val pairs
//! of the generated data, a small model pre-trained by the port, and `reference.json`,
//! upstream's metrics over 1,000 draws, made by scripts/make_val_reference.py).
mod common;

use m3ae::data::loader::Loader;
use m3ae::dist::ddp::Ddp;
use m3ae::train::evaluate::evaluate;
use m3ae::train::metrics::PhaseMetrics;
use m3ae::train::setup::{load_for_eval, Pipeline};
use m3ae::train::task::TaskKind;
use serde_json::{json, Value};
use tch::{Device, Kind};

use common::{set, sets};

/// The metrics compared, as upstream logs them, and `n_masked`, the MLM targets of a pass
/// (reference.json's `metrics` names its columns).
const METRICS: [&str; 4] = ["mlm/val/loss_epoch", "mlm/val/accuracy_epoch", "mim/val/loss_epoch", "n_masked"];

/// Draws of the port's validation (seeds 0..PORT_DRAWS).
const PORT_DRAWS: u64 = 200;

/// The port's val metrics ([`METRICS`]) on the set, one row per draw: each draw a whole
/// validation pass with `seed` = the draw (its MLM masks and replacements, MIM noise, ITM
/// pairing and false images), and the labels its batches carried, counted on the same
/// batches (the loader is deterministic per seed).
fn port_draws(draws: u64) -> Vec<[f64; 4]> {
    let dir = set("val-pretrain");
    let overrides = sets(json!({"data_root": dir.join("data"), "tokenizer": dir.join("tokenizer"), "test_only": true, "num_workers": 0}));
    let (config, built) = load_for_eval(&dir.join("model"), None, &overrides, Device::Cpu).unwrap();
    (0..draws)
        .map(|seed| {
            let pipe = Pipeline::new(&m3ae::config::M3aeConfig { seed, ..config.clone() }).unwrap();
            let split = pipe.split("val", false).unwrap();
            let ev = evaluate(&built.model, TaskKind::Pretrain, &pipe, &split, "val", false, &mut PhaseMetrics::default(), &Ddp::single(Device::Cpu)).unwrap();
            let mut loader = Loader::new(split.data.clone(), pipe.tokenizer.clone(), split.transforms.clone(), pipe.collator(), split.loader.clone(), 0).unwrap();
            let mut n_masked = 0;
            while let Some((_, batch)) = loader.next_slot() {
                n_masked += i64::try_from(batch.unwrap().unwrap().text.labels_mlm.ne(-100).sum(Kind::Int64)).unwrap();
            }
            METRICS.map(|m| if m == "n_masked" { n_masked as f64 } else { ev.get(m).unwrap_or_else(|| panic!("no {m}")) })
        })
        .collect()
}

/// (mean, standard error of the mean).
fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// On the same weights and val split, the port's validation and upstream's give the same MLM
/// loss, MLM accuracy and MIM loss, and mask as many tokens, averaged over independent draws.
///
/// Each side's metric is a mean over draws of a per-draw value whose spread comes only from
/// the draws (masks, replacements, MIM noise; the data and weights are fixed). With equal
/// expectations, the difference of the two means over n (port) and m (upstream) independent
/// draws has mean 0 and variance s_p²/n + s_u²/m (s: the per-draw standard deviations), and is
/// close to normal (each per-draw value already averages hundreds of tokens or patches, and the
/// means average n = 200 and m = 1,000 of them). The bound is 2 of those combined standard
/// errors, √(s_p²/n + s_u²/m), per metric: a 5% false alarm per metric for a random choice of
/// seeds; the seeds are fixed (port 0..200, upstream 1000..2000), so the outcome is
/// deterministic. On this set the bounds are about 0.013 (MLM loss, 0.4%), 0.004 (accuracy),
/// 0.0011 (MIM loss) and 1.4 tokens of 212. Caught (one-line mutations of the port): the
/// masking probability × 1.2 (n_masked +39), `<s>` and `</s>` maskable (n_masked +12, MLM
/// loss +0.52), 70% `<mask>` instead of 80% (MLM loss +0.020), and the MLM loss averaged over
/// masked tokens instead of over batches as `Scalar` does (−0.028; the last batch holds 8 of
/// the 40 pairs).
#[test]
fn validation_matches_upstreams_on_the_same_weights() {
    let path = set("val-pretrain").join("reference.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let names: Vec<&str> = r["metrics"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let reference: Vec<Vec<f64>> = r["draws"].as_array().unwrap().iter().map(|d| d.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    // one thread: libtorch's pool only adds overhead to these tiny batches (200 passes)
    tch::set_num_threads(1);
    let port = port_draws(PORT_DRAWS);
    let mut failures = Vec::new();
    for (k, metric) in METRICS.iter().enumerate() {
        let col = names.iter().position(|n| n == metric).unwrap_or_else(|| panic!("{} has no {metric}", path.display()));
        let up: Vec<f64> = reference.iter().map(|d| d[col]).collect();
        let ((p, sp), (u, su)) = (mean_se(&port.iter().map(|r| r[k]).collect::<Vec<_>>()), mean_se(&up));
        let bound = 2.0 * (sp * sp + su * su).sqrt();
        println!("{metric}: port {p:.5} ± {sp:.5} ({} draws), upstream {u:.5} ± {su:.5} ({} draws), difference {:+.5}, bound {bound:.5}", port.len(), up.len(), p - u);
        if (p - u).abs() > bound {
            failures.push(format!("{metric}: port {p:.5} vs upstream {u:.5}, |difference| {:.5} > {bound:.5}", (p - u).abs()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
