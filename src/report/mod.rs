//! Reports people look at rather than read.
//!
//! - [`plot`]: a run's losses, learning rate and validation metrics as PNG files (plotters,
//!   with the bundled DejaVu Sans so no system font is needed).
//! - [`mim`]: `mim_reconstructions.png`, original / masked / reconstructed images.
//! - [`attention`]: `attention.png`, question words' cross-attention over the image.
//! - [`raster`]: the image grids both figures are drawn in.
pub mod attention;
pub mod mim;
pub mod plot;
pub mod raster;

/// One example for a model figure.
pub struct FigureSample {
    /// The image through the model's evaluation transform, [3, S, S] (e.g.
    /// [`crate::tasks::M3ae::image_from_file`]).
    pub image: tch::Tensor,
    /// The text the model reads with it: a caption for MIM, a question for attention.
    pub text: String,
    /// The row's label (e.g. the file name).
    pub label: String,
}
