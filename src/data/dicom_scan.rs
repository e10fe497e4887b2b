//! A bounds check of a DICOM file's element lengths before dicom-rs parses it.
//!
//! dicom-rs allocates each value at the length its header declares before reading it, so a
//! few kilobytes declaring a 4 GiB element cost a 4 GiB zeroed allocation (fuzzing found
//! such files). This scan walks the element headers (file meta group in explicit VR little
//! endian, then the data set in its transfer syntax) and refuses any defined length that
//! exceeds the bytes left. Undefined lengths (sequences, items, encapsulated pixel data) are
//! walked into; a deflated data set is left to dicom-rs.

/// VRs whose explicit-VR header has a 2-byte length (PS3.5 7.1.2). Every other VR, an
/// unknown one included (dicom-rs reads it as UN), has 2 reserved bytes and a 4-byte length.
const SHORT_VRS: &[&[u8; 2]] = &[
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Checks `bytes` (a Part 10 file: 128-byte preamble, `DICM`, elements). Err names the first
/// element whose declared length does not fit.
pub fn check_lengths(bytes: &[u8]) -> Result<(), String> {
    let mut pos = 132;
    let mut explicit = true;
    let mut big_endian = false;
    let mut in_meta = true;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 {
            return Err(format!("truncated element header at byte {pos}"));
        }
        let u16_at = |b: &[u8]| if big_endian && !in_meta { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) };
        let u32_at = |b: &[u8]| if big_endian && !in_meta { u32::from_be_bytes([b[0], b[1], b[2], b[3]]) } else { u32::from_le_bytes([b[0], b[1], b[2], b[3]]) };
        let (group, element) = (u16_at(&rest[0..]), u16_at(&rest[2..]));
        if in_meta && group != 0x0002 {
            in_meta = false;
            continue; // re-read this header in the data set's encoding
        }
        // item and delimitation tags have a 4-byte length and no VR in every encoding
        let (header, len) = if group == 0xFFFE {
            (8, u32_at(&rest[4..]))
        } else if explicit || in_meta {
            let vr = [rest[4], rest[5]];
            if SHORT_VRS.iter().any(|v| **v == vr) {
                (8, u32::from(u16_at(&rest[6..])))
            } else {
                if rest.len() < 12 {
                    return Err(format!("truncated element header at byte {pos}"));
                }
                (12, u32_at(&rest[8..]))
            }
        } else {
            (8, u32_at(&rest[4..]))
        };
        let value_start = pos + header;
        if len == UNDEFINED {
            pos = value_start; // walk into the sequence / item / encapsulated data
            continue;
        }
        let len = len as usize;
        if len > bytes.len().saturating_sub(value_start) {
            return Err(format!("element ({group:04X},{element:04X}) at byte {pos} declares {len} bytes, {} remain", bytes.len().saturating_sub(value_start)));
        }
        if group == 0xFFFE && element == 0xE000 {
            pos = value_start; // a defined-length item: its elements follow
            continue;
        }
        if in_meta && (group, element) == (0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(&bytes[value_start..value_start + len]);
            match uid.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.2" => big_endian = true,
                "1.2.840.10008.1.2.1.99" => return Ok(()), // deflated: not walkable here
                _ => {}
            }
        }
        pos = value_start + len;
    }
    Ok(())
}
