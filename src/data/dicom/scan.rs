//! A bounds check of a DICOM file's element lengths before dicom-rs parses it.
//!
//! dicom-rs allocates each value at the length its header declares before reading it, so a
//! few kilobytes declaring a 4 GiB element cost a 4 GiB zeroed allocation (fuzzing found
//! such files). This scan walks the element headers as PS3.5 encodes them and refuses any
//! defined length that exceeds the bytes left:
//! - the file meta group (0002,xxxx) in explicit VR little endian, then the data set in its
//!   transfer syntax (implicit or explicit VR, little or big endian);
//! - sequences (SQ, and in implicit VR any value that opens with an item tag) are walked
//!   into, defined length or not, so the elements of their items are checked too (in implicit
//!   VR, what the standard dictionary calls SQ, and a private value that opens with an item
//!   tag); an
//!   undefined-length UN is a sequence in implicit VR little endian (PS3.5 6.2.2);
//! - encapsulated pixel data (undefined-length (7FE0,0010), or OB/OW) is a sequence of items
//!   (PS3.5 A.4): the Basic Offset Table, then one item per fragment, then the sequence
//!   delimiter. Each item must have a defined length that fits; the fragments are compressed
//!   bytes (JPEG markers, RLE segments) and are skipped, never read as element headers.
//!
//! A deflated data set (1.2.840.10008.1.2.1.99) is inflated here, up to [`MAX_INFLATED`]
//! bytes (a deflate bomb stops there), and the inflated data set is scanned and handed to
//! dicom-rs as explicit VR little endian.

