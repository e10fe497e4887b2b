//! A decoded frame ([`PixelArray`]) to the 8-bit RGBA the image pipeline takes. The rules
//! (README, "DICOM"), applied in this order:
//!
//! - **MONOCHROME1 / MONOCHROME2**: the modality LUT (PS3.3 C.11.1): the first Modality LUT
//!   Sequence item, or Rescale Slope and Intercept when both are present (as pydicom's
//!   `apply_modality_lut`), else the stored values. Then the VOI (C.11.2): the first VOI LUT
//!   Sequence item (its output range 0..2^bits−1 onto 0..=255), else the first Window Center /
//!   Width with the VOI LUT Function (LINEAR, LINEAR_EXACT or SIGMOID) onto 0..=255, else the
//!   frame's own minimum and maximum onto 0..=255. MONOCHROME1 is inverted (255 − v) so that
//!   larger is brighter. Grey replicates into R, G and B.
//! - **PALETTE COLOR**: each stored value through the Red/Green/Blue Palette Color LUTs (as
//!   pydicom's `apply_color_lut`); 16-bit entries keep their high byte.
//! - **RGB** (YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT are RGB once decoded): samples of more
//!   than 8 stored bits keep their top 8 (v >> (BitsStored − 8)), as Pillow reads 16-bit colour.
//!
//! Every mapping onto 0..=255 rounds as floor(y + 0.5) after clamping y to 0..=255, computed
//! in f64 in the order written here (the Python reference in tests/dicom.rs does the same
//! operations, so the two agree exactly).
use dicom_core::Tag;
use dicom_object::InMemDicomObject;
use image::RgbaImage;

use super::{error, Dicom, PixelArray};
use crate::Result;

fn to_u8(y: f64) -> u8 {
    (y.clamp(0.0, 255.0) + 0.5).floor() as u8
}

/// A LUT (PS3.3 C.11.1.1): descriptor (entries, first mapped value, bits) and its data.
struct Lut {
    first: i64,
    bits: u32,
    data: Vec<u32>,
}

impl Lut {
    /// Reads the LUT of `item` from its descriptor and data tags; `bytes_per_entry` decides
    /// 8- or 16-bit entries from the data's length, as pydicom does.
    fn read(obj: &InMemDicomObject, descriptor: Tag, data: Tag) -> std::result::Result<Lut, String> {
        let desc: Vec<i64> = obj.get(descriptor).ok_or(format!("no LUT descriptor {descriptor}"))?.to_multi_int().map_err(|e| e.to_string())?;
        if desc.len() != 3 {
            return Err(format!("LUT descriptor {descriptor} has {} values, not 3", desc.len()));
        }
        let entries = if desc[0] == 0 { 65536 } else { (desc[0] & 0xFFFF) as usize };
        let element = obj.get(data).ok_or(format!("no LUT data {data}"))?;
        let bytes = element.to_bytes().map_err(|e| e.to_string())?;
        let data: Vec<u32> = if bytes.len() >= 2 * entries {
            bytes.chunks_exact(2).take(entries).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))).collect()
        } else if bytes.len() == entries {
            bytes.iter().map(|&b| u32::from(b)).collect()
        } else {
            let words: Vec<u32> = element.to_multi_int().map_err(|e| e.to_string())?;
            if words.len() != entries {
                return Err(format!("LUT data {data} holds {} bytes for {entries} entries", bytes.len()));
            }
            words
        };
        let bits = if bytes.len() == entries { 8 } else { (desc[2] as u32).clamp(1, 16) };
        Ok(Lut { first: desc[1], bits, data })
    }

    /// pydicom's lookup: values below the first mapped value take entry 0, above the last
    /// take the last entry.
    fn get(&self, x: i64) -> u32 {
        let i = (x - self.first).clamp(0, self.data.len() as i64 - 1);
        self.data[i as usize]
    }
}

fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|items| items.first())
}

fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    obj.get(tag).and_then(|e| e.to_multi_float64().ok()).and_then(|v| v.first().copied())
}

