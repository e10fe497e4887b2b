//! Image decoding to RGBA, matching `PIL.Image.open(f).convert("RGBA")`.
//!
//! Formats are recognised by their magic bytes: JPEG goes through libjpeg-turbo (the decoder
//! Pillow ships; default settings: islow IDCT, fancy upsampling), DICOM through dicom-rs, and
//! PNG, TIFF and BMP through the `image` crate. Sample conversions follow Pillow's modes:
//! - 8-bit grey `L` → RGBA replicates the grey value, alpha 255; grey+alpha keeps its alpha.
//! - 16-bit PNG colour is read by Pillow as its high byte (`RGB;16B`); 16-bit grey becomes
//!   Pillow's `I;16`, whose conversion to `L` clips at 255. Both are reproduced here.
//! - EXIF orientation is ignored, as `Image.open` does.
//!
//! Images larger than [`MAX_PIXELS`] are refused before their pixel buffer is allocated.
use std::io::Cursor;
use std::path::Path;

use dicom_object::file::{OpenFileOptions, ReadPreamble};
use dicom_pixeldata::{ConvertOptions, PhotometricInterpretation, PixelDecoder, VoiLutOption};
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbaImage};

use crate::{Error, Result};

/// Largest accepted image, in pixels (Pillow's `MAX_IMAGE_PIXELS` decompression-bomb bound).
pub const MAX_PIXELS: u64 = 89_478_485;

/// A container format recognised from the first bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG (`FF D8 FF`), decoded with libjpeg-turbo.
    Jpeg,
    /// DICOM Part 10 (`DICM` after the 128-byte preamble).
    Dicom,
    /// PNG, TIFF or BMP, decoded with the `image` crate.
    Other(ImageFormat),
}

impl Format {
    /// Recognises the format from magic bytes, or `None` when unsupported.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(Format::Jpeg);
        }
        if bytes.len() > 132 && &bytes[128..132] == b"DICM" {
            return Some(Format::Dicom);
        }
        match image::guess_format(bytes) {
            Ok(f @ (ImageFormat::Png | ImageFormat::Tiff | ImageFormat::Bmp)) => Some(Format::Other(f)),
            _ => None,
        }
    }
}

fn image_error(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Image { name: name.to_string(), reason: reason.to_string() }
}

fn check_size(name: &str, width: u64, height: u64) -> Result<()> {
    if width == 0 || height == 0 || width * height > MAX_PIXELS {
        return Err(image_error(name, format!("{width}x{height} pixels is outside 1..={MAX_PIXELS}")));
    }
    Ok(())
}

/// Reads and decodes an image file to RGBA.
pub fn open_rgba(path: &Path) -> Result<RgbaImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgba(&bytes, &path.display().to_string())
}

/// Decodes encoded image bytes to RGBA; `name` (file, column, row…) is used in errors.
pub fn decode_rgba(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    match Format::sniff(bytes) {
        Some(Format::Jpeg) => decode_jpeg(bytes, name),
        Some(Format::Dicom) => decode_dicom(bytes, name),
        Some(Format::Other(format)) => decode_other(bytes, format, name),
        None => Err(image_error(name, "not a PNG, JPEG, TIFF, BMP or DICOM image")),
    }
}

/// JPEG through libjpeg-turbo, to RGB (grey JPEGs replicate, as Pillow's `L → RGBA`).
fn decode_jpeg(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    let mut decompressor = turbojpeg::Decompressor::new().map_err(|e| image_error(name, e))?;
    let header = decompressor.read_header(bytes).map_err(|e| image_error(name, e))?;
    check_size(name, header.width as u64, header.height as u64)?;
    if header.colorspace == turbojpeg::Colorspace::CMYK || header.colorspace == turbojpeg::Colorspace::YCCK {
        return Err(image_error(name, "CMYK JPEG is not supported"));
    }
    let (w, h) = (header.width, header.height);
    // [h, w, 4]
    let mut pixels = vec![0u8; w * h * 4];
    let output = turbojpeg::Image { pixels: pixels.as_mut_slice(), width: w, pitch: w * 4, height: h, format: turbojpeg::PixelFormat::RGBA };
    decompressor.decompress(bytes, output).map_err(|e| image_error(name, e))?;
    RgbaImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| image_error(name, "decoded buffer size mismatch"))
}

