//! Input pipeline tests: Pillow-exact decoding and CLIP transform against the goldens,
//! tokenizer equality, MLM masking statistics, Arrow datasets, batching and `m3ae data check`.
/// The loader's tests, under tests/data/.
mod data {
    pub mod cut;
    pub mod loader;
    pub mod mlm;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use m3ae::data::check;
use m3ae::data::dataset::{Dataset, DatasetKind};
use m3ae::data::image_io::{decode_rgba, open_rgba};
use m3ae::data::preprocess_set;
use m3ae::data::tokenizer::TextTokenizer;
use m3ae::data::transforms::{clip_transform, Normalization, Transform, TransformKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures/data")
}

fn goldens(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).expect("golden safetensors").into_iter().collect()
}

/// Largest per-pixel difference in 0..=1 units (un-normalizing with the CLIP std).
/// Pillow's 8-bit pixels, exactly: one level is 1/255 = 3.9e-3 in `pixel_error`'s units, and
/// two float orders of ToTensor + Normalize on the same level differ by under 1e-6.
const SAME_PIXELS: f64 = 1e-6;

fn pixel_error(port: &Tensor, golden: &Tensor) -> f64 {
    let std = Tensor::from_slice(&Normalization::CLIP.std).view([3, 1, 1]);
    ((port - golden) * std).abs().max().double_value(&[])
}

pub fn toy_tokenizer(len: usize) -> TextTokenizer {
    TextTokenizer::load(&root().join("parity/preprocess/toy-roberta-tokenizer.json"), len).expect("toy tokenizer")
}

#[test]
fn preprocess_set_matches_every_golden() {
    let dir = root().join("parity/preprocess");
    let port = preprocess_set::compute(&dir).expect("compute");
    let golden = goldens(&dir.join("goldens.safetensors"));
    assert_eq!(port.keys().collect::<Vec<_>>(), golden.keys().collect::<Vec<_>>(), "tensor names");
    for (name, g) in &golden {
        let p = &port[name];
        assert_eq!(p.size(), g.size(), "{name}: shape");
        assert_eq!(p.kind(), g.kind(), "{name}: dtype");
        if name.starts_with("clip.") {
            let err = pixel_error(p, g);
            println!("{name}: max pixel error {:e} (x255: {:.3})", err, err * 255.0);
            assert!(err <= SAME_PIXELS, "{name}: max pixel error {err}");
        } else {
            assert!(p.equal(g), "{name}: not equal\nport {p}\ngolden {g}");
        }
    }
}

#[test]
fn model_sets_pre_clip_transform() {
    for set in ["tiny-a", "tiny-b"] {
        let dir = root().join("parity").join(set);
        let golden = goldens(&dir.join("goldens.safetensors"));
        let g = &golden["pre.clip_transform"];
        let p = clip_transform(&dir.join("sample.png"), g.size()[1]).expect("clip_transform");
        let err = pixel_error(&p, g);
        println!("{set} pre.clip_transform: max pixel error {:e}", err);
        assert!(err <= SAME_PIXELS, "{set}: {err}");
    }
}

#[test]
fn clip_transform_of_jpeg_tiff_bmp_matches_torchvision() {
    let dir = fixtures().join("images");
    let golden = goldens(&dir.join("clip_goldens.safetensors"));
    assert_eq!(golden.len(), 10);
    for (name, g) in &golden {
        let (file, size) = name.strip_prefix("clip.").unwrap().rsplit_once('.').unwrap();
        let p = clip_transform(&dir.join(file), size.parse().unwrap()).unwrap();
        let err = pixel_error(&p, g);
        println!("{name}: max pixel error {:e} (x255: {:.3})", err, err * 255.0);
        assert!(err <= SAME_PIXELS, "{name}: {err}");
    }
}

