//! `cargo test --test predict`: the inference API on the training golden sets' tiny models
//! (parity/train-vqa, parity/train-irtr) and a fresh tiny model with every head: VQA
//! probabilities are the sigmoid of the training path's logits, ITM the softmax, retrieval
//! ranks as `retrieval_scores` sorts, every image format loads, fine-tuning ships the answer
//! vocabulary, bad input gives errors that name it, and the two model figures are drawn.
use std::path::{Path, PathBuf};

use m3ae::config::keys::{build_config, read_json};
use m3ae::data::image_set::ImageSet;
use m3ae::data::tokenizer::TextTokenizer;
use m3ae::data::transforms::clip_transform;
use m3ae::model::{InferInput, InferOptions, M3aeTransformerSs};
use m3ae::report::raster::{CAPTION, CELL, HEADER, PAD, ROW_LABEL};
use m3ae::report::FigureSample;
use m3ae::tasks::answers::AnswerVocab;
use m3ae::tasks::retrieval::{retrieval_scores, retrieve};
use m3ae::tasks::{itm, vqa, LoadOptions, M3ae};
use m3ae::train::objectives::{compute_itm, compute_vqa};
use m3ae::weights::convert::{write_model_dir, ModelWeights};
use m3ae::Error;
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn set(name: &str) -> PathBuf {
    root().join("parity").join(name)
}

