//! Decoders of encapsulated frames, each returning samples as pydicom's `pixel_array` holds
//! them (interleaved) and the photometric interpretation they are in.
//!
//! | transfer syntax | decoder | why |
//! |---|---|---|
//! | RLE Lossless (1.2.840.10008.1.2.5) | PS3.5 Annex G, here | dicom-pixeldata's `rle` refuses 32-bit samples |
//! | JPEG Baseline / Extended, 8-bit (.4.50, .4.51) | libjpeg-turbo (`turbojpeg`) | the decoder Pillow, hence pydicom, uses: same pixels |
//! | JPEG Lossless (.4.57, .4.70) | `jpeg-decoder` | what dicom-pixeldata's `jpeg` feature uses |
//! | JPEG 2000 (.4.90, .4.91) | `jpeg2k` on `openjp2`, a Rust port of OpenJPEG | dicom-pixeldata's `openjp2` feature |
//! | JPEG-LS (.4.80, .4.81) | CharLS (`charls`, bundled C++ built with cmake) | dicom-pixeldata's `charls` feature; no maintained Rust decoder |
use std::borrow::Cow;

use super::ImageInfo;

type Decoded = Result<(Vec<i64>, String), String>;

/// A stored sample `raw` (its Bits Allocated low bits) as pydicom reads it: Bits Stored bits
/// kept, sign-extended when Pixel Representation is 1 (pydicom's unused-bits correction).
pub fn stored(raw: u64, bits_stored: u32, signed: bool) -> i64 {
    let shift = 64 - bits_stored;
    let x = raw << shift;
    if signed { (x as i64) >> shift } else { (x >> shift) as i64 }
}

/// Decodes one frame of encapsulated pixel data in `info`'s transfer syntax.
pub fn decode(info: &ImageInfo, frame: &[u8]) -> Decoded {
    let ts = info.transfer_syntax.as_str();
    match ts {
        "1.2.840.10008.1.2.5" => rle(info, frame),
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => jpeg_dct(info, frame),
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => jpeg_lossless(info, frame),
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => jpeg2000(info, frame),
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => jpeg_ls(info, frame),
        _ => Err(format!("transfer syntax {ts} ({}) is not supported", super::uid_name(ts))),
    }
}

/// RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one PackBits segment
/// per byte of each sample, most significant byte first.
fn rle(info: &ImageInfo, frame: &[u8]) -> Decoded {
    let bytes = match info.bits_allocated {
        8 | 16 | 32 => info.bits_allocated as usize / 8,
        b => return Err(format!("RLE with {b}-bit samples")),
    };
    if frame.len() < 64 {
        return Err(format!("RLE frame of {} bytes is shorter than its 64-byte header", frame.len()));
    }
    let word = |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]) as usize;
    let segments = word(0);
    if segments != info.samples * bytes {
        return Err(format!("RLE header declares {segments} segments, {} samples of {bytes} bytes need {}", info.samples, info.samples * bytes));
    }
    let mut offsets: Vec<usize> = (0..segments).map(|i| word(4 + 4 * i)).collect();
    offsets.push(frame.len());
    let pixels = info.rows * info.columns;
    let mut raw = vec![0u64; pixels * info.samples];
    for s in 0..info.samples {
        for k in 0..bytes {
            let i = s * bytes + k;
            let (lo, hi) = (offsets[i], offsets[i + 1]);
            if lo < 64 || lo > hi || hi > frame.len() {
                return Err(format!("RLE segment {i} spans bytes {lo}..{hi} of a {}-byte frame", frame.len()));
            }
            let plane = packbits(&frame[lo..hi], pixels);
            if plane.len() < pixels {
                return Err(format!("RLE segment {i} decodes to {} bytes, {pixels} expected", plane.len()));
            }
            let shift = 8 * (bytes - 1 - k);
            for (p, &b) in plane.iter().enumerate() {
                raw[p * info.samples + s] |= u64::from(b) << shift;
            }
        }
    }
    let values = raw.into_iter().map(|r| stored(r, info.bits_stored, info.signed)).collect();
    Ok((values, info.photometric.clone()))
}

/// PackBits (PS3.5 G.3.1), stopping at `limit` bytes of output.
fn packbits(src: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut i = 0;
    while i < src.len() && out.len() < limit {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let end = (i + n as usize + 1).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, 1 + (-(n as i32)) as usize));
            }
            i += 1;
        }
    }
    out.truncate(limit);
    out
}

/// What the markers before a JPEG's first scan say (pydicom's `_get_jpg_parameters`).
#[derive(Debug, Default)]
pub struct JpegMarkers {
    pub sof: u8,
    pub precision: u8,
    pub component_ids: Vec<u8>,
    pub jfif: bool,
    /// an APP14 "Adobe" segment long enough to hold a transform byte (Pillow's `adobe_transform`)
    pub adobe_transform: bool,
}

