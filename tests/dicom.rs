//! DICOM as hospitals export it, on a corpus no one here wrote: the DICOM files that ship in
//! pydicom's `data/test_files` (the project venv, scripts/requirements.txt). pydicom (with
//! Pillow) decodes them once (tests/dicom_reference.py, into a temporary folder); every file
//! it decodes must decode here to the same `pixel_array`, every frame, and render to the same
//! model input (README "DICOM"). A missing venv or corpus is an error, not a skip.
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;

use m3ae::data::dicom::Dicom;
use m3ae::data::image_io::{decode_rgba_frame, Format};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `make setup` (scripts/setup.sh installs pydicom)", p.display());
    p
}

/// pydicom's test files, where the venv's pydicom is installed.
fn corpus() -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output()
        .expect("run the venv python");
    assert!(out.status.success(), "pydicom is not importable from .venv: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(dir.is_dir(), "pydicom's test corpus {} is missing", dir.display());
    dir
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m3ae-dicom-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Transfer syntaxes whose decoders differ by design (lossy JPEG IDCT, JPEG 2000 irreversible
/// wavelet): their pixels are compared within [`LOSSY_BOUND`].
const LOSSY: &[&str] = &["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.81"];

/// Largest difference accepted on a lossy syntax (see the README "DICOM" for the arithmetic).
const LOSSY_BOUND: i64 = 0;

/// pydicom converts YBR_FULL(_422) to RGB in float32 through a BLAS matrix product, whose
/// rounding (fused multiply-add or not) depends on the CPU: a sample at an exact .5 can come
/// out 1 apart, so converted samples are compared within 1.
const YBR_BOUND: i64 = 1;

/// Our decode of every frame: pixel arrays and renderings; Err is the message.
fn ours(bytes: &[u8], name: &str) -> Result<(Vec<i64>, Vec<u8>, String), String> {
    if Format::sniff(bytes) != Some(Format::Dicom) {
        return Err(decode_rgba_frame(bytes, name, 0).err().map(|e| e.to_string()).unwrap_or_default());
    }
    let d = Dicom::parse(bytes, name).map_err(|e| e.to_string())?;
    let (mut values, mut rgb) = (Vec::new(), Vec::new());
    for f in 0..d.info.frames {
        let a = d.pixel_array(f).map_err(|e| e.to_string())?;
        values.extend_from_slice(&a.values);
        let img = d.rgba(f).map_err(|e| e.to_string())?;
        rgb.extend(img.pixels().flat_map(|p| [p[0], p[1], p[2]]));
    }
    Ok((values, rgb, d.info.photometric.clone()))
}

fn max_diff<T: Copy + Into<i64>>(a: &[T], b: &[T]) -> i64 {
    a.iter().zip(b).map(|(&x, &y)| (x.into() - y.into()).abs()).max().unwrap_or(0)
}

#[test]
fn pydicom_corpus_decodes_to_the_same_pixels() {
    let corpus = corpus();
    let out = scratch("reference");
    let status = Command::new(python()).arg(root().join("tests/dicom_reference.py")).arg(&corpus).arg(&out).status().expect("run tests/dicom_reference.py");
    assert!(status.success(), "tests/dicom_reference.py failed");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    let (mut by_pydicom, mut by_us, mut equal, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut syntaxes: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, entry) in files.iter().enumerate() {
        let rel = entry["file"].as_str().unwrap();
        let ts = entry["transfer_syntax"].as_str().unwrap_or("(none)").to_string();
        let bytes = std::fs::read(corpus.join(rel)).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| ours(&bytes, rel)));
        let row = syntaxes.entry(ts.clone()).or_default();
        row[0] += 1;
        let theirs = entry["decoded"].as_bool().unwrap();
        by_pydicom += usize::from(theirs);
        row[1] += usize::from(theirs);
        let mine = match result {
            Err(_) => {
                panics += 1;
                failures.push(format!("{rel}: PANIC"));
                continue;
            }
            Ok(r) => r,
        };
        if mine.is_ok() {
            by_us += 1;
            row[2] += 1;
        }
        match (&mine, theirs) {
            (Ok((values, rgb, photometric)), true) => {
                let pixels: Vec<i64> = std::fs::read(out.join(format!("{i}.pixels"))).unwrap().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
                let want_rgb = std::fs::read(out.join(format!("{i}.rgb"))).unwrap();
                let bound = if LOSSY.contains(&ts.as_str()) { LOSSY_BOUND } else { 0 }.max(if photometric.starts_with("YBR_FULL") { YBR_BOUND } else { 0 });
                let (dp, dr) = (max_diff(values, &pixels), max_diff(rgb, &want_rgb));
                if values.len() == pixels.len() && rgb.len() == want_rgb.len() && dp <= bound && dr <= bound {
                    equal += 1;
                    row[3] += 1;
                    if dp > 0 || dr > 0 {
                        println!("{rel}: within the bound {bound}: pixels differ by up to {dp}, model input by {dr}");
                    }
                } else {
                    failures.push(format!("{rel}: {} vs {} samples, max difference {dp} (pixels) {dr} (model input), bound {bound}", values.len(), pixels.len()));
                }
            }
            (Err(e), true) => failures.push(format!("{rel}: pydicom decodes it, we fail: {e}")),
            (Err(e), false) => errors.push(format!("{rel}: {e}")),
            (Ok(_), false) => println!("{rel}: decoded here; pydicom: {}", entry["error"].as_str().unwrap_or("")),
        }
    }
    println!("\npydicom {} test files ({}): why the files neither side decodes are refused here:", manifest["pydicom"], corpus.display());
    for e in &errors {
        println!("  {e}");
    }
    println!("\n| transfer syntax | files | decoded by pydicom | decoded by m3ae | equal |\n|---|---:|---:|---:|---:|");
    for (ts, [n, p, m, e]) in &syntaxes {
        println!("| {ts} {} | {n} | {p} | {m} | {e} |", if ts.starts_with("1.") { format!("({})", m3ae::data::dicom::uid_name(ts)) } else { String::new() });
    }
    println!("| **all** | **{}** | **{by_pydicom}** | **{by_us}** | **{equal}** |", files.len());
    std::fs::remove_dir_all(&out).ok();
    assert_eq!(panics, 0, "{failures:#?}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(equal, by_pydicom);
    // every refusal names the file and says why
    for e in &errors {
        let (file, why) = e.split_once(": ").unwrap();
        assert!(why.contains(file) && why.len() > file.len() + 10, "{e}");
    }
}

/// A file without pixel data names its SOP class (UID and name).
#[test]
fn a_file_without_an_image_names_its_sop_class() {
    let bytes = std::fs::read(corpus().join("rtplan.dcm")).unwrap();
    let e = Dicom::parse(&bytes, "rtplan.dcm").err().expect("an error").to_string();
    assert!(e.contains("rtplan.dcm") && e.contains("holds no image") && e.contains("1.2.840.10008.5.1.4.1.1.481.5 (RT Plan Storage)"), "{e}");
}

/// Reads `name` from the corpus.
fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(corpus().join(name)).unwrap()
}

