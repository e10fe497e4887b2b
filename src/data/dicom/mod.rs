//! DICOM images as hospitals export them: parsed by dicom-rs, pixel data decoded to the
//! array pydicom's `Dataset.pixel_array` returns, then rendered to the 8-bit RGBA the image
//! pipeline takes.
//!
//! - [`scan`]: the bounds check of every element length before dicom-rs allocates it.
//! - [`pixels`]: one frame as pydicom's `pixel_array` (native data, frames of encapsulated
//!   data, the colour-space step pydicom applies).
//! - [`codecs`]: RLE Lossless, JPEG (libjpeg-turbo, jpeg-decoder for lossless), JPEG 2000
//!   (openjp2), JPEG-LS (CharLS).
//! - [`render`]: modality LUT, VOI, MONOCHROME1, palette, 16→8 bit: the model's input.
//!
//! The README section "DICOM" states the rules and the decoders chosen.
pub mod codecs;
pub mod pixels;
pub mod render;
pub mod scan;

use dicom_core::dictionary::UidDictionary;
use dicom_core::Tag;
use dicom_object::file::{OpenFileOptions, ReadPreamble};
use dicom_object::DefaultDicomObject;

pub use pixels::PixelArray;

use crate::{Error, Result};

/// Largest accepted frame, in samples (rows × columns × samples per pixel): Pillow's
/// decompression-bomb bound on pixels, [`crate::data::image_io::MAX_PIXELS`].
pub const MAX_SAMPLES: u64 = crate::data::image_io::MAX_PIXELS;

pub(crate) fn error(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Image { name: name.to_string(), reason: reason.to_string() }
}

/// What the image pixel module of a data set says about its pixel data.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub transfer_syntax: String,
    pub rows: usize,
    pub columns: usize,
    pub samples: usize,
    pub bits_allocated: u32,
    pub bits_stored: u32,
    /// Pixel Representation 1: two's complement samples
    pub signed: bool,
    /// Photometric Interpretation as stored
    pub photometric: String,
    /// Planar Configuration 1: colour-by-plane (native data only)
    pub planar: bool,
    pub frames: usize,
}

/// A parsed DICOM file that holds an image.
pub struct Dicom {
    pub name: String,
    pub obj: DefaultDicomObject,
    pub info: ImageInfo,
}

/// The name the standard gives a UID (SOP class or transfer syntax), or "unknown UID".
pub fn uid_name(uid: &str) -> String {
    use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
    let uid = uid.trim_end_matches(['\0', ' ']);
    if let Some(e) = dicom_dictionary_std::StandardSopClassDictionary.by_uid(uid) {
        return e.name.to_string();
    }
    TransferSyntaxRegistry.get(uid).map_or_else(|| "unknown UID".to_string(), |ts| ts.name().to_string())
}