/// Walks the segments from SOI to the first SOF marker.
pub fn jpeg_markers(src: &[u8]) -> Result<JpegMarkers, String> {
    if !src.starts_with(&[0xFF, 0xD8]) {
        return Err("the frame does not start with a JPEG SOI marker".into());
    }
    let mut m = JpegMarkers::default();
    let mut pos = 2;
    loop {
        let seg = src.get(pos..pos + 4).ok_or("JPEG markers end before a SOF marker")?;
        let (marker, len) = (seg[1], usize::from(u16::from_be_bytes([seg[2], seg[3]])));
        if seg[0] != 0xFF || len < 2 {
            return Err(format!("no JPEG marker at byte {pos}"));
        }
        let body = src.get(pos + 4..pos + 2 + len).ok_or("JPEG segment runs past the frame")?;
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) || marker == 0xF7 {
            if body.len() < 6 {
                return Err("short JPEG SOF segment".into());
            }
            m.sof = marker;
            m.precision = body[0];
            let n = usize::from(body[5]);
            m.component_ids = (0..n).filter_map(|c| body.get(6 + 3 * c).copied()).collect();
            return Ok(m);
        }
        if (0xE0..=0xEF).contains(&marker) && body.starts_with(b"JFIF") {
            m.jfif = true;
        }
        if marker == 0xEE && body.starts_with(b"Adobe") && body.len() >= 12 {
            m.adobe_transform = true;
        }
        pos += 2 + len;
    }
}

/// The JPEG with its JFIF APP0 segments replaced by an Adobe APP14 segment of transform 0,
/// so that libjpeg takes the three components as they are (no YCbCr to RGB conversion) and
/// still upsamples them as it always does: the samples Pillow gives pydicom in its `YCbCr`
/// draft mode.
fn without_colour_transform(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() + 16);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x0E]);
    out.extend_from_slice(b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    let mut pos = 2;
    while let Some(seg) = src.get(pos..pos + 4) {
        let (marker, len) = (seg[1], usize::from(u16::from_be_bytes([seg[2], seg[3]])));
        if seg[0] != 0xFF || !(0xE0..=0xEF).contains(&marker) {
            break;
        }
        let end = (pos + 2 + len).min(src.len());
        if !(marker == 0xE0 && src[pos + 4..end].starts_with(b"JFIF")) {
            out.extend_from_slice(&src[pos..end]);
        }
        pos = end;
    }
    out.extend_from_slice(&src[pos.min(src.len())..]);
    out
}

/// JPEG Baseline / Extended with 8-bit samples, through libjpeg-turbo as Pillow decodes it
/// for pydicom: grey as is; three components without an Adobe transform as stored (Pillow's
/// `YCbCr` draft), with one as libjpeg converts them. The photometric interpretation is
/// conformed to the codestream as pydicom does (component IDs R, G, B make it RGB; a JFIF
/// marker makes a non-YBR one YBR_FULL_422 for Baseline, YBR_FULL for Extended).
fn jpeg_dct(info: &ImageInfo, frame: &[u8]) -> Decoded {
    let m = jpeg_markers(frame)?;
    if m.precision != 8 {
        return Err(format!("JPEG with {}-bit samples: libjpeg-turbo, as Pillow (pydicom's decoder here), reads 8-bit DCT JPEG only", m.precision));
    }
    if info.bits_allocated != 8 {
        return Err(format!("8-bit JPEG in {}-bit samples", info.bits_allocated));
    }
    let mut photometric = info.photometric.clone();
    if info.samples == 3 {
        if m.component_ids == b"RGB" || m.component_ids == b"rgb" {
            photometric = "RGB".into();
        } else if m.jfif && !photometric.contains("YBR") {
            photometric = if info.transfer_syntax.ends_with(".50") { "YBR_FULL_422" } else { "YBR_FULL" }.into();
        }
    }
    let src: Cow<[u8]> = if info.samples == 3 && !m.adobe_transform { Cow::Owned(without_colour_transform(frame)) } else { Cow::Borrowed(frame) };
    let mut dec = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
    let header = dec.read_header(&src).map_err(|e| e.to_string())?;
    if (header.width, header.height) != (info.columns, info.rows) {
        return Err(format!("JPEG of {}x{} in a {}x{} image", header.width, header.height, info.columns, info.rows));
    }
    let format = if info.samples == 1 { turbojpeg::PixelFormat::GRAY } else { turbojpeg::PixelFormat::RGB };
    let mut pixels = vec![0u8; info.rows * info.columns * info.samples];
    let (width, height, pitch) = (info.columns, info.rows, info.columns * info.samples);
    let image = turbojpeg::Image { pixels: pixels.as_mut_slice(), width, pitch, height, format };
    dec.decompress(&src, image).map_err(|e| format!("the JPEG could not be decoded (libjpeg-turbo: {e})"))?;
    let values = pixels.into_iter().map(|b| stored(u64::from(b), info.bits_stored, info.signed)).collect();
    Ok((values, photometric))
}

