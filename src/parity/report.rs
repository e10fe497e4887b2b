//! Comparison of computed tensors against goldens, with the tolerances of parity/README.md.
use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::weights::StateDict;

/// CLIP's normalization std, to measure transform errors in pixel units.
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// What a golden measures, and so its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Forward,
    Loss,
    Grad,
    AdamW,
    /// Image transforms: absolute error per pixel before normalization, ≤ 2/255.
    Transform,
    /// Token ids, masks, offsets: equal.
    Exact,
}

impl Category {
    pub fn of(name: &str) -> Self {
        match name.split('.').next().unwrap_or("") {
            "grad" => Category::Grad,
            "adamw" => Category::AdamW,
            "loss" => Category::Loss,
            "pre" | "clip" => Category::Transform,
            "tok" => Category::Exact,
            _ => Category::Forward,
        }
    }

    pub fn tolerance(self) -> f64 {
        match self {
            Category::Forward | Category::Loss | Category::AdamW => 1e-5,
            Category::Grad => 1e-4,
            Category::Transform => 2.0 / 255.0,
            Category::Exact => 0.0,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Category::Forward => "forward",
            Category::Loss => "loss",
            Category::Grad => "grad",
            Category::AdamW => "adamw",
            Category::Transform => "transform",
            Category::Exact => "exact",
        }
    }
}

/// One golden's verdict.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub category: Category,
    /// None when the port did not produce the tensor or produced another shape.
    pub err: Option<f64>,
    /// The bound applied: the category's tolerance times the run's scale (1 on CPU, 10 on CUDA).
    pub tol: f64,
    pub note: String,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.err.is_some_and(|e| e <= self.tol)
    }
}

/// err(t) = max|port − golden| / max(max|golden|, 1e-6); transforms in pixel units.
pub fn error(name: &str, port: &Tensor, golden: &Tensor) -> f64 {
    let p = port.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let g = golden.to_kind(Kind::Double);
    let diff = (&p - &g).abs();
    match Category::of(name) {
        Category::Transform => {
            let std = Tensor::from_slice(&CLIP_STD).view([3, 1, 1]);
            f64::try_from((diff * std).max()).unwrap_or(f64::NAN)
        }
        _ => {
            let scale = f64::try_from(g.abs().max()).unwrap_or(0.0).max(1e-6);
            f64::try_from(diff.max()).unwrap_or(f64::NAN) / scale
        }
    }
}

/// Compares every golden (inputs aside) with what the port computed.
pub fn compare(goldens: &StateDict, computed: &BTreeMap<String, Tensor>, tol_scale: f64) -> Vec<Row> {
    goldens
        .iter()
        .filter(|(name, _)| !name.starts_with("input."))
        .map(|(name, golden)| {
            let category = Category::of(name);
            let (err, note) = match computed.get(name) {
                None => (None, "not produced by the port".to_string()),
                Some(t) if t.size() != golden.size() => (None, format!("shape {:?}, golden {:?}", t.size(), golden.size())),
                Some(t) => {
                    let e = error(name, t, golden);
                    (Some(if e.is_nan() { f64::INFINITY } else { e }), String::new())
                }
            };
            Row { name: name.clone(), category, err, tol: category.tolerance() * tol_scale, note }
        })
        .collect()
}

/// The full table, one line per tensor, then the worst error per category.
pub fn render(set: &str, device: tch::Device, rows: &[Row]) -> String {
    let mut out = format!("parity set `{set}` on {}: {} tensors\n{:<72} {:>10} {:>9}  verdict\n", device_name(device), rows.len(), "tensor", "err", "tol");
    for r in rows {
        let err = r.err.map(|e| format!("{e:.2e}")).unwrap_or_else(|| "-".into());
        let verdict = if r.passed() { "ok" } else { "FAIL" };
        out += &format!("{:<72} {:>10} {:>9.1e}  {verdict} {}\n", r.name, err, r.tol, r.note);
    }
    out += &summary(set, rows);
    out
}

/// `cpu`, `cuda:0`, …: printed on every table and report.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Worst error per category, and the pass count.
pub fn summary(set: &str, rows: &[Row]) -> String {
    let mut worst: BTreeMap<Category, (f64, &str, usize, f64)> = BTreeMap::new();
    for r in rows {
        let e = r.err.unwrap_or(f64::INFINITY);
        let w = worst.entry(r.category).or_insert((0.0, "", 0, r.tol));
        w.2 += 1;
        if e >= w.0 {
            *w = (e, &r.name, w.2, r.tol);
        }
    }
    let mut out = format!("summary `{set}`:\n");
    for (c, (e, name, n, tol)) in worst {
        out += &format!("  {:<10} {n:>4} tensors  worst {e:.2e} (tol {tol:.1e})  {name}\n", c.label());
    }
    let failed = rows.iter().filter(|r| !r.passed()).count();
    out += &format!("{} within tolerance, {} out of tolerance\n", rows.len() - failed, failed);
    out
}
