//! One frame of pixel data as pydicom 3's `Dataset.pixel_array` returns it: stored values
//! (signed per Pixel Representation, bits above Bits Stored cleared or sign-extended), rows ×
//! columns × samples interleaved whatever the Planar Configuration, 1-bit data unpacked,
//! YBR_FULL_422 native data upsampled, and YBR_FULL / YBR_FULL_422 converted to RGB (pydicom's
//! default `as_rgb`). No LUT, rescale or window is applied here.
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::Tag;

use super::{codecs, error, Dicom};
use crate::Result;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelArray {
    pub rows: usize,
    pub columns: usize,
    pub samples: usize,
    /// rows × columns × samples, row-major, samples interleaved
    pub values: Vec<i64>,
    /// the photometric interpretation of `values` (RGB after a YBR conversion)
    pub photometric: String,
}

const NATIVE: &[&str] = &["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"];

pub(crate) fn decode_frame(d: &Dicom, index: usize) -> Result<PixelArray> {
    let info = &d.info;
    let element = d.obj.element(Tag(0x7FE0, 0x0010)).map_err(|e| error(&d.name, e))?;
    let (values, photometric) = match element.value() {
        Value::PixelSequence(seq) => {
            let extended = extended_offsets(d).map_err(|e| error(&d.name, e))?;
            let frame = match &extended {
                Some((offsets, lengths)) => extended_frame(offsets, lengths, seq.fragments(), index),
                None => encapsulated_frame(seq.offset_table(), seq.fragments(), info.frames, index),
            }
            .map_err(|e| error(&d.name, e))?;
            codecs::decode(info, &frame).map_err(|e| error(&d.name, format!("frame {index}: {e}")))?
        }
        Value::Primitive(v) => {
            if !NATIVE.contains(&info.transfer_syntax.as_str()) {
                return Err(error(&d.name, format!("transfer syntax {} ({}) with native pixel data", info.transfer_syntax, super::uid_name(&info.transfer_syntax))));
            }
            let big_endian = info.transfer_syntax == "1.2.840.10008.1.2.2";
            let ow = element.vr() == dicom_core::VR::OW;
            native_frame(info, v, big_endian, ow, index).map_err(|e| error(&d.name, e))?
        }
        Value::Sequence(_) => return Err(error(&d.name, "Pixel Data (7FE0,0010) is a sequence")),
    };
    let n = info.rows * info.columns * info.samples;
    if values.len() != n {
        return Err(error(&d.name, format!("frame {index} decoded to {} samples, {}x{}x{} expected", values.len(), info.rows, info.columns, info.samples)));
    }
    let mut array = PixelArray { rows: info.rows, columns: info.columns, samples: info.samples, values, photometric };
    if info.samples == 3 && matches!(array.photometric.as_str(), "YBR_FULL" | "YBR_FULL_422") {
        if info.bits_allocated != 8 {
            return Err(error(&d.name, format!("{} with {}-bit samples: pydicom converts 8-bit YBR only", array.photometric, info.bits_allocated)));
        }
        ybr_full_to_rgb(&mut array.values);
        array.photometric = "RGB".into();
    }
    Ok(array)
}

/// pydicom's `_convert_YBR_FULL_to_RGB` (PS3.3 C.7.6.3.1.2): float32 matrix, floor(x + 0.5),
/// clipped to 0..=255. pydicom's float32 matmul may round through FMA or not, by CPU, so a
/// sample at an exact .5 can differ by 1 (see the corpus test's bound).
pub fn ybr_full_to_rgb(values: &mut [i64]) {
    let (r_cr, g_cb, g_cr, b_cb) = (1.402f32, -0.114f32 * 1.772 / 0.587, -0.299f32 * 1.402 / 0.587, 1.772f32);
    for p in values.chunks_exact_mut(3) {
        let (y, cb, cr) = (p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0);
        let rgb = [y + cr * r_cr, y + cb * g_cb + cr * g_cr, y + cb * b_cb];
        for (out, v) in p.iter_mut().zip(rgb) {
            *out = (v + 0.5).floor().clamp(0.0, 255.0) as i64;
        }
    }
}