/// VRs whose explicit-VR header has a 2-byte length (PS3.5 7.1.2). Every other VR, an
/// unknown one included (dicom-rs reads it as UN), has 2 reserved bytes and a 4-byte length.
const SHORT_VRS: &[&[u8; 2]] = &[
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// Deepest nesting of undefined-length sequences and items accepted.
const MAX_DEPTH: usize = 64;

/// One element header as read at a position.
struct Header {
    tag: (u16, u16),
    vr: Option<[u8; 2]>,
    len: u32,
    /// bytes of the header (8 or 12)
    size: usize,
}

/// The encoding in force: the data set's, or implicit VR little endian inside an
/// undefined-length UN.
#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

fn u16_at(b: &[u8], big: bool) -> u16 {
    if big { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
    if big { u32::from_be_bytes([b[0], b[1], b[2], b[3]]) } else { u32::from_le_bytes([b[0], b[1], b[2], b[3]]) }
}

fn read_header(bytes: &[u8], pos: usize, enc: Encoding) -> Result<Header, String> {
    let rest = &bytes[pos..];
    if rest.len() < 8 {
        return Err(format!("truncated element header at byte {pos}"));
    }
    let big = enc.big_endian;
    let tag = (u16_at(rest, big), u16_at(&rest[2..], big));
    // item and delimitation tags have a 4-byte length and no VR in every encoding
    if tag.0 == 0xFFFE || !enc.explicit {
        return Ok(Header { tag, vr: None, len: u32_at(&rest[4..], big), size: 8 });
    }
    let vr = [rest[4], rest[5]];
    if SHORT_VRS.iter().any(|v| **v == vr) {
        return Ok(Header { tag, vr: Some(vr), len: u32::from(u16_at(&rest[6..], big)), size: 8 });
    }
    if rest.len() < 12 {
        return Err(format!("truncated element header at byte {pos}"));
    }
    Ok(Header { tag, vr: Some(vr), len: u32_at(&rest[8..], big), size: 12 })
}

/// What the scan found about the encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scanned {
    /// The meta group says explicit VR little endian, but the data set's first element has no
    /// VR: it is implicit VR, which pydicom detects and reads as such (so do we).
    pub implicit_despite_meta: bool,
    /// The meta group's Transfer Syntax UID, without padding.
    pub transfer_syntax: String,
    /// A deflated file with its data set inflated (and its meta group saying explicit VR
    /// little endian), scanned like any other.
    pub inflated: Option<Vec<u8>>,
}

/// Largest inflated data set accepted from a Deflated Explicit VR Little Endian file (1 GiB).
pub const MAX_INFLATED: u64 = 1 << 30;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Whether `vr` is one of the VRs of PS3.5 6.2.
fn known_vr(vr: [u8; 2]) -> bool {
    const OTHER: &[&[u8; 2]] = &[b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"];
    SHORT_VRS.iter().chain(OTHER).any(|v| **v == vr)
}

/// Checks `bytes` (a Part 10 file: 128-byte preamble, `DICM`, elements). Err names the first
/// element whose declared length does not fit, or the structure that is broken.
pub fn check_lengths(bytes: &[u8]) -> Result<Scanned, String> {
    let mut scanned = Scanned::default();
    let mut deflated = false;
    let meta = Encoding { explicit: true, big_endian: false };
    let mut data_set = meta;
    let mut pos = 132;
    // the file meta group
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let h = read_header(bytes, pos, meta)?;
        let start = pos + h.size;
        let len = fits(bytes, &h, pos, start)?;
        if h.tag == (0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(&bytes[start..start + len]);
            scanned.transfer_syntax = uid.trim_end_matches(['\0', ' ']).to_string();
            match scanned.transfer_syntax.as_str() {
                "1.2.840.10008.1.2" => data_set.explicit = false,
                "1.2.840.10008.1.2.2" => data_set.big_endian = true,
                "1.2.840.10008.1.2.1.99" => deflated = true,
                _ => {}
            }
        }
        pos = start + len;
    }
    if deflated {
        use std::io::Read;
        let mut data = Vec::new();
        let mut inflate = flate2::read::DeflateDecoder::new(&bytes[pos..]).take(MAX_INFLATED + 1);
        inflate.read_to_end(&mut data).map_err(|e| format!("the deflated data set at byte {pos} does not inflate: {e}"))?;
        if data.len() as u64 > MAX_INFLATED {
            return Err(format!("the deflated data set at byte {pos} inflates to more than {MAX_INFLATED} bytes"));
        }
        let (mut file, _) = relabelled_meta(bytes, EXPLICIT_LE);
        file.extend_from_slice(&data);
        let mut inner = check_lengths(&file)?;
        inner.transfer_syntax = scanned.transfer_syntax;
        inner.inflated = Some(file);
        return Ok(inner);
    }
    if data_set.explicit && !data_set.big_endian && pos + 6 <= bytes.len() && !known_vr([bytes[pos + 4], bytes[pos + 5]]) {
        data_set.explicit = false;
        scanned.implicit_despite_meta = true;
    }
    // the data set; `open` holds the undefined-length sequences and items walked into
    let mut open: Vec<Encoding> = Vec::new();
    while pos < bytes.len() {
        let enc = open.last().copied().unwrap_or(data_set);
        let h = read_header(bytes, pos, enc)?;
        let start = pos + h.size;
        let (g, e) = h.tag;
        if h.tag == ITEM_END || h.tag == SEQUENCE_END {
            if open.pop().is_none() {
                return Err(format!("delimiter ({g:04X},{e:04X}) at byte {pos} closes nothing"));
            }
            pos = start;
            continue;
        }
        if h.len == UNDEFINED {
            let vr = h.vr.unwrap_or(*b"  ");
            if h.tag == PIXEL_DATA || vr == *b"OB" || vr == *b"OW" {
                pos = skip_fragments(bytes, start, enc.big_endian)?;
                continue;
            }
            if open.len() >= MAX_DEPTH {
                return Err(format!("sequences nested deeper than {MAX_DEPTH} at byte {pos}"));
            }
            // an undefined-length UN holds a sequence encoded in implicit VR little endian
            let inner = if vr == *b"UN" { Encoding { explicit: false, big_endian: false } } else { enc };
            open.push(inner);
            pos = start;
            continue;
        }
        let len = fits(bytes, &h, pos, start)?;
        let opens_item = len >= 4 && {
            let b = &bytes[start..];
            (u16_at(b, enc.big_endian), u16_at(&b[2..], enc.big_endian)) == ITEM
        };
        // implicit VR: a sequence by the dictionary, or a private value that opens with an item
        let implicit_sequence = h.vr.is_none() && (dictionary_sequence(h.tag) || (g % 2 == 1 && opens_item));
        let is_sequence = h.tag == ITEM || h.vr == Some(*b"SQ") || implicit_sequence;
        // a defined-length item or sequence: its contents follow and are checked in turn
        pos = if is_sequence { start } else { start + len };
    }
    Ok(scanned)
}

/// `bytes` with the meta group's Transfer Syntax UID replaced by `uid` (and the group length
/// fixed), for a data set whose encoding the meta group misstates. Expects a file that
/// [`check_lengths`] accepted.
pub fn with_transfer_syntax(bytes: &[u8], uid: &str) -> Vec<u8> {
    let (mut out, data_set) = relabelled_meta(bytes, uid);
    out.extend_from_slice(&bytes[data_set..]);
    out
}

/// The preamble and meta group of `bytes` with the Transfer Syntax UID `uid`, and where the
/// data set starts in `bytes`.
fn relabelled_meta(bytes: &[u8], uid: &str) -> (Vec<u8>, usize) {
    let meta = Encoding { explicit: true, big_endian: false };
    let mut value = uid.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    let mut group = Vec::new();
    let mut pos = 132;
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let Ok(h) = read_header(bytes, pos, meta) else { break };
        let end = (pos + h.size + h.len as usize).min(bytes.len());
        match h.tag {
            (0x0002, 0x0000) => {}
            (0x0002, 0x0010) => {
                group.extend_from_slice(&bytes[pos..pos + 6]);
                group.extend_from_slice(&(value.len() as u16).to_le_bytes());
                group.extend_from_slice(&value);
            }
            _ => group.extend_from_slice(&bytes[pos..end]),
        }
        pos = end;
    }
    let mut out = bytes[..132].to_vec();
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00]);
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    (out, pos)
}

