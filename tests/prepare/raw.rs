//! Small raw releases of the seven datasets, in upstream's layout and each dataset's real
//! format, with the quirks `m3ae data prepare` must reproduce. Deterministic: the goldens in
//! tests/fixtures/prepare/ were written by upstream's prepro from exactly these files
//! (`manifest.json` holds their FNV-1a hashes; parity/prepare/make_golden.py).
use std::io::Cursor;
use std::path::Path;

/// A tiny PNG whose pixels encode `n` (distinct images have distinct bytes).
pub fn png(n: u32) -> Vec<u8> {
    let px = [(n & 255) as u8, ((n >> 8) & 255) as u8, ((n >> 16) & 255) as u8, 77];
    let img = image::GrayImage::from_fn(2, 2, |x, y| image::Luma([px[(y * 2 + x) as usize]]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// 64-bit FNV-1a, the manifest's hash (the script computes the same).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Writes the whole raw release under `root` (upstream's `data/`).
pub fn write(root: &Path) {
    let mut img = 0u32;
    let mut image = |root: &Path, rel: &str| {
        img += 1;
        put(root, rel, &png(img));
    };
    // ---- ROCO: captions, dlinks, images; MedICaT's ROCO reference texts
    let roco = "pretrain_data/roco";
    let refs = "pretrain_data/medicat/net/nfs2.corp/allennlp/sanjays/roco_files";
    let train_captions = "ROCO_00001\tChest  x-ray\u{a0}showing\tbad\n\
        ROCO_00002\t  CT of the \u{1c} abdomen with contrast \r\n\
        ROCO_00003\tshort one\n\
        no tab on this line\n\
        \n\
        ROCO_00004\tMRI brain, axial T2 view.\n\
        ROCO_00005\tMissing image caption here\n\
        ROCO_00006\tUltrasound of the   liver\n\
        ROCO_00001\tChest radiograph, second caption words\n";
    put(root, &format!("{roco}/train/radiology/captions.txt"), train_captions.as_bytes());
    for id in ["00001", "00002", "00003", "00004", "00006"] {
        image(root, &format!("{roco}/train/radiology/images/ROCO_{id}.jpg"));
    }
    // val: longer than irtr's 2,000 cap, most images missing, some captions short
    let mut val = String::new();
    for i in 0..2600u32 {
        if i % 7 == 3 {
            val.push_str(&format!("ROCO_1{i:04}\ttwo words\n"));
        } else {
            val.push_str(&format!("ROCO_1{i:04}\tvalidation caption number {i} of the set\n"));
        }
        if i % 97 == 5 {
            image(root, &format!("{roco}/val/radiology/images/ROCO_1{i:04}.jpg"));
        }
    }
    val.push_str("ROCO_00006\tthe liver again in validation\n");
    put(root, &format!("{roco}/val/radiology/captions.txt"), val.as_bytes());
    image(root, &format!("{roco}/val/radiology/images/ROCO_00006.jpg"));
    let test_captions = "ROCO_20001\tHead CT without contrast shows\n\
        ROCO_20002\tFrontal chest film of a child\n\
        ROCO_20003\tFoot x-ray\n\
        ROCO_20004\tPelvis radiograph in a trauma patient\n";
    put(root, &format!("{roco}/test/radiology/captions.txt"), test_captions.as_bytes());
    for id in ["20001", "20002", "20003", "20004"] {
        image(root, &format!("{roco}/test/radiology/images/ROCO_{id}.jpg"));
    }
    let dlink = |roco_id: &str, pmc: &str, fig: &str| {
        format!("ROCO_{roco_id}\t wget ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/0a/1b/{pmc}.tar.gz -O ./{pmc}.tar.gz\t{fig}\n")
    };
    put(root, &format!("{roco}/train/radiology/dlinks.txt"), (dlink("00001", "PMC101", "fig1.jpg") + &dlink("00002", "PMC102", "gr2.jpg") + &dlink("00004", "PMC104", "f3.jpg")).as_bytes());
    put(root, &format!("{roco}/val/radiology/dlinks.txt"), dlink("10005", "PMC205", "g1.jpg").as_bytes());
    put(root, &format!("{roco}/test/radiology/dlinks.txt"), dlink("20002", "PMC302", "fig2.jpg").as_bytes());
    put(
        root,
        &format!("{refs}/roco_train_references.jsonl"),
        concat!(
            r#"{"roco_image_id": "PMC101_fig1.jpg", "gorc_references": ["As shown in   Figure 1, the  opacity is right-sided.", "Fig 1"]}"#, "\n",
            r#"{"roco_image_id": "PMC102_gr2.jpg", "gorc_references": null}"#, "\n",
            r#"{"roco_image_id": "PMC104_f3.jpg", "gorc_references": ["\tThe MRI (Figure 3) shows a lesion\n in the left lobe. "]}"#, "\n"
        )
        .as_bytes(),
    );
    put(root, &format!("{refs}/roco_val_references.jsonl"), (r#"{"roco_image_id": "PMC205_g1.jpg", "gorc_references": ["Validation reference text that is long enough"]}"#.to_string() + "\n").as_bytes());
    put(root, &format!("{refs}/roco_test_references.jsonl"), (r#"{"roco_image_id": "PMC302_fig2.jpg", "gorc_references": []}"#.to_string() + "\n\n").as_bytes());
    // ---- MedICaT: more than 2,000 radiology figures so that all three splits are non-empty
    let mut medicat = String::new();
    for i in 0..2150u32 {
        let radiology = if i % 50 == 7 { "false" } else { "true" };
        let caption = match i % 9 {
            0 => "\"\"".to_string(),
            1 => "\"CT  scan\"".to_string(),
            _ => format!("\"Figure {i}: axial  image\\tof the chest\""),
        };
        let refs = if i % 5 == 0 { "null".to_string() } else { format!("[\"reference text for figure {i}\", \"too short\"]") };
        medicat.push_str(&format!(
            "{{\"pdf_hash\": \"h{:05x}\", \"fig_uri\": \"{i}-Figure1-1.png\", \"radiology\": {radiology}, \"s2_caption\": {caption}, \"s2orc_references\": {refs}}}\n",
            i * 7919 % 100_000
        ));
        if i % 37 == 1 {
            image(root, &format!("pretrain_data/medicat/release/figures/h{:05x}_{i}-Figure1-1.png", i * 7919 % 100_000));
        }
    }
    put(root, "pretrain_data/medicat/release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl", medicat.as_bytes());
    // ---- VQA-RAD: answers that need normalize_word, integer / null / bool answers, answer
    // types with spaces and lower case, a repeated (image, qid), a missing test image
    let rad = "finetune_data/vqa_rad";
    let q = |name: &str, qid: i64, question: &str, answer: &str, t: &str| {
        format!(r#"{{"image_name": "{name}", "qid": {qid}, "question": "{question}", "answer": {answer}, "answer_type": "{t}"}}"#)
    };
    let periods = ".".repeat(40);
    let train = [
        q("synpic100.jpg", 1, "Is there a fracture?", "\"Yes\"", "CLOSED"),
        q("synpic100.jpg", 2, "How many lesions are there?", "3", " open "),
        q("synpic100.jpg", 3, "What organ is shown?", "\"The left lung.\"", "OPEN"),
        q("synpic101.jpg", 4, "Is this an MRI?", "\"no\"", "Closed"),
        q("synpic101.jpg", 5, "Which side?", "\"right-sided, (mostly)\"", "open"),
        q("synpic101.jpg", 5, "Which side, again?", "\"left\"", "OPEN"),
        q("synpic102.jpg", 6, "What is abnormal?", "null", "OPEN"),
        q("synpic102.jpg", 7, "How large?", "\"1,000 mm\"", "OPEN"),
        q("synpic102.jpg", 8, "Is it normal?", "true", "CLOSED"),
        q("synpic102.jpg", 9, "Periods?", &format!("\"a{periods}b\""), "OPEN"),
        q("synpic103.jpg", 10, "What is wrong?", "\"isnt it two masses ?\"", "OPEN"),
        q("synpic103.jpg", 11, "Size in cm?", "2.5", "OPEN"),
    ];
    let val = [q("synpic104.jpg", 12, "Is there effusion?", "\"YES\"", "CLOSED"), q("synpic105.jpg", 13, "Which lobe?", "\"an upper lobe\"", "OPEN")];
    let test = [
        q("synpic104.jpg", 14, "Is there effusion?", "\"No\"", "CLOSED"),
        q("synpic199.jpg", 15, "Image missing here?", "\"yes\"", "CLOSED"),
        q("synpic105.jpg", 16, "How many?", "\"two\"", "OPEN"),
    ];
    for (file, items) in [("trainset.json", &train[..]), ("valset.json", &val[..]), ("testset.json", &test[..])] {
        put(root, &format!("{rad}/{file}"), format!("[\n  {}\n]\n", items.join(",\n  ")).as_bytes());
    }
    for n in 100..=105 {
        image(root, &format!("{rad}/images/synpic{n}.jpg"));
    }
    // ---- SLAKE: English and Chinese questions, images in sub-folders
    let slake = "finetune_data/slack";
    let s = |img: &str, qid: i64, lang: &str, question: &str, answer: &str, t: &str| {
        format!(r#"{{"img_id": 1, "img_name": "{img}", "question": "{question}", "answer": "{answer}", "q_lang": "{lang}", "location": "Lung", "modality": "CT", "answer_type": "{t}", "base_type": "vqa", "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": {qid}}}"#)
    };
    let sets = [
        ("train.json", vec![s("xmlab1/source.jpg", 1, "en", "Which organ is abnormal?", "Lung", "OPEN"), s("xmlab1/source.jpg", 2, "zh", "哪个器官不正常?", "肺", "OPEN"), s("xmlab2/source.jpg", 3, "en", "Is this a CT?", "Yes", "CLOSED")]),
        ("validate.json", vec![s("xmlab3/source.jpg", 4, "en", "Where is the liver?", "Upper Left", "OPEN"), s("xmlab3/source.jpg", 5, "zh", "这是CT吗?", "是", "CLOSED")]),
        ("test.json", vec![s("xmlab4/source.jpg", 6, "en", "How many kidneys?", "2", "OPEN"), s("xmlab5/source.jpg", 7, "en", "Is it healthy?", "No", "CLOSED")]),
    ];
    for (file, items) in &sets {
        put(root, &format!("{slake}/{file}"), format!("[{}]", items.join(", ")).as_bytes());
    }
    for n in 1..=5 {
        image(root, &format!("{slake}/imgs/xmlab{n}/source.jpg"));
    }
    // ---- VQA-Med 2019: three category files per split, `image|question|answer`
    let med = "finetune_data/medvqa_2019";
    for (split, base) in [("train", 1000), ("val", 2000), ("test", 3000)] {
        let modality = format!("synpic{base}|what modality is shown?|ct w/contrast (iv)\r\nsynpic{}|was this taken with an mri?|No\r\n", base + 1);
        let organ = format!("synpic{base}|what organ system is imaged?|lung, mediastinum, pleura\n");
        let plane = format!("\nsynpic{}|in what plane is this image?|Axial\nsynpic{base}|which plane?|the sagittal\n", base + 1);
        put(root, &format!("{med}/{split}/QA/Modality.csv"), modality.as_bytes());
        put(root, &format!("{med}/{split}/QA/Organ.csv"), organ.as_bytes());
        put(root, &format!("{med}/{split}/QA/Plane.csv"), plane.as_bytes());
        image(root, &format!("{med}/{split}/images/synpic{base}.jpg"));
        image(root, &format!("{med}/{split}/images/synpic{}.jpg", base + 1));
    }
    // ---- MELINDA: quoted captions with commas and newlines, integer labels that sort
    // numerically (10 after 2), a figure with two rows, a figure in train and test (it goes to
    // test, at its train position), a missing figure
    let mel = "finetune_data/melinda";
    let header = "figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label\n";
    let files = [
        ("train.csv", "PMC1_f1.jpg,\"Western blot, lanes 1-4\",exp,Microscopy,10,3\nPMC1_f2.jpg,Gel electrophoresis of samples,exp,Gel,2,1\nPMC1_f1.jpg,\"Second \"\"quoted\"\" caption\nover two lines\",com,Modeling,2,0\n"),
        ("dev.csv", "PMC2_f1.jpg,Confocal image of cells,exp,Microscopy,10,3\nPMC2_missing.jpg,No image for this one,com,Modeling,7,0\n"),
        ("test.csv", "PMC3_f1.jpg,Structure model,com,Modeling,7,0\nPMC1_f2.jpg,The same gel in the test file,exp,Gel,2,1\n"),
    ];
    for (file, body) in files {
        put(root, &format!("{mel}/{file}"), (header.to_string() + body).as_bytes());
    }
    for f in ["PMC1_f1.jpg", "PMC1_f2.jpg", "PMC2_f1.jpg", "PMC3_f1.jpg"] {
        image(root, &format!("{mel}/melinda_images/{f}"));
    }
}
