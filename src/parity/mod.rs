//! Parity against the upstream reference: golden sets, the port's computation of the same
//! tensors, and the comparison table.
pub mod golden;
pub mod model_set;
pub mod report;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Tensor};

use crate::error::{Error, Result};
use golden::GoldenSet;
pub use model_set::WeightsSource;
use report::Row;

/// The outcome of checking one set.
pub struct ParityOutcome {
    pub set: String,
    /// Where the port ran.
    pub device: Device,
    pub rows: Vec<Row>,
    pub computed: BTreeMap<String, Tensor>,
}

impl ParityOutcome {
    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.passed()).collect()
    }
    pub fn table(&self) -> String {
        report::render(&self.set, self.device, &self.rows)
    }
}

/// Checks one set directory of either kind (model or preprocessing) at the stated tolerances,
/// model sets from their `state_dict.safetensors`.
pub fn check_set(dir: &Path, device: Device) -> Result<ParityOutcome> {
    check_set_with(dir, WeightsSource::StateDict, device, 1.0)
}

/// The largest tolerance scale accepted: the CUDA runs' 10.
pub const MAX_TOL_SCALE: f64 = 10.0;

/// As `check_set`, with the model's weights from `source` and every tolerance multiplied by
/// `tol_scale` (1 to [`MAX_TOL_SCALE`]; 10 for CUDA runs).
pub fn check_set_with(dir: &Path, source: WeightsSource, device: Device, tol_scale: f64) -> Result<ParityOutcome> {
    if !(1.0..=MAX_TOL_SCALE).contains(&tol_scale) {
        return Err(Error::Parity(format!("tolerance scale {tol_scale} must be between 1 and {MAX_TOL_SCALE}")));
    }
    let set = GoldenSet::load(dir)?;
    let (computed, mut extra_rows) = if set.is_model_set() {
        model_set::compute(&set, source, device, tol_scale)?
    } else {
        (crate::data::preprocess_set::compute(dir)?, Vec::new())
    };
    let mut rows = report::compare(&set.goldens, &computed, tol_scale);
    rows.append(&mut extra_rows);
    Ok(ParityOutcome { set: set.name(), device, rows, computed })
}