/// JPEG Lossless (process 14) through jpeg-decoder, without a colour transform.
fn jpeg_lossless(info: &ImageInfo, frame: &[u8]) -> Decoded {
    let m = jpeg_markers(frame)?;
    if m.sof != 0xC3 {
        return Err(format!("a JPEG Lossless transfer syntax holds a SOF{} frame", m.sof - 0xC0));
    }
    let mut dec = jpeg_decoder::Decoder::new(frame);
    dec.set_color_transform(jpeg_decoder::ColorTransform::None);
    let failed = |e: jpeg_decoder::Error| format!("the lossless JPEG could not be decoded (jpeg-decoder: {e})");
    // the header first: its size must be the image's before the decoder allocates for it
    dec.read_info().map_err(failed)?;
    let meta = dec.info().ok_or("JPEG without a frame header")?;
    if (usize::from(meta.width), usize::from(meta.height)) != (info.columns, info.rows) {
        return Err(format!("JPEG of {}x{} in a {}x{} image", meta.width, meta.height, info.columns, info.rows));
    }
    let data = dec.decode().map_err(failed)?;
    let raw: Vec<u64> = match meta.pixel_format {
        jpeg_decoder::PixelFormat::L16 => data.chunks_exact(2).map(|b| u64::from(u16::from_ne_bytes([b[0], b[1]]))).collect(),
        jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::RGB24 => data.into_iter().map(u64::from).collect(),
        other => return Err(format!("JPEG Lossless decoded to {other:?}")),
    };
    let values = raw.into_iter().map(|r| stored(r, info.bits_stored, info.signed)).collect();
    Ok((values, info.photometric.clone()))
}

/// A JPEG 2000 sample `v` (OpenJPEG's integer, `prec` bits, signed or not) as pydicom's
/// Pillow path returns it: Pillow level-shifts signed samples to unsigned; pydicom shifts them
/// back when Pixel Representation is 1 too, and otherwise reads Pillow's unsigned value in
/// the container's signedness; for monochrome data whose codestream signedness differs from
/// Pixel Representation, its J2K sign correction then reinterprets the low `prec` bits.
fn pillow_j2k_sample(v: i64, prec: u32, container: u32, sgnd: bool, signed: bool, monochrome: bool) -> i64 {
    let unsigned = if sgnd { v + (1 << (prec - 1)) } else { v };
    let value = if sgnd && signed { v } else { stored(unsigned as u64, container, signed) };
    if monochrome && sgnd != signed { stored(value as u64, prec, signed) } else { value }
}

/// Checks a JPEG 2000 codestream's SIZ segment (ISO 15444-1 A.5.1) before openjp2 allocates
/// from it: the image must be the DICOM image's size, in at most 65,535 tiles (Part 1's
/// limit), with the DICOM image's number of components.
fn check_j2k_size(info: &ImageInfo, frame: &[u8]) -> Result<(), String> {
    let soc = frame.windows(4).take(4096).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]).ok_or("no JPEG 2000 codestream (SOC and SIZ markers) in the frame")?;
    let siz = frame.get(soc..soc + 42).ok_or("the JPEG 2000 SIZ segment is cut short")?;
    let u32_at = |i: usize| u64::from(u32::from_be_bytes([siz[i], siz[i + 1], siz[i + 2], siz[i + 3]]));
    let (x, y, x0, y0, xt, yt, xt0, yt0) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20), u32_at(24), u32_at(28), u32_at(32), u32_at(36));
    let components = usize::from(u16::from_be_bytes([siz[40], siz[41]]));
    let (w, h) = (x.saturating_sub(x0), y.saturating_sub(y0));
    if (w, h) != (info.columns as u64, info.rows as u64) || components != info.samples {
        return Err(format!("JPEG 2000 codestream of {w}x{h}x{components} in a {}x{}x{} image", info.columns, info.rows, info.samples));
    }
    let tiles = |extent: u64, origin: u64, size: u64| if size == 0 { u64::MAX } else { extent.saturating_sub(origin).div_ceil(size) };
    let n = tiles(x, xt0, xt).saturating_mul(tiles(y, yt0, yt));
    if n > 65_535 || xt0 > x0 || yt0 > y0 {
        return Err(format!("JPEG 2000 tiling of {xt}x{yt} at ({xt0},{yt0}) is not a valid grid over the image ({n} tiles)"));
    }
    Ok(())
}