/// The frame as RGBA, by the rules of the module documentation.
pub fn to_rgba(d: &Dicom, a: &PixelArray) -> Result<RgbaImage> {
    let name = &d.name;
    let obj: &InMemDicomObject = &d.obj;
    let rgb: Vec<[u8; 3]> = match (a.photometric.as_str(), a.samples) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let grey = monochrome(obj, &a.values).map_err(|e| error(name, e))?;
            let invert = a.photometric == "MONOCHROME1";
            grey.into_iter().map(|g| if invert { 255 - g } else { g }).map(|g| [g, g, g]).collect()
        }
        ("PALETTE COLOR", 1) => {
            let luts = [(0x1101, 0x1201), (0x1102, 0x1202), (0x1103, 0x1203)].map(|(desc, data)| Lut::read(obj, Tag(0x0028, desc), Tag(0x0028, data)));
            let [r, g, b] = luts.map(|l| l.map_err(|e| error(name, format!("PALETTE COLOR: {e} (segmented palettes are not supported)"))));
            let (r, g, b) = (r?, g?, b?);
            let eight = |l: &Lut, x: i64| if l.bits > 8 { (l.get(x) >> 8) as u8 } else { l.get(x).min(255) as u8 };
            a.values.iter().map(|&x| [eight(&r, x), eight(&g, x), eight(&b, x)]).collect()
        }
        ("RGB", 3) => {
            let shift = d.info.bits_stored.saturating_sub(8);
            a.values.chunks_exact(3).map(|p| [p[0], p[1], p[2]].map(|v| (v.max(0) >> shift).min(255) as u8)).collect()
        }
        (other, n) => return Err(error(name, format!("photometric interpretation {other} with {n} samples per pixel is not supported"))),
    };
    let rgba = rgb.into_iter().flat_map(|[r, g, b]| [r, g, b, 255]).collect();
    RgbaImage::from_raw(a.columns as u32, a.rows as u32, rgba).ok_or_else(|| error(name, "decoded buffer size mismatch"))
}

/// Modality LUT, then VOI, onto 0..=255.
fn monochrome(obj: &InMemDicomObject, values: &[i64]) -> std::result::Result<Vec<u8>, String> {
    let modality: Vec<f64> = if let Some(item) = first_item(obj, Tag(0x0028, 0x3000)) {
        let lut = Lut::read(item, Tag(0x0028, 0x3002), Tag(0x0028, 0x3006)).map_err(|e| format!("Modality LUT: {e}"))?;
        values.iter().map(|&x| f64::from(lut.get(x))).collect()
    } else if let (Some(slope), Some(intercept)) = (float(obj, Tag(0x0028, 0x1053)), float(obj, Tag(0x0028, 0x1052))) {
        values.iter().map(|&x| x as f64 * slope + intercept).collect()
    } else {
        values.iter().map(|&x| x as f64).collect()
    };
    if let Some(item) = first_item(obj, Tag(0x0028, 0x3010)) {
        let lut = Lut::read(item, Tag(0x0028, 0x3002), Tag(0x0028, 0x3006)).map_err(|e| format!("VOI LUT: {e}"))?;
        let top = ((1u64 << lut.bits) - 1) as f64;
        return Ok(modality.iter().map(|&x| to_u8(f64::from(lut.get(x.floor() as i64)) / top * 255.0)).collect());
    }
    if let (Some(center), Some(width)) = (float(obj, Tag(0x0028, 0x1050)), float(obj, Tag(0x0028, 0x1051))) {
        let function = obj.get(Tag(0x0028, 0x1056)).and_then(|e| e.to_str().ok()).map(|s| s.trim().to_uppercase()).unwrap_or_default();
        return Ok(modality.iter().map(|&x| to_u8(voi(x, center, width, &function))).collect());
    }
    let lo = modality.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = modality.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(modality.iter().map(|&x| if hi > lo { to_u8((x - lo) / (hi - lo) * 255.0) } else { 0 }).collect())
}

/// The VOI LUT Function (PS3.3 C.11.2.1.2–3) onto 0..=255, before clamping and rounding.
fn voi(x: f64, center: f64, width: f64, function: &str) -> f64 {
    match function {
        "SIGMOID" => 255.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
        "LINEAR_EXACT" => {
            if width <= 0.0 {
                if x <= center { 0.0 } else { 255.0 }
            } else {
                ((x - center) / width + 0.5) * 255.0
            }
        }
        _ => {
            if width <= 1.0 {
                if x <= center - 0.5 { 0.0 } else { 255.0 }
            } else {
                ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
            }
        }
    }
}
