//! Image decoding to RGBA, matching `PIL.Image.open(f).convert("RGBA")`.
//!
//! Formats are recognised by their magic bytes: JPEG goes through libjpeg-turbo (the decoder
//! Pillow ships; default settings: islow IDCT, fancy upsampling), DICOM through
//! [`super::dicom`] (its pixels as pydicom's `pixel_array`, then rendered to 8 bits), and
//! PNG, TIFF and BMP through the `image` crate. Sample conversions follow Pillow's modes:
//! - 8-bit grey `L` → RGBA replicates the grey value, alpha 255; grey+alpha keeps its alpha.
//! - 16-bit PNG colour is read by Pillow as its high byte (`RGB;16B`); 16-bit grey becomes
//!   Pillow's `I;16`, whose conversion to `L` clips at 255. Both are reproduced here.
//! - EXIF orientation is ignored, as `Image.open` does.
//!
//! Images larger than [`MAX_PIXELS`] are refused before their pixel buffer is allocated.
use std::io::Cursor;
use std::path::Path;

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

/// Reads and decodes an image file to RGBA (a multi-frame DICOM file: its first frame).
pub fn open_rgba(path: &Path) -> Result<RgbaImage> {
    open_rgba_frame(path, 0)
}

/// Reads and decodes frame `frame` (from 0) of an image file to RGBA. Only DICOM files have
/// more than one frame; any other format accepts frame 0 only.
pub fn open_rgba_frame(path: &Path, frame: usize) -> Result<RgbaImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgba_frame(&bytes, &path.display().to_string(), frame)
}

/// Decodes encoded image bytes to RGBA; `name` (file, column, row…) is used in errors. A
/// multi-frame DICOM image gives its first frame.
pub fn decode_rgba(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    decode_rgba_frame(bytes, name, 0)
}

/// Decodes frame `frame` (from 0) of encoded image bytes to RGBA.
pub fn decode_rgba_frame(bytes: &[u8], name: &str, frame: usize) -> Result<RgbaImage> {
    let format = Format::sniff(bytes);
    if frame > 0 && format != Some(Format::Dicom) {
        return Err(image_error(name, format!("frame {frame} requested, but only DICOM images have more than one frame")));
    }
    match format {
        Some(Format::Jpeg) => decode_jpeg(bytes, name),
        Some(Format::Dicom) => super::dicom::decode_rgba(bytes, name, frame),
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