/// A frame table: each frame's byte offset and its length.
type FrameTable = (Vec<u64>, Vec<u64>);

/// The Extended Offset Table (7FE0,0001) and its lengths (7FE0,0002), 64-bit little endian,
/// when the file has them.
fn extended_offsets(d: &Dicom) -> std::result::Result<Option<FrameTable>, String> {
    let read = |tag: Tag| -> std::result::Result<Option<Vec<u64>>, String> {
        let Some(e) = d.obj.get(tag) else { return Ok(None) };
        let bytes = e.to_bytes().map_err(|err| format!("{tag}: {err}"))?;
        if bytes.len() % 8 != 0 {
            return Err(format!("{tag} holds {} bytes, not whole 64-bit values", bytes.len()));
        }
        Ok(Some(bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect()))
    };
    match (read(Tag(0x7FE0, 0x0001))?, read(Tag(0x7FE0, 0x0002))?) {
        (Some(o), Some(l)) if !o.is_empty() => Ok(Some((o, l))),
        _ => Ok(None),
    }
}

/// Frame `index` by the Extended Offset Table, as pydicom's `get_frame` reads it: the
/// `lengths[index]` bytes of the fragment whose item starts at `offsets[index]` (offsets count
/// from the first item after the Basic Offset Table; one fragment per frame).
pub fn extended_frame(offsets: &[u64], lengths: &[u64], fragments: &[Vec<u8>], index: usize) -> std::result::Result<Vec<u8>, String> {
    let (Some(&offset), Some(&length)) = (offsets.get(index), lengths.get(index)) else {
        return Err(format!("the Extended Offset Table has {} offsets and {} lengths, frame {index} requested", offsets.len(), lengths.len()));
    };
    let mut at = 0u64;
    for f in fragments {
        if at == offset {
            return f.get(..length as usize).map(<[u8]>::to_vec).ok_or_else(|| format!("frame {index}: the Extended Offset Table's length {length} exceeds its {}-byte fragment", f.len()));
        }
        at += 8 + f.len() as u64;
    }
    Err(format!("frame {index}: Extended Offset Table offset {offset} is not at a fragment"))
}

/// The fragments of frame `index` of encapsulated pixel data, joined, as pydicom's
/// `encaps.get_frame` finds them: by the Basic Offset Table when it has entries; else all
/// fragments for a single frame; else one fragment per frame when the counts agree; else
/// frames end at the fragment whose last 10 bytes hold a JPEG EOI marker.
pub fn encapsulated_frame(offset_table: &[u32], fragments: &[Vec<u8>], frames: usize, index: usize) -> std::result::Result<Vec<u8>, String> {
    if fragments.is_empty() {
        return Err("encapsulated pixel data has no fragments".into());
    }
    let join = |parts: &[Vec<u8>]| parts.concat();
    if !offset_table.is_empty() {
        // offsets count from the first fragment's item tag; each item has an 8-byte header
        let mut starts = Vec::with_capacity(fragments.len());
        let mut at = 0u64;
        for f in fragments {
            starts.push(at);
            at += 8 + f.len() as u64;
        }
        let lo = u64::from(*offset_table.get(index).ok_or_else(|| format!("the Basic Offset Table has {} entries, frame {index} requested", offset_table.len()))?);
        let hi = offset_table.get(index + 1).map_or(u64::MAX, |&o| u64::from(o));
        let first = starts.iter().position(|&s| s == lo).ok_or_else(|| format!("Basic Offset Table entry {lo} of frame {index} is not at a fragment"))?;
        let end = starts.iter().position(|&s| s >= hi).unwrap_or(fragments.len());
        if end <= first {
            return Err(format!("Basic Offset Table entries for frame {index} are not increasing"));
        }
        return Ok(join(&fragments[first..end]));
    }
    if frames == 1 {
        return Ok(join(fragments));
    }
    if fragments.len() == frames {
        return Ok(fragments[index].clone());
    }
    let mut frame = 0;
    let mut first = 0;
    for (i, f) in fragments.iter().enumerate() {
        let tail = &f[f.len().saturating_sub(10)..];
        if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            if frame == index {
                return Ok(join(&fragments[first..=i]));
            }
            frame += 1;
            first = i + 1;
        }
    }
    Err(format!("{} fragments without a Basic Offset Table hold {frame} whole frames; frame {index} requested", fragments.len()))
}

