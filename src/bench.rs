//! Benchmark workloads, the Rust half of `bench/run.sh` (the Python half runs upstream's
//! modules on the same weights and inputs). Each run reports the median time per run and
//! the process's peak resident memory; see bench/README.md for the contract.
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::weights::SafetensorsFile;
use crate::error::{Error, Result};
use crate::model::{InferInput, InferOptions, M3aeTransformerSs};
use crate::train::pretrain::{pretrain_gradients, PretrainBatch};
use crate::train::optim::AdamW;
use crate::train::precision::{self, Compute};
use crate::config::PrecisionMode;
use crate::tasks::retrieval::retrieval_scores;
use crate::weights::{load_model_folder, read_safetensors, write_safetensors, StateDict};

/// One workload's measurements, in the JSON shape both halves print.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    /// Median seconds per run.
    pub seconds: f64,
    pub runs: Vec<f64>,
    pub peak_rss_mb: f64,
    /// Counted on the PyTorch side only (FlopCounterMode); null here.
    pub flops: Option<f64>,
    pub gflops_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs_diff_vs_upstream: Option<f64>,
    pub torch_threads: i32,
    pub implementation: &'static str,
    /// Where it ran: `cpu`, `cuda:0`.
    pub device: String,
    /// train: median seconds of each phase of a step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<TrainPhases>,
}

/// Where a pre-training step's time goes (median over the timed runs), named as on the
/// PyTorch side: `training_step`, `loss.backward()`, `optimizer.step()`.
#[derive(Debug, Default, Serialize)]
pub struct TrainPhases {
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Python's `statistics.median`: the middle value, or the mean of the two middle ones.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Waits for the device's queued kernels (a no-op on the CPU), so a timing covers the work.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Runs `f` once to warm up, then `repeats` timed times (synchronized on CUDA).
fn timed(device: Device, repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    sync(device);
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f()?;
            sync(device);
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn input<'a>(inputs: &'a StateDict, dir: &Path, name: &str) -> Result<&'a Tensor> {
    inputs.get(name).ok_or_else(|| Error::MissingTensor { path: dir.join("inputs.safetensors"), key: name.into() })
}

/// Workload 1: `infer` without gradients.
fn infer(model: &M3aeTransformerSs, inputs: &StateDict, dir: &Path, repeats: usize) -> Result<Vec<f64>> {
    let (image, ids, masks) = (input(inputs, dir, "infer.image")?, input(inputs, dir, "infer.text_ids")?, input(inputs, dir, "infer.text_masks")?);
    let batch = InferInput { image, text_ids: ids, text_masks: masks, text_ids_mlm: None, mim_noise: None };
    timed(image.device(), repeats, || tch::no_grad(|| model.infer(&batch, &InferOptions::default()).map(|_| ())))
}

/// Workload 2: one pre-training step, MLM + MIM + ITM forward and backward, then AdamW:
/// [`pretrain_gradients`], which backpropagates each objective after its forward and
/// encodes the plain images once for MLM and ITM. Returns the step times and the median
/// time of each phase (forward and backward summed over the three objectives).
/// `compute`: fp32, or bf16 autocast (`--bf16`: fp32 weights, gradients and AdamW).
fn train_step(model: &M3aeTransformerSs, opt: &mut AdamW, inputs: &StateDict, dir: &Path, repeats: usize, compute: Compute) -> Result<(Vec<f64>, TrainPhases)> {
    let get = |n: &str| input(inputs, dir, &format!("train.{n}"));
    // the mixed ITM batch holds each negative row's false image, the one row read there
    let batch = PretrainBatch {
        image: get("image")?,
        text_ids: get("text_ids")?,
        text_masks: get("text_masks")?,
        text_ids_mlm: get("text_ids_mlm")?,
        text_labels_mlm: get("text_labels_mlm")?,
        mim_noise: Some(get("mim_noise")?),
        itm_labels: get("itm_labels")?,
        false_image: get("itm_image")?,
    };
    let mut phases: [Vec<f64>; 3] = Default::default();
    let runs = timed(batch.image.device(), repeats, || {
        let step = precision::autocast(compute, || pretrain_gradients(model, opt, &batch, true))??;
        let t = Instant::now();
        opt.apply(step.gradients, 1.0);
        for (v, x) in phases.iter_mut().zip([step.times.forward.as_secs_f64(), step.times.backward.as_secs_f64(), t.elapsed().as_secs_f64()]) {
            v.push(x);
        }
        Ok(())
    })?;
    // the first entry is the untimed warm-up
    let [f, b, o] = phases.map(|v| median(&v[1..]));
    Ok((runs, TrainPhases { forward: f, backward: b, optimizer: o }))
}

