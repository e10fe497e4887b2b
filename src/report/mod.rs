//! Reports people look at rather than read: plots of a run's `metrics.jsonl`.
//!
//! - [`plot`]: losses, learning rate and validation metrics as PNG files (plotters, with the
//!   bundled DejaVu Sans so no system font is needed).
pub mod plot;