#[test]
fn decoders_match_pillow_rgba() {
    let dir = fixtures().join("images");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let entries = manifest.as_object().unwrap();
    assert!(entries.len() >= 9);
    for (name, info) in entries {
        let img = open_rgba(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = std::fs::read(dir.join(format!("{name}.rgba"))).unwrap();
        let size: Vec<u64> = info["size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!([u64::from(img.width()), u64::from(img.height())], [size[0], size[1]], "{name}: size");
        let diff = img.as_raw().iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name} ({}): {diff} bytes differ from Pillow", info["pil_mode"]);
    }
}

#[test]
fn refuses_absurd_dimensions_and_garbage() {
    let mut jpeg = std::fs::read(fixtures().join("images/ihc_420.jpg")).unwrap();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let err = decode_rgba(&jpeg, "huge.jpg").unwrap_err().to_string();
    assert!(err.contains("huge.jpg") && err.contains("60000x60000"), "{err}");
    let err = decode_rgba(b"plain text", "notes.txt").unwrap_err().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    let png = std::fs::read(fixtures().join("images/ihc.png")).unwrap();
    assert!(decode_rgba(&png[..png.len() / 2], "half.png").is_err());
}

/// Reference DICOM rendering from pydicom in the project venv: modality LUT, then the file's
/// linear window, or min-max without one.
fn pydicom_reference(name: &str, out: &Path) -> PathBuf {
    let script = r#"
import sys, numpy as np, pydicom, shutil
from pydicom.data import get_testdata_file
src = get_testdata_file(sys.argv[1]); shutil.copy(src, sys.argv[2] + ".dcm")
ds = pydicom.dcmread(src)
x = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
if "WindowCenter" in ds:
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    y = np.clip(((x - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255)
else:
    y = (x - x.min()) / (x.max() - x.min()) * 255
open(sys.argv[2] + ".grey", "wb").write(np.round(y).astype(np.uint8).tobytes())
"#;
    let python = root().join(".venv/bin/python");
    let status = Command::new(&python).args(["-c", script, name]).arg(out).status().expect("run the venv python (scripts/setup.sh)");
    assert!(status.success(), "pydicom reference for {name} (pip install pydicom)");
    out.to_path_buf()
}

#[test]
fn dicom_applies_rescale_and_window() {
    let tmp = std::env::temp_dir().join(format!("m3ae-dicom-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for name in ["MR_small.dcm", "CT_small.dcm"] {
        let base = pydicom_reference(name, &tmp.join(name));
        let img = open_rgba(&base.with_extension("dcm.dcm")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = std::fs::read(base.with_extension("dcm.grey")).unwrap();
        assert_eq!(img.pixels().len(), expected.len(), "{name}");
        let max = img.pixels().zip(&expected).map(|(p, &e)| (i32::from(p[0]) - i32::from(e)).abs()).max().unwrap();
        println!("{name}: max difference from pydicom {max}");
        assert!(max <= 1, "{name}: max difference {max}");
        assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2] && p[3] == 255));
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn vocab_merges_folder_equals_tokenizer_json() {
    let folder = TextTokenizer::load(&fixtures().join("toy-bpe"), 16).unwrap();
    let json = toy_tokenizer(16);
    for text in ["Axial CT of the chest.", "", "   spaces   ", "a very long caption a very long caption a very long caption"] {
        assert_eq!(folder.encode(text).unwrap(), json.encode(text).unwrap(), "{text:?}");
    }
    // The toy vocabulary has no <mask>: it is appended, as RobertaTokenizerFast does.
    assert_eq!((json.mask_id(), json.pad_id(), json.vocab_size()), (1000, 1, 1001));
    let err = TextTokenizer::load(&fixtures().join("images"), 16).err().expect("no tokenizer there").to_string();
    assert!(err.contains("vocab.json"), "{err}");
}

#[test]
fn arrow_datasets_index_one_sample_per_text() {
    let dir = fixtures().join("arrow");
    let roco = Dataset::open(&dir.join("roco_train.arrow"), "p_meth_label").unwrap();
    assert_eq!((roco.kind, roco.table.num_rows(), roco.len()), (DatasetKind::Pretrain, 4, 5));
    assert_eq!(roco.index[..3], [(0, 0), (0, 1), (1, 0)]);
    assert_eq!(roco.text(2), "");
    let vqa = Dataset::open(&dir.join("vqa_vqa_rad_train.arrow"), "p_meth_label").unwrap();
    assert_eq!((vqa.kind, vqa.len(), vqa.text(1)), (DatasetKind::Vqa, 3, "where is the lesion?"));
    assert_eq!((vqa.vqa[0][1].labels.clone(), vqa.vqa[0][1].answer_type), (vec![3], 1));
    assert_eq!(vqa.label_range(), Some((0, 3)));
    let cls = Dataset::open(&dir.join("cls_melinda_train.arrow"), "p_meth_label").unwrap();
    assert_eq!((cls.len(), cls.cls_labels.clone()), (3, vec![vec![4], vec![2, 2]]));
    let irtr = Dataset::open(&dir.join("irtr_roco_test.arrow"), "p_meth_label").unwrap();
    assert_eq!((irtr.kind, irtr.len()), (DatasetKind::Irtr, 3));
    let bad = Dataset::open(&dir.join("bad/roco_train.arrow"), "p_meth_label").err().unwrap().to_string();
    assert!(bad.contains("bad/roco_train.arrow") && bad.contains("`caption`"), "{bad}");
    let bad = Dataset::open(&dir.join("bad/vqa_slack_train.arrow"), "p_meth_label").err().unwrap().to_string();
    assert!(bad.contains("`answer_scores`") && bad.contains("missing"), "{bad}");
}

/// Randomness is per sample: a sample's augmented image, false image, MLM masking and MIM
/// noise are the same whatever batch it lands in.
#[test]
fn transforms_random_variants_only_for_train() {
    assert_eq!(TransformKind::parse("clip_randaug").unwrap().for_split("val"), TransformKind::Clip);
    assert_eq!(TransformKind::parse("clip_resizedcrop").unwrap().for_split("train"), TransformKind::ClipResizedCrop);
    assert!(TransformKind::parse("clip_rand").is_err());
    let img = open_rgba(&fixtures().join("images/ihc.png")).unwrap();
    for key in ["clip_resizedcrop", "clip_randaug", "imagenet", "vit_randaug"] {
        let t = Transform { kind: TransformKind::parse(key).unwrap(), size: 48 };
        let a = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(a.size(), [3, 48, 48], "{key}");
        assert!(a.equal(&b), "{key}: not reproducible");
    }
    let clip = Transform { kind: TransformKind::Clip, size: 48 }.apply(&img, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    let differs = (0..8u64).any(|s| {
        let t = Transform { kind: TransformKind::ClipRandAug, size: 48 };
        !t.apply(&img, &mut ChaCha8Rng::seed_from_u64(s)).unwrap().equal(&clip)
    });
    assert!(differs, "RandAugment never changed the image");
    // Extreme aspect ratios and tiny images: only the S × S window is resampled.
    for (w, h) in [(1, 200_000), (300_000, 2), (1, 1)] {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 100, 50, 255]));
        let t = Transform { kind: TransformKind::Clip, size: 288 }.apply(&img, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(t.size(), [3, 288, 288], "{w}x{h}");
    }
}

#[test]
fn data_check_reports_files_and_exit_codes() {
    let dir = fixtures().join("arrow");
    let report = check::check(&dir, &[]).unwrap();
    let names: Vec<String> = report.files.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["roco_train.arrow", "roco_val.arrow", "vqa_vqa_rad_train.arrow", "cls_melinda_train.arrow", "irtr_roco_test.arrow"]);
    let val = &report.files[1];
    assert_eq!(val.unreadable.iter().map(|u| u.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(report.passed(false) && !report.passed(true));
    assert_eq!(report.files[3].label_range, Some((2, 4)));
    let bad = check::check(&dir.join("bad"), &[]).unwrap();
    assert_eq!(bad.schema_errors.len(), 2);
    assert!(!bad.passed(false));
    assert!(check::check(&dir, &["nope".into()]).is_err());

    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_m3ae")).args(args).output().unwrap();
    let ok = run(&["data", "check", dir.to_str().unwrap(), "--datasets", "roco", "vqa_vqa_rad"]);
    let table = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{table}");
    assert!(table.contains("unreadable row 2") && !table.contains("cls_melinda"), "{table}");
    assert_eq!(run(&["data", "check", dir.to_str().unwrap(), "--strict"]).status.code(), Some(1));
    assert_eq!(run(&["data", "check", dir.join("bad").to_str().unwrap()]).status.code(), Some(1));
}

/// A folder without any upstream Arrow file (a typo in the path, the wrong folder) is an error
/// naming the folder, and `m3ae data check` exits 2, not 0; so is a --datasets filter that
/// matches none of the files present.
#[test]
fn data_check_refuses_a_folder_without_arrow_files() {
    let empty = std::env::temp_dir().join(format!("m3ae-no-arrow-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "no tables here").unwrap();
    let e = check::check(&empty, &[]).unwrap_err().to_string();
    assert!(e.contains(&format!("{}: no upstream Arrow files", empty.display())), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_m3ae")).args(["data", "check"]).arg(&empty).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no upstream Arrow files"), "{err}");
    let e = check::check(&fixtures().join("arrow"), &["vqa_slack".into()]).unwrap_err().to_string();
    assert!(e.contains("no upstream Arrow files of vqa_slack"), "{e}");
    std::fs::remove_dir_all(&empty).unwrap();
}


/// Inputs the image fuzz target found (fuzz/README.md): DICOM files of a few kilobytes whose
/// element headers declare more bytes than the file holds. dicom-rs allocates each value at
/// its declared length before reading it; the length scan refuses them first, naming the
/// element.
#[test]
fn fuzz_found_dicom_lengths_are_refused_before_allocation() {
    for name in ["dicom-huge-element-1.bin", "dicom-huge-element-2.bin", "dicom-huge-element-3.bin"] {
        let bytes = std::fs::read(fixtures().join("fuzz").join(name)).unwrap();
        let e = m3ae::data::image_io::decode_rgba(&bytes, name).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("declares") && e.contains("remain"), "{e}");
    }
}

/// Native pixel data shorter than Rows × Columns × samples × bytes is refused before dicom-rs
/// sizes a frame buffer from the header: MR_small with its Rows (0028,0010) raised to 4096.
#[test]
fn dicom_pixel_data_shorter_than_its_header_is_refused() {
    let tmp = std::env::temp_dir().join(format!("m3ae-dicom-short-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let path = pydicom_reference("MR_small.dcm", &tmp.join("mr")).with_extension("dcm");
    let mut bytes = std::fs::read(&path).unwrap();
    let rows_tag = [0x28u8, 0x00, 0x10, 0x00, b'U', b'S', 0x02, 0x00];
    let at = bytes.windows(8).position(|w| w == rows_tag).expect("MR_small states Rows in explicit VR");
    bytes[at + 8..at + 10].copy_from_slice(&4096u16.to_le_bytes());
    let e = decode_rgba(&bytes, "mr-tall.dcm").unwrap_err().to_string();
    assert!(e.contains("pixel data holds") && e.contains("need"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}

/// Inputs the Arrow fuzz target found (the fixture's first byte is the target's file-name
/// choice): a record batch whose column buffer lies outside the message body, which arrow-rs
/// slices without a check and panics on (the reader checks every buffer of a message first).
/// One whose schema holds a field of type NONE, on which arrow-rs's schema conversion panics
/// (`unimplemented!`): the reader accepts only the column types upstream's tables use. And one
/// whose field node claims more nulls than rows, so arrow-rs asserts on the validity bitmap:
/// every column's nodes and buffers are checked against its type first. And one whose row
/// count outruns its offsets buffer, and one whose 64-bit offsets buffer is 28 bytes: arrow-rs
/// views both as typed slices and asserts. And a table without columns whose batch claims
/// billions of rows, which made the row index allocate until it aborted: a table needs a column,
/// and every accepted column type has a buffer that bounds its rows.
#[test]
fn fuzz_found_arrow_files_are_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("m3ae-arrow-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let found = [
        ("arrow-buffer-outside-body.bin", "lies outside"),
        ("arrow-schema-type-none.bin", "type NONE is not one upstream's tables use"),
        ("arrow-nulls-beyond-length.bin", "length 3 with 63232 nulls"),
        ("arrow-misaligned-offsets.bin", "offsets or values"),
        ("arrow-partial-offsets.bin", "28 bytes is not a whole number of 8-byte offsets"),
        ("arrow-null-column-rows.bin", "the schema has no columns"),
    ];
    for (fixture, expect) in found {
        let bytes = std::fs::read(fixtures().join("fuzz").join(fixture)).unwrap();
        let path = dir.join("irtr_roco_test.arrow");
        std::fs::write(&path, &bytes[1..]).unwrap();
        let e = Dataset::open(&path, "p_meth_label").err().expect("an error").to_string();
        assert!(e.contains("irtr_roco_test.arrow") && e.contains(expect), "{fixture}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// An input the image fuzz target found: a paletted PNG whose PLTE chunk ends mid-entry (49
/// bytes). The png crate indexes past the partial entry and panics; the palette is checked
/// first.
#[test]
fn fuzz_found_png_palette_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixtures().join("fuzz/png-partial-palette-entry.bin")).unwrap();
    let e = decode_rgba(&bytes, "palette.png").unwrap_err().to_string();
    assert!(e.contains("palette.png") && e.contains("PLTE chunk of 49 bytes"), "{e}");
}

/// A DICOM file the image fuzz target found with BitsStored 143: dicom-pixeldata asserts
/// (panics) on it; the pixel format is checked first.
#[test]
fn fuzz_found_dicom_pixel_format_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixtures().join("fuzz/dicom-bits-stored-143.bin")).unwrap();
    let e = decode_rgba(&bytes, "bits.dcm").unwrap_err().to_string();
    assert!(e.contains("bits.dcm") && e.contains("BitsStored 143 is not a pixel format"), "{e}");
}