fn image(name: &str) -> PathBuf {
    root().join("tests/fixtures/data/images").join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m3ae-predict-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A golden set's model with its tokenizer given explicitly (the config names it relatively).
fn golden(name: &str, answers: Option<PathBuf>) -> M3ae {
    let opts = LoadOptions { tokenizer: Some(set(name).join("tokenizer")), answers };
    M3ae::load_with(&set(name).join("model"), Device::Cpu, &opts).unwrap()
}

/// The golden set's `label2ans` (from its manifest).
fn label2ans(name: &str) -> Vec<String> {
    let m = read_json(&set(name).join("manifest.json")).unwrap();
    serde_json::from_value(m["data_info"]["label2ans"].clone()).unwrap()
}

/// The training path's inputs, built without `M3ae`: the data layer's clip transform and the
/// tokenizer the trainer loads.
fn training_inputs(m: &M3ae, set_name: &str, img: &Path, text: &str) -> (Tensor, Tensor, Tensor) {
    let pixels = clip_transform(img, m.config.image_size).unwrap().unsqueeze(0);
    let tok = TextTokenizer::load(&set(set_name).join("tokenizer"), m.config.max_text_len as usize).unwrap();
    let enc = tok.encode(text).unwrap();
    (pixels, Tensor::from_slice(&enc.input_ids).unsqueeze(0), Tensor::from_slice(&enc.attention_mask).unsqueeze(0))
}

#[test]
fn vqa_probabilities_are_the_sigmoid_of_the_training_path_logits() {
    let dir = scratch("vqa");
    let answers = dir.join("answers.json");
    std::fs::write(&answers, serde_json::to_string(&label2ans("train-vqa")).unwrap()).unwrap();
    let m = golden("train-vqa", Some(answers));
    let question = "what color is the shape?";
    let (pixels, ids, masks) = training_inputs(&m, "train-vqa", &image("ihc.png"), question);
    let input = InferInput { image: &pixels, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
    let targets = Tensor::zeros([1, m.config.vqa_label_size], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| compute_vqa(&m.model, &input, &targets, &InferOptions::default())).unwrap().logits.get(0);
    let expected = Vec::<f64>::try_from(logits.sigmoid().to_kind(Kind::Double)).unwrap();
    let top = vqa::vqa(&m, &m.image_from_file(&image("ihc.png")).unwrap(), question, 3).unwrap();
    assert_eq!(top.len(), 3);
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    let names = label2ans("train-vqa");
    for (a, &want) in top.iter().zip(&order) {
        assert_eq!(a.label, want as i64, "answers ranked by probability");
        assert!((a.probability - expected[want]).abs() < 1e-6, "label {}: {} vs sigmoid {}", a.label, a.probability, expected[want]);
        assert_eq!(a.answer.as_deref(), Some(names[want].as_str()), "the answer is named from answers.json");
    }
    // top_k beyond the vocabulary gives every answer once
    assert_eq!(vqa::vqa(&m, &m.image_from_file(&image("ihc.png")).unwrap(), question, 100).unwrap().len(), names.len());
}

#[test]
fn match_probability_is_the_softmax_of_the_itm_head() {
    let m = golden("train-irtr", None);
    let text = "a small red circle on the left";
    let (pixels, ids, masks) = training_inputs(&m, "train-irtr", &image("ihc_444.jpg"), text);
    let input = InferInput { image: &pixels, text_ids: &ids, text_masks: &masks, text_ids_mlm: None, mim_noise: None };
    let labels = Tensor::from_slice(&[1i64]);
    let logits = tch::no_grad(|| compute_itm(&m.model, &input, &labels, &InferOptions::default())).unwrap().logits.get(0);
    let p = Vec::<f64>::try_from(logits.softmax(0, Kind::Double)).unwrap();
    let s = itm::itm(&m, &m.image_from_file(&image("ihc_444.jpg")).unwrap(), text).unwrap();
    assert!((s.probability - p[1]).abs() < 1e-6, "{} vs softmax[1] {}", s.probability, p[1]);
    assert!((s.logits[1] - s.logits[0] - (p[1] / p[0]).ln()).abs() < 1e-5);
}

#[test]
fn retrieval_ranks_images_as_sorting_retrieval_scores() {
    let m = golden("train-irtr", None);
    let query = "a large blue square at the top";
    for source in [root().join("tests/fixtures/data/images"), set("train-irtr").join("data/irtr_roco_test.arrow")] {
        let images = ImageSet::open(&source).unwrap();
        assert!(images.len() >= 6, "{}: {} images", source.display(), images.len());
        let r = retrieve(&m, &images, query, 5).unwrap();
        assert_eq!((r.scorer, r.ranked, r.hits.len()), ("irtr_head", images.len(), 5));
        let batch: Vec<Tensor> = (0..images.len()).map(|i| m.image_from_rgba(&images.decode(i).unwrap()).unwrap()).collect();
        let (ids, masks) = m.encode_texts(&[query]).unwrap();
        let scores = tch::no_grad(|| retrieval_scores(&m.model, &Tensor::stack(&batch, 0), &ids, &masks)).unwrap();
        let scores = Vec::<f64>::try_from(scores.select(1, 0).to_kind(Kind::Double)).unwrap();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        for (h, &want) in r.hits.iter().zip(&order) {
            assert_eq!(h.index, want, "{}: rank {}", source.display(), h.rank);
            assert!((h.score - scores[want]).abs() < 1e-6);
            assert_eq!(h.name, images.name(want));
        }
    }
}

/// A 16 × 16 8-bit MONOCHROME2 DICOM file of `pixels` (row-major).
fn write_dicom(path: &Path, pixels: Vec<u8>) {
    write_dicom_frames(path, pixels, 1);
}

/// A 16 × 16 8-bit MONOCHROME2 DICOM file of `frames` frames, `pixels` holding them in order.
fn write_dicom_frames(path: &Path, pixels: Vec<u8>, frames: u16) {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let us = |tag: Tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let obj = InMemDicomObject::from_element_iter([
        DataElement::new(Tag(0x0008, 0x0016), VR::UI, PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7")),
        DataElement::new(Tag(0x0008, 0x0018), VR::UI, PrimitiveValue::from("1.2.3.4.5")),
        us(Tag(0x0028, 0x0002), 1),
        DataElement::new(Tag(0x0028, 0x0004), VR::CS, PrimitiveValue::from("MONOCHROME2")),
        DataElement::new(Tag(0x0028, 0x0008), VR::IS, PrimitiveValue::from(frames.to_string())),
        us(Tag(0x0028, 0x0010), 16),
        us(Tag(0x0028, 0x0011), 16),
        us(Tag(0x0028, 0x0100), 8),
        us(Tag(0x0028, 0x0101), 8),
        us(Tag(0x0028, 0x0102), 7),
        us(Tag(0x0028, 0x0103), 0),
        DataElement::new(Tag(0x7FE0, 0x0010), VR::OB, PrimitiveValue::from(pixels)),
    ]);
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3.4.5");
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

#[test]
fn every_image_format_loads() {
    let m = golden("train-vqa", None);
    let s = m.config.image_size;
    let png = m.image_from_file(&image("ihc.png")).unwrap();
    assert_eq!(png.size(), [3, s, s]);
    // lossless formats of the same picture give the same tensor
    for lossless in ["ihc.bmp", "ihc.tif"] {
        let t = m.image_from_file(&image(lossless)).unwrap();
        assert!(t.allclose(&png, 0.0, 0.0, false), "{lossless} differs from ihc.png");
    }
    for jpeg in ["ihc_420.jpg", "ihc_444.jpg"] {
        let t = m.image_from_file(&image(jpeg)).unwrap();
        assert_eq!(t.size(), [3, s, s]);
        let diff = (t - &png).abs().mean(Kind::Float).double_value(&[]);
        assert!(diff < 0.1, "{jpeg}: mean difference {diff} from the PNG");
    }
    // a grey ramp over 0..=255 as DICOM and as PNG: the same tensor
    let ramp: Vec<u8> = (0..=255u8).collect();
    let dcm = scratch("dicom").join("ramp.dcm");
    write_dicom(&dcm, ramp.clone());
    let png = dcm.with_file_name("ramp.png");
    image::GrayImage::from_raw(16, 16, ramp).unwrap().save(&png).unwrap();
    let t = m.image_from_file(&dcm).unwrap();
    assert_eq!(t.size(), [3, s, s]);
    let diff = (t - m.image_from_file(&png).unwrap()).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "DICOM and PNG of one ramp differ by {diff}");
    // the DICOM file also counts in a folder of images
    std::fs::write(dcm.with_file_name("notes.txt"), "not an image").unwrap();
    let folder = ImageSet::open(dcm.parent().unwrap()).unwrap();
    assert_eq!((folder.len(), folder.name(0), folder.name(1)), (2, "ramp.dcm", "ramp.png"));
}

/// `predict --frame N`: frame N of a multi-frame DICOM file is the image; frames count from
/// 0, and one past the last is an error. Frames 0 and 1 are a ramp and its reverse, each
/// compared with a PNG of the same pixels.
#[test]
fn a_dicom_frame_is_chosen_by_index() {
    let m = golden("train-vqa", None);
    let ramp: Vec<u8> = (0..=255u8).collect();
    let reversed: Vec<u8> = ramp.iter().rev().copied().collect();
    let dir = scratch("frames");
    let dcm = dir.join("two.dcm");
    write_dicom_frames(&dcm, [ramp.clone(), reversed.clone()].concat(), 2);
    for (frame, pixels) in [(0, ramp), (1, reversed)] {
        let png = dir.join(format!("frame{frame}.png"));
        image::GrayImage::from_raw(16, 16, pixels).unwrap().save(&png).unwrap();
        let diff = (m.image_from_file_frame(&dcm, frame).unwrap() - m.image_from_file(&png).unwrap()).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "frame {frame} differs from its PNG by {diff}");
    }
    let e = m.image_from_file_frame(&dcm, 2).unwrap_err().to_string();
    assert!(e.contains("two.dcm") && e.contains("frame 2 requested, the file has 2"), "{e}");
}

#[test]
fn bad_input_gives_errors_that_name_it() {
    let vqa_model = golden("train-vqa", None);
    let irtr_model = golden("train-irtr", None);
    let msg = |e: Error| e.to_string();
    let missing = root().join("no-such-image.png");
    assert!(msg(vqa_model.image_from_file(&missing).unwrap_err()).contains("no-such-image.png"));
    let img = vqa_model.image_from_file(&image("ihc.png")).unwrap();
    assert!(msg(itm::itm(&vqa_model, &img, "a caption").unwrap_err()).contains("no itm_head"));
    assert!(msg(vqa::vqa(&irtr_model, &img, "what color?", 3).unwrap_err()).contains("no vqa_head"));
    assert!(msg(vqa::vqa(&vqa_model, &img, "what color?", 0).unwrap_err()).contains("top_k"));
    let wrong_size = Tensor::zeros([3, 8, 8], (Kind::Float, Device::Cpu));
    assert!(msg(vqa::vqa(&vqa_model, &wrong_size, "what color?", 1).unwrap_err()).contains("[3, 48, 48]"));
    // not a model folder
    let dir = scratch("errors");
    assert!(msg(M3ae::load(&dir.join("nothing"), Device::Cpu).unwrap_err()).contains("no such folder"));
    assert!(msg(M3ae::load(&dir, Device::Cpu).unwrap_err()).contains("model.safetensors"));
    // the config's relative tokenizer is not found from a copy of the model folder
    let copy = dir.join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(set("train-vqa").join("model").join(f), copy.join(f)).unwrap();
    }
    assert!(msg(M3ae::load(&copy, Device::Cpu).unwrap_err()).contains("--tokenizer"));
    // beside the golden set's folder it is found (`tokenizer` next to `model/`)
    assert!(M3ae::load(&set("train-vqa").join("model"), Device::Cpu).is_ok());
    // a folder without images
    assert!(msg(ImageSet::open(&dir).err().unwrap()).contains("no PNG, JPEG"));
    let bad_answers = dir.join("answers.json");
    std::fs::write(&bad_answers, "{\"no\": 0}").unwrap();
    let opts = LoadOptions { tokenizer: Some(set("train-vqa").join("tokenizer")), answers: Some(bad_answers) };
    assert!(msg(M3ae::load_with(&set("train-vqa").join("model"), Device::Cpu, &opts).unwrap_err()).contains("answers.json"));
}

#[test]
fn fine_tuning_ships_the_answer_vocabulary_and_predict_names_the_answers() {
    use m3ae::train::task::Task;
    use m3ae::train::trainer::{fit, RunOptions};
    let s = set("train-vqa");
    // read off the Arrow files: upstream's label2ans (train-vqa's test split is its val split)
    let derived = AnswerVocab::from_arrow_files(&[s.join("data/vqa_vqa_rad_train.arrow"), s.join("data/vqa_vqa_rad_val.arrow")]).unwrap().unwrap();
    let want: Vec<Option<String>> = label2ans("train-vqa").into_iter().map(Some).collect();
    assert_eq!(derived.answers, want);
    let run = scratch("finetune");
    let overrides = [
        ("data_root", json!(s.join("data"))),
        ("tokenizer", json!(s.join("tokenizer"))),
        ("load_path", json!(s.join("model"))),
        ("test_only", json!(true)),
        ("max_steps", json!(1)),
    ];
    let opts = RunOptions {
        task: Task::finetune("vqa_vqa_rad").unwrap(),
        run_dir: run.clone(),
        config_file: Some(s.join("config.json")),
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        resume: false,
        device: Device::Cpu,
    };
    fit(&opts).unwrap();
    let last = run.join("checkpoints/last");
    assert_eq!(AnswerVocab::read(&last.join("answers.json")).unwrap(), derived);
    let m = M3ae::load(&last, Device::Cpu).unwrap();
    let top = vqa::vqa(&m, &m.image_from_file(&image("ihc.png")).unwrap(), "is there a circle?", 2).unwrap();
    assert!(top.iter().all(|a| a.answer.as_deref() == derived.get(a.label)), "{top:?}");
}

/// A fresh tiny model with every pre-training head (train-irtr's shapes), as a model folder.
fn fresh_model_folder(dir: &Path) -> PathBuf {
    let mut base = read_json(&set("train-irtr").join("model/config.json")).unwrap();
    base["tokenizer"] = json!(set("train-irtr").join("tokenizer"));
    base["loss_names"] = json!({"mlm": 1, "mim": 1, "itm": 1});
    for (k, v) in [("mim_decoder_hidden_size", 32), ("mim_decoder_num_layers", 1), ("mim_decoder_num_heads", 2)] {
        base[k] = json!(v);
    }
    let config = build_config(Some(base), "test", &[], None).unwrap();
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), &config).unwrap();
    let state_dict = vs.variables().into_iter().collect();
    let out = dir.join("model");
    write_model_dir(&out, &ModelWeights { config, state_dict, report: Default::default() }).unwrap();
    out
}