/// Checks a PNG's palette before the `png` crate reads it: a PLTE chunk must hold whole RGB
/// entries, at most 256 (PNG spec 11.2.3). png 0.18 indexes past a partial entry and panics;
/// the fuzz target found such a file.
fn check_png_palette(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut pos = 8; // the signature
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        if kind == b"PLTE" && (!len.is_multiple_of(3) || len > 3 * 256) {
            return Err(format!("PLTE chunk of {len} bytes is not 1 to 256 RGB entries"));
        }
        if kind == b"IEND" {
            break;
        }
        pos = pos.saturating_add(12).saturating_add(len); // length, type, data, CRC
    }
    Ok(())
}

/// PNG, TIFF or BMP through the `image` crate, converting samples the way Pillow does.
fn decode_other(bytes: &[u8], format: ImageFormat, name: &str) -> Result<RgbaImage> {
    if format == ImageFormat::Png {
        check_png_palette(bytes).map_err(|e| image_error(name, e))?;
    }
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions().map_err(|e| image_error(name, e))?;
    check_size(name, u64::from(w), u64::from(h))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits_for(w, h));
    let decoded = reader.decode().map_err(|e| image_error(name, e))?;
    Ok(pil_rgba(decoded))
}

/// Decoder limits admitting exactly a `w × h` image.
fn limits_for(w: u32, h: u32) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    limits
}

/// Converts a decoded image to RGBA with Pillow's sample rules (see the module doc).
fn pil_rgba(decoded: DynamicImage) -> RgbaImage {
    let grey16 = |v: u16| v.min(255) as u8;
    let high = |v: u16| (v >> 8) as u8;
    match decoded {
        DynamicImage::ImageLuma16(img) => {
            RgbaImage::from_fn(img.width(), img.height(), |x, y| {
                let g = grey16(img.get_pixel(x, y)[0]);
                image::Rgba([g, g, g, 255])
            })
        }
        DynamicImage::ImageLumaA16(img) => RgbaImage::from_fn(img.width(), img.height(), |x, y| {
            let p = img.get_pixel(x, y);
            let g = grey16(p[0]);
            image::Rgba([g, g, g, high(p[1])])
        }),
        DynamicImage::ImageRgb16(img) => RgbaImage::from_fn(img.width(), img.height(), |x, y| {
            let p = img.get_pixel(x, y);
            image::Rgba([high(p[0]), high(p[1]), high(p[2]), 255])
        }),
        DynamicImage::ImageRgba16(img) => RgbaImage::from_fn(img.width(), img.height(), |x, y| {
            let p = img.get_pixel(x, y);
            image::Rgba([high(p[0]), high(p[1]), high(p[2]), high(p[3])])
        }),
        other => other.into_rgba8(),
    }
}