impl Dicom {
    /// Parses a Part 10 file (preamble, `DICM`, meta group, data set) after the length scan.
    /// Errors name the file and: the element whose length does not fit; "holds no image" with
    /// the SOP class when there is no Pixel Data; the attribute that is missing or invalid.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Dicom> {
        // dicom-rs allocates each value at its declared length: refuse lengths the file cannot hold
        let scanned = scan::check_lengths(bytes).map_err(|e| error(name, e))?;
        let relabelled;
        let (parse, stated) = if let Some(file) = &scanned.inflated {
            // a deflated data set, inflated and scanned: dicom-rs reads it as explicit VR LE
            // (or implicit, when the inflated data set turned out to be)
            if scanned.implicit_despite_meta {
                relabelled = scan::with_transfer_syntax(file, "1.2.840.10008.1.2");
                (relabelled.as_slice(), Some(scanned.transfer_syntax.clone()))
            } else {
                (file.as_slice(), Some(scanned.transfer_syntax.clone()))
            }
        } else if scanned.implicit_despite_meta {
            // pydicom reads such a data set as implicit VR; dicom-rs reads what the meta says
            let stated = scanned.transfer_syntax.clone();
            relabelled = scan::with_transfer_syntax(bytes, "1.2.840.10008.1.2");
            (relabelled.as_slice(), Some(stated))
        } else {
            (bytes, None)
        };
        let obj = Self::open(parse, name)?;
        let transfer_syntax = stated.unwrap_or_else(|| obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string());
        if obj.get(Tag(0x7FE0, 0x0010)).is_none() {
            let sop = obj.meta().media_storage_sop_class_uid().trim_end_matches(['\0', ' ']).to_string();
            let kind = if obj.get(Tag(0x7FE0, 0x0008)).is_some() || obj.get(Tag(0x7FE0, 0x0009)).is_some() {
                "float pixel data, which is not an image this pipeline reads"
            } else {
                "no Pixel Data (7FE0,0010)"
            };
            return Err(error(name, format!("the file holds no image ({kind}): SOP class {sop} ({})", uid_name(&sop))));
        }
        let int = |tag: Tag, key: &str, default: Option<i64>| -> Result<i64> {
            match obj.get(tag) {
                Some(e) if e.value().multiplicity() > 0 => e.to_int::<i64>().map_err(|err| error(name, format!("{key} {tag}: {err}"))),
                _ => default.ok_or_else(|| error(name, format!("the image has no {key} {tag}"))),
            }
        };
        let rows = int(Tag(0x0028, 0x0010), "Rows", None)?;
        let columns = int(Tag(0x0028, 0x0011), "Columns", None)?;
        let samples = int(Tag(0x0028, 0x0002), "SamplesPerPixel", Some(1))?;
        let bits_allocated = int(Tag(0x0028, 0x0100), "BitsAllocated", None)?;
        let bits_stored = int(Tag(0x0028, 0x0101), "BitsStored", Some(bits_allocated))?;
        let signed = int(Tag(0x0028, 0x0103), "PixelRepresentation", Some(0))?;
        let planar = int(Tag(0x0028, 0x0006), "PlanarConfiguration", Some(0))?;
        let frames = int(Tag(0x0028, 0x0008), "NumberOfFrames", Some(1))?;
        let photometric = match obj.get(Tag(0x0028, 0x0004)) {
            Some(e) => e.to_str().map_err(|err| error(name, err))?.trim_end_matches(['\0', ' ']).to_string(),
            None => return Err(error(name, "the image has no PhotometricInterpretation (0028,0004)")),
        };
        // each checked before a decoder sees it (fuzzing found BitsStored 143, on which dicom-pixeldata asserted)
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) || bits_stored < 1 || bits_stored > bits_allocated {
            return Err(error(name, format!("BitsAllocated {bits_allocated} / BitsStored {bits_stored} is not a pixel format")));
        }
        if rows < 1 || columns < 1 || !matches!(samples, 1 | 3) || !(0..=1).contains(&signed) || !(0..=1).contains(&planar) || frames < 1 {
            return Err(error(name, format!("Rows {rows}, Columns {columns}, SamplesPerPixel {samples}, PixelRepresentation {signed}, PlanarConfiguration {planar}, NumberOfFrames {frames}: not an image")));
        }
        let per_frame = rows as u64 * columns as u64 * samples as u64;
        if per_frame > MAX_SAMPLES {
            return Err(error(name, format!("{columns}x{rows} pixels of {samples} samples is outside 1..={MAX_SAMPLES} samples")));
        }
        let info = ImageInfo {
            transfer_syntax,
            rows: rows as usize,
            columns: columns as usize,
            samples: samples as usize,
            bits_allocated: bits_allocated as u32,
            bits_stored: bits_stored as u32,
            signed: signed == 1,
            photometric,
            planar: planar == 1,
            frames: frames as usize,
        };
        Ok(Dicom { name: name.to_string(), obj, info })
    }

    fn open(bytes: &[u8], name: &str) -> Result<DefaultDicomObject> {
        OpenFileOptions::new().read_preamble(ReadPreamble::Always).from_reader(bytes).map_err(|e| error(name, e))
    }

    /// Frame `index` (0-based) as pydicom's `pixel_array[index]` (or `pixel_array` for a
    /// single frame).
    pub fn pixel_array(&self, index: usize) -> Result<PixelArray> {
        if index >= self.info.frames {
            return Err(error(&self.name, format!("frame {index} requested, the file has {} (frames count from 0)", self.info.frames)));
        }
        pixels::decode_frame(self, index)
    }

    /// Frame `index` rendered for the model (see [`render`]).
    pub fn rgba(&self, index: usize) -> Result<image::RgbaImage> {
        let array = self.pixel_array(index)?;
        render::to_rgba(self, &array)
    }
}

/// Decodes frame `frame` of DICOM `bytes` to RGBA; `name` is used in errors.
pub fn decode_rgba(bytes: &[u8], name: &str, frame: usize) -> Result<image::RgbaImage> {
    Dicom::parse(bytes, name)?.rgba(frame)
}
