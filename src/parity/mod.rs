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
use report::Row;

/// The outcome of checking one set.
pub struct ParityOutcome {
    pub set: String,
    pub rows: Vec<Row>,
    pub computed: BTreeMap<String, Tensor>,
}

impl ParityOutcome {
    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.passed()).collect()
    }
    pub fn table(&self) -> String {
        report::render(&self.set, &self.rows)
    }
}

/// Checks one set directory of either kind (model or preprocessing).
pub fn check_set(dir: &Path, device: Device) -> Result<ParityOutcome> {
    let set = GoldenSet::load(dir)?;
    let (computed, mut extra_rows) = if set.is_model_set() {
        model_set::compute(&set, device)?
    } else {
        return Err(Error::Parity(format!("{}: preprocessing sets are not supported yet", dir.display())));
    };
    let mut rows = report::compare(&set.goldens, &computed);
    rows.append(&mut extra_rows);
    Ok(ParityOutcome { set: set.name(), rows, computed })
}