/// The position of the first encapsulated item after the Basic Offset Table of a file whose
/// pixel data is encapsulated: (7FE0,0010) OB with undefined length, then the BOT item.
fn first_fragment(bytes: &[u8]) -> usize {
    let tag = [0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    let at = bytes.windows(12).position(|w| w == tag).expect("encapsulated pixel data") + 12;
    let bot = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    at + 8 + bot
}

/// The pre-scan follows encapsulated pixel data item by item: a fragment that declares more
/// bytes than the file holds, a non-item inside the sequence, and a missing sequence delimiter
/// are refused before dicom-rs sees the file; valid fragments full of JPEG markers pass.
#[test]
fn the_length_scan_walks_encapsulated_items() {
    let good = corpus_file("JPEG2000.dcm");
    assert!(Dicom::parse(&good, "JPEG2000.dcm").is_ok());
    let frag = first_fragment(&good);
    let mut huge = good.clone();
    huge[frag + 4..frag + 8].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    let e = Dicom::parse(&huge, "huge.dcm").err().expect("an error").to_string();
    assert!(e.contains("huge.dcm") && e.contains("(FFFE,E000)") && e.contains("declares 2147483632 bytes"), "{e}");
    let mut stray = good.clone();
    stray[frag..frag + 4].copy_from_slice(&[0x08, 0x00, 0x16, 0x00]);
    let e = Dicom::parse(&stray, "stray.dcm").err().expect("an error").to_string();
    assert!(e.contains("(0008,0016)") && e.contains("where an item or the sequence delimiter belongs"), "{e}");
    let cut = &good[..good.len() - 8];
    let e = Dicom::parse(cut, "cut.dcm").err().expect("an error").to_string();
    assert!(e.contains("cut.dcm"), "{e}");
}

/// Truncated native pixel data is an error (from the length scan), not a short or padded image.
#[test]
fn truncated_pixel_data_is_an_error() {
    let e = Dicom::parse(&corpus_file("MR_truncated.dcm"), "MR_truncated.dcm").and_then(|d| d.pixel_array(0)).expect_err("an error").to_string();
    assert!(e.contains("MR_truncated.dcm") && e.contains("(7FE0,0010)") && e.contains("declares 8192 bytes, 8130 remain"), "{e}");
}

/// A transfer syntax without a decoder here is named with its UID and name: JPEG2000.dcm
/// relabelled as JPEG 2000 Part 2 (same UID length, so the meta group still adds up).
#[test]
fn an_unsupported_transfer_syntax_is_named() {
    let mut bytes = corpus_file("JPEG2000.dcm");
    let at = bytes.windows(22).position(|w| w == b"1.2.840.10008.1.2.4.91").expect("the JPEG 2000 UID");
    bytes[at..at + 22].copy_from_slice(b"1.2.840.10008.1.2.4.93");
    let e = Dicom::parse(&bytes, "part2.dcm").and_then(|d| d.pixel_array(0)).expect_err("an error").to_string();
    assert!(e.contains("part2.dcm") && e.contains("1.2.840.10008.1.2.4.93") && e.contains("JPEG 2000 Part 2"), "{e}");
}

/// Frames count from 0; one past the last is an error naming the count.
#[test]
fn a_frame_past_the_last_is_an_error() {
    let d = Dicom::parse(&corpus_file("SC_rgb_rle_2frame.dcm"), "2frame.dcm").unwrap();
    assert_eq!(d.info.frames, 2);
    assert_ne!(d.pixel_array(0).unwrap().values, d.pixel_array(1).unwrap().values);
    let e = d.pixel_array(2).expect_err("an error").to_string();
    assert!(e.contains("frame 2 requested, the file has 2"), "{e}");
    let e = decode_rgba_frame(&std::fs::read(root().join("tests/fixtures/data/images/ihc.png")).unwrap(), "ihc.png", 1).expect_err("an error").to_string();
    assert!(e.contains("only DICOM images have more than one frame"), "{e}");
}

/// The model-input rules the corpus does not exercise, on variants of MR_small.dcm written by
/// pydicom: each VOI LUT Function, MONOCHROME1, Rescale without a window (min-max), a VOI LUT
/// Sequence and a Modality LUT Sequence. tests/dicom_reference.py renders them with pydicom's
/// LUT functions; the renderings must be equal (SIGMOID within 1: `exp` of two libms can
/// differ in the last bit, which moves a value sitting at a rounding tie).
#[test]
fn render_rules_match_the_python_reference() {
    let dir = scratch("variants");
    let (src, out) = (dir.join("src"), dir.join("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let script = r#"
import sys, pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
out = sys.argv[1]
def variant(name, edit):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    edit(ds)
    ds.save_as(f"{out}/{name}.dcm")
def lut(first, n, scale):
    item = Dataset()
    item.LUTDescriptor = [n, first, 16]
    item.LUTData = [min(65535, (i * scale) % 65536) for i in range(n)]
    item["LUTDescriptor"].VR = "US"; item["LUTData"].VR = "US"
    return Sequence([item])
variant("sigmoid", lambda ds: setattr(ds, "VOILUTFunction", "SIGMOID"))
variant("linear_exact", lambda ds: setattr(ds, "VOILUTFunction", "LINEAR_EXACT"))
variant("monochrome1", lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
def minmax(ds):
    del ds.WindowCenter; del ds.WindowWidth
    ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-100"
variant("rescale_minmax", minmax)
def voi_lut(ds):
    del ds.WindowCenter; del ds.WindowWidth
    ds.VOILUTSequence = lut(100, 1200, 50)
variant("voi_lut", voi_lut)
def modality_lut(ds):
    ds.ModalityLUTSequence = lut(0, 1500, 3)
variant("modality_lut", modality_lut)
"#;
    let ok = Command::new(python()).args(["-c", script]).arg(&src).status().unwrap().success();
    assert!(ok, "writing the variants with pydicom");
    let ok = Command::new(python()).arg(root().join("tests/dicom_reference.py")).arg(&src).arg(&out).status().unwrap().success();
    assert!(ok, "tests/dicom_reference.py");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 6);
    for (i, entry) in files.iter().enumerate() {
        let rel = entry["file"].as_str().unwrap();
        assert!(entry["rendered"].as_bool().unwrap_or(false), "{rel}: pydicom: {}", entry["error"]);
        let (_, rgb, _) = ours(&std::fs::read(src.join(rel)).unwrap(), rel).unwrap_or_else(|e| panic!("{e}"));
        let want = std::fs::read(out.join(format!("{i}.rgb"))).unwrap();
        let bound = if rel == "sigmoid.dcm" { 1 } else { 0 };
        let d = max_diff(&rgb, &want);
        println!("{rel}: max difference {d} from the pydicom reference");
        assert!(rgb.len() == want.len() && d <= bound, "{rel}: max difference {d}, bound {bound}");
        // the variants change the picture: a rule that was skipped would show up here
        assert!(rgb.iter().map(|&v| u32::from(v)).max().unwrap() > 0, "{rel}: all black");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Decoders pydicom (with Pillow) lacks, checked against a lossless twin in the corpus:
/// MR_small as JPEG-LS lossless (CharLS) and as JPEG 2000 lossless equal MR_small uncompressed,
/// whose pixels the corpus test matches with pydicom's.
#[test]
fn lossless_twins_decode_to_the_same_pixels() {
    let first = |name: &str| Dicom::parse(&corpus_file(name), name).and_then(|d| d.pixel_array(0)).unwrap_or_else(|e| panic!("{e}")).values;
    let original = first("MR_small.dcm");
    for twin in ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"] {
        assert_eq!(first(twin), original, "{twin}");
    }
}

/// Hostile files: corpus files of every codec, mutated by a seeded generator (bytes changed,
/// 32-bit fields overwritten with large values, files cut short), must each give frames or an
/// error, never a panic (a crash inside a C decoder would end the test process). The size
/// checks before each decoder allocates (JPEG, JPEG 2000 SIZ, JPEG-LS, RLE) are what keep these
/// within the image's own size.
#[test]
fn mutated_corpus_files_give_errors_not_panics() {
    use rand::{Rng, SeedableRng};
    let names = [
        "MR_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle_32bit_2frame.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg.dcm", "JPEG2000.dcm",
        "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jls_lossy_sample.dcm", "SC_rgb_jpeg_gdcm.dcm",
        "examples_palette.dcm", "liver_expb_1frame.dcm", "rtdose_expb.dcm", "image_dfl.dcm", "SC_ybr_full_422_uncompressed.dcm",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    let (mut decoded, mut refused, mut panicked) = (0, 0, Vec::new());
    for name in names {
        let original = corpus_file(name);
        for round in 0..120 {
            let mut bytes = original.clone();
            // offsets past the meta group, half of them in the last two thirds (the pixel data)
            let lo = if rng.gen_bool(0.5) { bytes.len() / 3 } else { 132 };
            let at = rng.gen_range(lo..bytes.len() - 4);
            match round % 3 {
                0 => {
                    for _ in 0..rng.gen_range(1..8) {
                        let i = rng.gen_range(lo..bytes.len());
                        bytes[i] = rng.gen();
                    }
                }
                1 => {
                    let v: u32 = if rng.gen_bool(0.5) { rng.gen_range(0x7000_0000..u32::MAX) } else { rng.gen() };
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => bytes.truncate(at),
            }
            match catch_unwind(AssertUnwindSafe(|| ours(&bytes, name))) {
                Ok(Ok(_)) => decoded += 1,
                Ok(Err(e)) => {
                    assert!(e.contains(name), "{e}");
                    refused += 1;
                }
                Err(_) => panicked.push(format!("{name}, round {round}")),
            }
        }
    }
    println!("{} mutated files: {decoded} decoded, {refused} refused, {} panics", names.len() * 120, panicked.len());
    assert!(panicked.is_empty(), "{panicked:#?}");
    assert!(decoded > 0 && refused > 0);
}

/// Where the data set starts: after the meta group (explicit VR little endian).
fn meta_end(bytes: &[u8]) -> usize {
    let mut pos = 132;
    while bytes[pos..pos + 2] == [0x02, 0x00] {
        let long = matches!(&bytes[pos + 4..pos + 6], b"OB" | b"OW" | b"UN" | b"SQ" | b"UT");
        pos += if long { 12 + u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize } else { 8 + usize::from(u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]])) };
    }
    pos
}

/// A deflated data set is inflated (at most MAX_INFLATED bytes) and scanned like any other:
/// image_dfl.dcm with its Pixel Data declaring 2 GiB, deflated again, is refused by the scan
/// before dicom-rs would allocate 2 GiB; a stream that does not inflate is an error.
#[test]
fn a_deflated_data_set_is_scanned() {
    use std::io::{Read, Write};
    let bytes = corpus_file("image_dfl.dcm");
    let start = meta_end(&bytes);
    let mut data = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[start..]).read_to_end(&mut data).unwrap();
    let at = data.windows(4).position(|w| w == [0xE0, 0x7F, 0x10, 0x00]).expect("Pixel Data");
    data[at + 8..at + 12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&data).unwrap();
    let hostile = [&bytes[..start], &enc.finish().unwrap()].concat();
    let e = Dicom::parse(&hostile, "bomb.dcm").err().expect("an error").to_string();
    assert!(e.contains("bomb.dcm") && e.contains("(7FE0,0010)") && e.contains("declares 2147483632 bytes"), "{e}");
    let broken = [&bytes[..start], &[0xFF; 64][..]].concat();
    let e = Dicom::parse(&broken, "broken.dcm").err().expect("an error").to_string();
    assert!(e.contains("does not inflate"), "{e}");
}

/// Frames located by the Extended Offset Table (7FE0,0001/0002), which pydicom honours: the
/// two frames of SC_rgb_rle_2frame.dcm stored in reverse order, with an empty Basic Offset
/// Table and an Extended Offset Table pointing at each. Without it, frame 0 would be the
/// first fragment (frame 1's pixels).
#[test]
fn the_extended_offset_table_locates_frames() {
    let dir = scratch("eot");
    let (src, out) = (dir.join("src"), dir.join("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let script = r#"
import sys, struct, pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
f0, f1 = list(generate_frames(ds.PixelData, number_of_frames=2))
ds.PixelData = encapsulate([f1, f0], has_bot=False)
pad = lambda f: len(f) + len(f) % 2
ds.ExtendedOffsetTable = struct.pack("<2Q", 8 + pad(f1), 0)
ds.ExtendedOffsetTableLengths = struct.pack("<2Q", len(f0), len(f1))
ds.save_as(sys.argv[1] + "/eot.dcm")
"#;
    assert!(Command::new(python()).args(["-c", script]).arg(&src).status().unwrap().success(), "writing eot.dcm with pydicom");
    assert!(Command::new(python()).arg(root().join("tests/dicom_reference.py")).arg(&src).arg(&out).status().unwrap().success());
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"][0]["decoded"].as_bool().unwrap(), "pydicom: {}", manifest["files"][0]["error"]);
    let (values, _, _) = ours(&std::fs::read(src.join("eot.dcm")).unwrap(), "eot.dcm").unwrap();
    let want: Vec<i64> = std::fs::read(out.join("0.pixels")).unwrap().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(values == want, "frames differ from pydicom's: max difference {}", max_diff(&values, &want));
    let original = Dicom::parse(&corpus_file("SC_rgb_rle_2frame.dcm"), "2frame.dcm").unwrap();
    assert!(values[..values.len() / 2] == original.pixel_array(0).unwrap().values[..], "frame 0 is not the original's frame 0");
    std::fs::remove_dir_all(&dir).ok();
}