/// The pixel data's bytes in file order: OW values come from dicom-rs as 16-bit words.
fn file_bytes(v: &PrimitiveValue, big_endian: bool) -> std::result::Result<Vec<u8>, String> {
    match v {
        PrimitiveValue::U8(b) => Ok(b.to_vec()),
        PrimitiveValue::U16(w) => Ok(w.iter().flat_map(|x| if big_endian { x.to_be_bytes() } else { x.to_le_bytes() }).collect()),
        PrimitiveValue::Empty => Ok(Vec::new()),
        _ => Err("native Pixel Data is neither OB nor OW".into()),
    }
}

/// Frame `index` of native (uncompressed) pixel data, as pydicom's native decoder.
fn native_frame(info: &super::ImageInfo, v: &PrimitiveValue, big_endian: bool, ow: bool, index: usize) -> std::result::Result<(Vec<i64>, String), String> {
    let mut bytes = file_bytes(v, big_endian)?;
    let (rows, cols, spp) = (info.rows, info.columns, info.samples);
    let ba = info.bits_allocated as usize;
    let ybr422 = info.photometric == "YBR_FULL_422";
    if ybr422 && (ba != 8 || spp != 3) {
        return Err(format!("YBR_FULL_422 native data with {ba}-bit samples, {spp} per pixel"));
    }
    // samples per frame as stored (YBR_FULL_422 stores 2 per pixel, PS3.3 C.7.6.3.1.2)
    let stored = if ybr422 { rows * cols * 2 } else { rows * cols * spp };
    let frame_bits = stored * ba;
    let needed_bits = frame_bits * info.frames;
    let have_bits = bytes.len() * 8;
    // pydicom accepts data one byte short of its even padding, never shorter
    if have_bits < needed_bits.div_ceil(8) * 8 {
        return Err(format!("pixel data holds {} bytes, {} frames of {cols}x{rows}x{spp} at {ba} bits need {}", bytes.len(), info.frames, needed_bits.div_ceil(8)));
    }
    if ba == 1 {
        let start = index * frame_bits;
        let values = (start..start + frame_bits).map(|bit| i64::from((bytes[bit / 8] >> (bit % 8)) & 1)).collect();
        return Ok((values, info.photometric.clone()));
    }
    if big_endian && ba == 8 && ow {
        // 8-bit samples in big endian OW words: pydicom swaps each byte pair
        for pair in bytes.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    let width = ba / 8;
    let frame = &bytes[index * stored * width..(index + 1) * stored * width];
    let shift = 64 - info.bits_stored;
    let mut values: Vec<i64> = frame
        .chunks_exact(width)
        .map(|s| {
            let mut raw = 0u64;
            for (k, &b) in s.iter().enumerate() {
                let k = if big_endian { width - 1 - k } else { k };
                raw |= u64::from(b) << (8 * k);
            }
            // keep Bits Stored bits: sign-extended when signed, as pydicom's shift pair
            let x = raw << shift;
            if info.signed { (x as i64) >> shift } else { (x >> shift) as i64 }
        })
        .collect();
    let mut photometric = info.photometric.clone();
    if ybr422 {
        // Y1 Y2 Cb Cr -> Y1 Cb Cr Y2 Cb Cr
        values = values.chunks_exact(4).flat_map(|q| [q[0], q[2], q[3], q[1], q[2], q[3]]).collect();
        photometric = "YBR_FULL".into();
    }
    if info.planar && spp == 3 {
        let plane = rows * cols;
        values = (0..plane).flat_map(|i| [values[i], values[plane + i], values[2 * plane + i]]).collect();
    }
    Ok((values, photometric))
}
