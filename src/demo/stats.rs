//! The study's statistics: paired-by-seed differences between two variants with a 95%
//! Student-t interval, and the chance levels the table prints beside the numbers.
use serde::Serialize;

/// P(|T| ≤ t) for Student's t with `df` degrees of freedom, by the finite series of
/// Abramowitz & Stegun 26.7.3–26.7.4 (exact for integer df), θ = atan(t/√df).
pub fn t_two_sided_cdf(t: f64, df: u32) -> f64 {
    let theta = (t.abs() / f64::from(df).sqrt()).atan();
    let (s, c2) = (theta.sin(), theta.cos().powi(2));
    let mut sum = 0.0;
    if df % 2 == 1 {
        // (2/π)[θ + sinθ cosθ (1 + (2/3)cos²θ + (2·4)/(3·5)cos⁴θ + … up to cos^(df−3)θ)]
        if df > 1 {
            let mut term = 1.0;
            sum = term;
            for k in 1..(df - 1) / 2 {
                term *= c2 * f64::from(2 * k) / f64::from(2 * k + 1);
                sum += term;
            }
            sum *= s * theta.cos();
        }
        2.0 / std::f64::consts::PI * (theta + sum)
    } else {
        // sinθ (1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … up to cos^(df−2)θ)
        let mut term = 1.0;
        sum = term;
        for k in 1..df / 2 {
            term *= c2 * f64::from(2 * k - 1) / f64::from(2 * k);
            sum += term;
        }
        s * sum
    }
}

/// The two-sided 95% critical value of Student's t (0.975 quantile), by bisection on
/// [`t_two_sided_cdf`] to 1e-12.
pub fn t_critical_95(df: u32) -> f64 {
    let (mut lo, mut hi) = (0.0, 1e3);
    while hi - lo > 1e-12 {
        let mid = (lo + hi) / 2.0;
        if t_two_sided_cdf(mid, df) < 0.95 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// A paired difference `a − b` over seeds with its 95% t-interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    /// Mean of the per-seed differences.
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// Sample standard deviation of the differences.
    pub sd: f64,
    /// Seeds paired.
    pub n: usize,
    /// Whether the interval excludes 0.
    pub resolved: bool,
}

/// The differences `a[i] − b[i]` (same seed), their mean and mean ± t(0.975, n−1)·sd/√n;
/// `None` with fewer than two pairs (no spread to estimate) or different lengths.
pub fn paired_interval(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let half = t_critical_95(d.len() as u32 - 1) * sd / n.sqrt();
    let (low, high) = (mean - half, mean + half);
    Some(Interval { mean, low, high, sd, n: d.len(), resolved: low > 0.0 || high < 0.0 })
}
