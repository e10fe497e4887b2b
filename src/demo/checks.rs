//! What the study is meant to show, checked against what it measured: each objective above its
//! baseline on the val split, retrieval above chance, and transfer from pre-training. The report
//! prints every check with its number, met or not, so it states the result whatever it is.
use serde::Serialize;

use super::results::StudyResults;

/// One target and how the study did against it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked, e.g. `full: ITM val accuracy`.
    pub what: String,
    /// The measured value (mean over seeds; for a contrast, the lower end of its interval).
    pub measured: f64,
    /// The target, in words with its number.
    pub target: String,
    pub met: bool,
}

/// ITM's target val accuracy, for every variant that pre-trains it.
pub const ITM_ACCURACY: f64 = 0.80;
/// MLM's val accuracy must be this multiple of always guessing the commonest token.
pub const MLM_OVER_BASELINE: f64 = 3.0;
/// MIM's val loss must be at most this fraction of predicting zeros.
pub const MIM_OVER_ZEROS: f64 = 0.8;
/// `full`'s retrieval R@10 must be this multiple of chance.
pub const RECALL_OVER_CHANCE: f64 = 4.0;

/// The paper's finding on the same ablation, for comparison (not a target).
pub const PAPER_FINDING: &str = "The paper (Chen et al., MICCAI 2022) ablates the pre-training objectives on its benchmark \
and reports that MIM and MLM each improve the downstream results over pre-training without them, and that the two together do best.";

/// The checks of `results` (a check whose numbers are missing is left out).
pub fn evaluate(results: &StudyResults) -> Vec<Check> {
    let mean = |variant: &str, column: &str| results.rows.iter().find(|r| r.variant == variant).and_then(|r| r.cells.get(column)).map(|c| c.mean);
    let base = |column: &str| results.baselines.get(column).map(|b| b.0);
    let mut out = Vec::new();
    for row in &results.rows {
        let v = row.variant.as_str();
        if let Some(x) = mean(v, "ITM acc") {
            out.push(Check { what: format!("{v}: ITM val accuracy"), measured: x, target: format!("≥ {ITM_ACCURACY:.2}"), met: x >= ITM_ACCURACY });
        }
        if let (Some(x), Some(b)) = (mean(v, "MLM acc"), base("MLM acc")) {
            let t = MLM_OVER_BASELINE * b;
            out.push(Check { what: format!("{v}: MLM val accuracy"), measured: x, target: format!("≥ {MLM_OVER_BASELINE}× the commonest token's {b:.3} = {t:.3}"), met: x >= t });
        }
        if let (Some(x), Some(b)) = (mean(v, "MIM loss"), base("MIM loss")) {
            let t = MIM_OVER_ZEROS * b;
            out.push(Check { what: format!("{v}: MIM val loss"), measured: x, target: format!("≤ {MIM_OVER_ZEROS}× predicting zeros ({b:.3}) = {t:.3}"), met: x <= t });
        }
    }
    for dir in ["IR", "TR"] {
        let col = format!("{dir} R@10");
        if let (Some(x), Some(b)) = (mean("full", &col), base(&col)) {
            let t = RECALL_OVER_CHANCE * b;
            out.push(Check { what: format!("full: {col} (test)"), measured: x, target: format!("≥ {RECALL_OVER_CHANCE}× chance ({b:.3}) = {t:.3}"), met: x >= t });
        }
    }
    // transfer: some retrieval or VQA metric of full above no pre-training, its interval above 0
    let transfer: Vec<_> = results.contrasts.iter().filter(|c| c.a == "full" && c.b == "no-pretraining").filter_map(|c| Some((c.column.clone(), c.interval.clone()?))).collect();
    if let Some((column, i)) = transfer.iter().max_by(|x, y| x.1.low.total_cmp(&y.1.low)) {
        out.push(Check {
            what: format!("full − no-pretraining, best-resolved metric ({column})"),
            measured: i.low,
            target: "the 95% interval's lower end > 0 on some retrieval or VQA metric".into(),
            met: i.low > 0.0,
        });
    }
    out
}

/// The checks as Markdown.
pub fn markdown(checks: &[Check]) -> String {
    let mut out = String::from("| check | measured | target | met |\n|---|---:|---|:---:|\n");
    for c in checks {
        out.push_str(&format!("| {} | {:.3} | {} | {} |\n", c.what, c.measured, c.target, if c.met { "yes" } else { "**no**" }));
    }
    out
}