/// Whether the standard dictionary gives `tag` the VR SQ (how dicom-rs reads implicit VR).
fn dictionary_sequence((group, element): (u16, u16)) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let entry = dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(group, element));
    entry.is_some_and(|e| e.vr() == VirtualVr::Exact(dicom_core::VR::SQ))
}

/// The declared length of `h`, when it fits in the bytes after `start`.
fn fits(bytes: &[u8], h: &Header, pos: usize, start: usize) -> Result<usize, String> {
    let (g, e) = h.tag;
    let remain = bytes.len().saturating_sub(start);
    if h.len == UNDEFINED {
        return Err(format!("element ({g:04X},{e:04X}) at byte {pos} has an undefined length where a defined one is required"));
    }
    let len = h.len as usize;
    if len > remain {
        return Err(format!("element ({g:04X},{e:04X}) at byte {pos} declares {len} bytes, {remain} remain"));
    }
    Ok(len)
}

/// Walks encapsulated pixel data from its first item (the Basic Offset Table) to just past
/// its sequence delimiter: items of defined length that fit, whose bytes are not parsed.
fn skip_fragments(bytes: &[u8], mut pos: usize, big_endian: bool) -> Result<usize, String> {
    let enc = Encoding { explicit: false, big_endian };
    loop {
        if pos >= bytes.len() {
            return Err(format!("encapsulated pixel data ends at byte {pos} without its sequence delimiter"));
        }
        let h = read_header(bytes, pos, enc)?;
        let start = pos + h.size;
        match h.tag {
            SEQUENCE_END => return Ok(start),
            ITEM => pos = start + fits(bytes, &h, pos, start)?,
            (g, e) => return Err(format!("encapsulated pixel data: element ({g:04X},{e:04X}) at byte {pos} where an item or the sequence delimiter belongs")),
        }
    }
}