/// Width and height of a figure of `rows` × `cols` panels, by the layout the module states.
fn expected_size(rows: u32, cols: u32) -> (u32, u32) {
    (PAD + cols * (CELL + PAD), HEADER + rows * (ROW_LABEL + CELL + CAPTION + PAD))
}

/// The pixels of the first row's panel `col`.
fn panel_pixels(img: &image::RgbImage, col: u32) -> Vec<image::Rgb<u8>> {
    let (x0, y0) = (PAD + col * (CELL + PAD), HEADER + ROW_LABEL);
    (0..CELL).flat_map(|y| (0..CELL).map(move |x| (x0 + x, y0 + y))).map(|(x, y)| *img.get_pixel(x, y)).collect()
}

/// The PNG's size, and whether its pixels vary inside the first row's first panel.
fn inspect_png(path: &Path) -> ((u32, u32), bool) {
    let img = image::open(path).unwrap().to_rgb8();
    let panel = panel_pixels(&img, 0);
    (img.dimensions(), panel.iter().any(|p| *p != panel[0]))
}

#[test]
fn model_figures_are_drawn_at_their_size() {
    let dir = scratch("figures");
    let m = M3ae::load(&fresh_model_folder(&dir), Device::Cpu).unwrap();
    let samples: Vec<FigureSample> = ["ihc.png", "retina16.png"]
        .iter()
        .map(|f| FigureSample { image: m.image_from_file(&image(f)).unwrap(), text: "is there a large nodule in the left lung?".into(), label: f.to_string() })
        .collect();
    let mim = m3ae::report::mim::mim_reconstructions(&[("a", &m), ("b", &m)], &samples, 7, &dir.join("mim_reconstructions.png")).unwrap();
    // original, masked, one reconstruction per model
    assert_eq!((mim.width, mim.height), expected_size(2, 4));
    let (size, varies) = inspect_png(&mim.path);
    assert_eq!(size, expected_size(2, 4));
    assert!(varies, "the original image is drawn");
    // the masked panel: the original where patches stay, grey where MIM removed them (75%)
    let img = image::open(&mim.path).unwrap().to_rgb8();
    let (original, masked) = (panel_pixels(&img, 0), panel_pixels(&img, 1));
    let n = masked.len() as f64;
    let grey = masked.iter().filter(|p| p.0.iter().all(|&c| c == 127 || c == 128)).count() as f64 / n;
    let kept = masked.iter().zip(&original).filter(|(a, b)| a == b).count() as f64 / n;
    assert!((0.6..0.8).contains(&grey) && (0.15..0.3).contains(&kept), "removed {grey}, kept {kept}");
    let att = m3ae::report::attention::attention(&m, &samples, 3, &dir.join("attention.png")).unwrap();
    assert_eq!(inspect_png(&att.path), (expected_size(2, 4), true));
    // a model without MIM cannot reconstruct
    let no_mim = golden("train-irtr", None);
    let e = m3ae::report::mim::mim_reconstructions(&[("irtr", &no_mim)], &samples[..1], 7, &dir.join("x.png")).unwrap_err();
    assert!(e.to_string().contains("no mim_head"), "{e}");
    eprintln!("figures in {}", dir.display());
}

#[test]
fn removed_patch_statistics_come_from_visible_neighbours() {
    // a 4 × 4 grid of statistics 1..=16, only the corners (0, 0) = 1 and (3, 3) = 16 visible
    let stat = Tensor::arange_start(1, 17, (Kind::Float, Device::Cpu)).view([4, 4]);
    let mut v = vec![0f32; 16];
    (v[0], v[15]) = (1.0, 1.0);
    let visible = Tensor::from_slice(&v).view([4, 4]);
    let est = m3ae::report::mim::from_visible_neighbours(&stat, &visible);
    let at = |r: i64, c: i64| est.double_value(&[r, c]);
    assert_eq!((at(0, 0), at(1, 1), at(1, 0)), (1.0, 1.0, 1.0), "next to the visible (0, 0)");
    assert_eq!((at(2, 2), at(3, 2)), (16.0, 16.0), "next to the visible (3, 3)");
    assert_eq!((at(0, 3), at(3, 0)), (8.5, 8.5), "no visible neighbour: the mean of every visible patch");
}