/// JPEG 2000 through openjp2. Components are the decoder's integers; OpenJPEG applies the
/// inverse RCT/ICT itself, so YBR_RCT and YBR_ICT come back as RGB (as Pillow gives them).
/// Samples follow pydicom's Pillow path ([`pillow_j2k_sample`]).
fn jpeg2000(info: &ImageInfo, frame: &[u8]) -> Decoded {
    check_j2k_size(info, frame)?;
    let image = jpeg2k::Image::from_bytes(frame).map_err(|e| format!("the JPEG 2000 codestream could not be decoded (openjp2: {e})"))?;
    let comps = image.components();
    if comps.len() != info.samples {
        return Err(format!("JPEG 2000 codestream has {} components, SamplesPerPixel is {}", comps.len(), info.samples));
    }
    let n = info.rows * info.columns;
    for c in comps {
        if (c.width() as usize, c.height() as usize) != (info.columns, info.rows) || c.data().len() != n {
            return Err(format!("JPEG 2000 component of {}x{} in a {}x{} image", c.width(), c.height(), info.columns, info.rows));
        }
    }
    let monochrome = info.photometric.starts_with("MONOCHROME");
    let mut values = vec![0i64; n * info.samples];
    for (s, c) in comps.iter().enumerate() {
        let prec = c.precision().clamp(1, 16);
        let container = if prec <= 8 { 8 } else { 16 };
        let sgnd = c.is_signed();
        for (p, &v) in c.data().iter().enumerate() {
            values[p * info.samples + s] = pillow_j2k_sample(i64::from(v), prec, container, sgnd, info.signed, monochrome);
        }
    }
    let photometric = match info.photometric.as_str() {
        "YBR_ICT" | "YBR_RCT" => "RGB".to_string(),
        other => other.to_string(),
    };
    Ok((values, photometric))
}

/// JPEG-LS (lossless and near-lossless) through CharLS. Samples of a scan without
/// interleave come back plane by plane and are interleaved here. JPEG-LS has no sign, so
/// pydicom's JPEG-LS sign correction applies: the SOF's precision bits, sign-extended when
/// Pixel Representation is 1. The photometric interpretation is conformed as for JPEG.
fn jpeg_ls(info: &ImageInfo, frame: &[u8]) -> Decoded {
    let m = jpeg_markers(frame)?;
    if m.sof != 0xF7 {
        return Err("a JPEG-LS transfer syntax holds a frame without the JPEG-LS SOF55 marker".into());
    }
    // one CharLS decoder reads a header once: a fresh one for the frame info, one to decode
    let fi = charls::CharLS::default().get_frame_info(frame).map_err(|e| e.to_string())?;
    if (fi.width as usize, fi.height as usize, fi.component_count as usize) != (info.columns, info.rows, info.samples) {
        return Err(format!("JPEG-LS of {}x{}x{} in a {}x{}x{} image", fi.width, fi.height, fi.component_count, info.columns, info.rows, info.samples));
    }
    let data = charls::CharLS::default().decode(frame).map_err(|e| e.to_string())?;
    let raw: Vec<u64> = if fi.bits_per_sample > 8 {
        data.chunks_exact(2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]]))).collect()
    } else {
        data.into_iter().map(u64::from).collect()
    };
    let n = info.rows * info.columns;
    if raw.len() != n * info.samples {
        return Err(format!("JPEG-LS decoded to {} samples, {} expected", raw.len(), n * info.samples));
    }
    let planar = info.samples > 1 && jpeg_ls_interleave(frame) == Some(0);
    let at = |p: usize, s: usize| if planar { raw[s * n + p] } else { raw[p * info.samples + s] };
    let precision = u32::from(m.precision).clamp(1, 16);
    let values = (0..n).flat_map(|p| (0..info.samples).map(move |s| (p, s))).map(|(p, s)| stored(at(p, s), precision, info.signed)).collect();
    let mut photometric = info.photometric.clone();
    if info.samples == 3 && (m.component_ids == b"RGB" || m.component_ids == b"rgb") {
        photometric = "RGB".into();
    }
    Ok((values, photometric))
}

/// The interleave mode (ILV) of a JPEG-LS frame's first scan: 0 none, 1 line, 2 sample.
fn jpeg_ls_interleave(src: &[u8]) -> Option<u8> {
    let mut pos = 2;
    while let Some(seg) = src.get(pos..pos + 4) {
        let len = usize::from(u16::from_be_bytes([seg[2], seg[3]]));
        if seg[0] != 0xFF || len < 2 {
            return None;
        }
        if seg[1] == 0xDA {
            let n = usize::from(*src.get(pos + 4)?);
            return src.get(pos + 5 + 2 * n + 1).copied();
        }
        pos += 2 + len;
    }
    None
}