/// DICOM through dicom-rs, first frame only.
///
/// Monochrome images apply the modality LUT (Rescale Slope/Intercept, identity when absent),
/// then the first VOI window stored in the file (Window Center/Width, DICOM's linear function,
/// rounded); without a stored window the rescaled values are min-max normalised to 0..=255.
/// VOI LUT tables and sigmoid windows are not applied.
/// MONOCHROME1 is inverted so that larger values are brighter. RGB images are used as stored.
fn decode_dicom(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    // dicom-rs allocates each value at its declared length: refuse lengths the file cannot hold
    super::dicom_scan::check_lengths(bytes).map_err(|e| image_error(name, e))?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|e| image_error(name, e))?;
    let dim = |tag: &str| -> Result<u64> {
        let elem = obj.element_by_name(tag).map_err(|e| image_error(name, e))?;
        elem.to_int::<u64>().map_err(|e| image_error(name, format!("{tag}: {e}")))
    };
    let (w, h) = (dim("Columns")?, dim("Rows")?);
    check_size(name, w, h)?;
    // native (uncompressed) pixel data must hold every sample the header promises: dicom-rs
    // sizes its buffers from the header, so a short element would cost a frame-sized allocation
    let pixels = obj.element(dicom_object::Tag(0x7FE0, 0x0010)).map_err(|e| image_error(name, e))?;
    let opt = |tag: &str, default: u64| obj.element_by_name(tag).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(default);
    // dicom-pixeldata asserts on these (and panics) rather than returning an error
    let (allocated, stored) = (opt("BitsAllocated", 8), opt("BitsStored", 8));
    if !matches!(allocated, 1 | 8 | 16 | 32 | 64) || stored == 0 || stored > 32 || stored > allocated {
        return Err(image_error(name, format!("BitsAllocated {allocated} / BitsStored {stored} is not a pixel format")));
    }
    if let dicom_core::value::Value::Primitive(v) = pixels.value() {
        let need = w * h * opt("SamplesPerPixel", 1) * opt("BitsAllocated", 8).div_ceil(8);
        let have = v.calculate_byte_len() as u64;
        if have < need {
            return Err(image_error(name, format!("pixel data holds {have} bytes, {w}x{h} pixels need {need}")));
        }
    }
    let pixel = obj.decode_pixel_data_frame(0).map_err(|e| image_error(name, e))?;
    let photometric = pixel.photometric_interpretation().clone();
    let (w, h) = (pixel.columns(), pixel.rows());
    check_size(name, u64::from(w), u64::from(h))?;
    let window = pixel.window().map_err(|e| image_error(name, e))?.and_then(|w| w.first().copied());
    let n = (w * h) as usize;
    let rgba: Vec<u8> = match photometric {
        PhotometricInterpretation::Monochrome1 | PhotometricInterpretation::Monochrome2 => {
            // Modality LUT only; the VOI step is applied below.
            let options = ConvertOptions::new().with_voi_lut(VoiLutOption::Identity);
            let values: Vec<f64> = pixel.to_vec_frame_with_options(0, &options).map_err(|e| image_error(name, e))?;
            if values.len() != n {
                return Err(image_error(name, format!("{} samples for {w}x{h} pixels", values.len())));
            }
            let grey = match window {
                Some(win) => values.iter().map(|&x| window_linear(x, win.center, win.width)).collect(),
                None => min_max(&values),
            };
            let invert = photometric == PhotometricInterpretation::Monochrome1;
            grey.into_iter().flat_map(|g: u8| {
                let g = if invert { 255 - g } else { g };
                [g, g, g, 255]
            }).collect()
        }
        PhotometricInterpretation::Rgb => {
            let options = ConvertOptions::new().with_voi_lut(VoiLutOption::Identity);
            let samples: Vec<u8> = pixel.to_vec_frame_with_options(0, &options).map_err(|e| image_error(name, e))?;
            if samples.len() != n * 3 {
                return Err(image_error(name, format!("{} samples for {w}x{h} RGB pixels", samples.len())));
            }
            samples.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
        }
        other => return Err(image_error(name, format!("unsupported DICOM photometric interpretation {other}"))),
    };
    RgbaImage::from_raw(w, h, rgba).ok_or_else(|| image_error(name, "decoded buffer size mismatch"))
}

/// DICOM's linear VOI function (PS3.3 C.11.2.1.2) onto 0..=255, rounded.
fn window_linear(x: f64, center: f64, width: f64) -> u8 {
    let width = width.max(1.0);
    let y = if width <= 1.0 {
        if x < center - 0.5 { 0.0 } else { 255.0 }
    } else {
        ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    };
    y.clamp(0.0, 255.0).round() as u8
}

/// Min-max normalisation onto 0..=255, rounded (all zeros for a constant image).
fn min_max(values: &[f64]) -> Vec<u8> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = hi - lo;
    values.iter().map(|&x| if range > 0.0 { ((x - lo) / range * 255.0).round() as u8 } else { 0 }).collect()
}