fn matmul_gflops() -> (Vec<f64>, f64) {
    let n = 4096i64;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let runs = timed(Device::Cpu, 3, || {
        let _ = a.matmul(&b);
        Ok(())
    })
    .expect("matmul cannot fail");
    let gf = 2.0 * (n as f64).powi(3) / median(&runs) / 1e9;
    (runs, gf)
}

/// Runs one workload on the weights and inputs of a `bench/upstream_bench.py prepare` folder.
/// `bf16` casts the weights and the floating-point inputs to bfloat16 (infer and retrieval),
/// or runs the step under bf16 autocast (train: `precision: "bf16"`).
pub fn run(dir: &Path, workload: &str, repeats: usize, device: Device, bf16: bool) -> Result<BenchReport> {
    if bf16 && !matches!(workload, "infer" | "retrieval" | "train") {
        return Err(Error::input("--bf16", format!("applies to infer, retrieval and train, not `{workload}`")));
    }
    let mut report = BenchReport {
        workload: workload.into(),
        seconds: 0.0,
        runs: vec![],
        peak_rss_mb: 0.0,
        flops: None,
        gflops_per_s: None,
        max_abs_diff_vs_upstream: None,
        torch_threads: tch::get_num_threads(),
        implementation: "rust (tch)",
        device: crate::parity::report::device_name(device),
        phases: None,
    };
    if workload == "matmul" {
        let (runs, gf) = matmul_gflops();
        report.runs = runs;
        report.gflops_per_s = Some(gf);
    } else if workload == "load" {
        // a ready model, then the timed part: read the checkpoint and copy it in
        let loaded = load_model_folder(dir, "state_dict.safetensors", device)?;
        let path = dir.join("state_dict.safetensors");
        report.runs = timed(device, repeats, || SafetensorsFile::open(&path)?.load_into(&loaded.vs).map(|_| ()))?;
    } else {
        let mut loaded = load_model_folder(dir, "state_dict.safetensors", device)?;
        // train: fp32 weights under autocast; infer and retrieval: the weights cast, as the PyTorch side does
        let train_bf16 = bf16 && workload == "train";
        let compute = precision::compute_for(if train_bf16 { PrecisionMode::Bf16 } else { PrecisionMode::Fp32 }, device)?;
        let kind = if bf16 && !train_bf16 { Kind::BFloat16 } else { Kind::Float };
        if train_bf16 {
            report.implementation = "rust (tch), bf16 autocast";
        } else if bf16 {
            loaded.vs.bfloat16();
            report.implementation = "rust (tch), bf16";
        }
        let to_run = |v: Tensor| if v.is_floating_point() { v.to_device(device).to_kind(kind) } else { v.to_device(device) };
        let inputs: StateDict = read_safetensors(&dir.join("inputs.safetensors"))?.into_iter().map(|(k, v)| (k, to_run(v))).collect();
        let model = &loaded.model;
        report.runs = match workload {
            "infer" => infer(model, &inputs, dir, repeats)?,
            "train" => {
                let (runs, phases) = train_step(model, &mut AdamW::new(&loaded.vs, &model.config), &inputs, dir, repeats, compute)?;
                report.phases = Some(phases);
                runs
            }
            "retrieval" => {
                let (images, ids, masks) = (input(&inputs, dir, "retrieval.images")?, input(&inputs, dir, "retrieval.text_ids")?, input(&inputs, dir, "retrieval.text_masks")?);
                let mut scores = None;
                let runs = timed(device, repeats, || {
                    scores = Some(tch::no_grad(|| retrieval_scores(model, images, ids, masks))?);
                    Ok(())
                })?;
                let scores = scores.expect("timed runs at least once");
                write_safetensors(&dir.join("retrieval_scores_rust.safetensors"), [("scores", &scores)])?;
                let upstream = dir.join("retrieval_scores_upstream.safetensors");
                if upstream.is_file() {
                    let up = read_safetensors(&upstream)?;
                    let u = up.get("scores").ok_or_else(|| Error::MissingTensor { path: upstream.clone(), key: "scores".into() })?;
                    let rows = u.size()[0];
                    let diff = (scores.narrow(0, 0, rows).to_device(Device::Cpu) - u).abs().max();
                    report.max_abs_diff_vs_upstream = Some(f64::try_from(diff)?);
                }
                runs
            }
            other => return Err(Error::input("workload", format!("`{other}` is not one of infer, train, retrieval, load, matmul"))),
        };
    }
    report.seconds = median(&report.runs);
    report.peak_rss_mb = peak_rss_mb();
    Ok(report)
}
