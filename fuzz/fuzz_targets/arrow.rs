//! An upstream Arrow dataset file on arbitrary bytes, row to sample: the first byte picks
//! which upstream file name (and so which schema) it is opened as; then every sample's text,
//! image bytes, VQA answers and class labels are read. Opening must succeed or return an error
//! naming the file; a table that opens must serve every sample it indexes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m3ae::data::dataset::Dataset;

const NAMES: &[&str] = &["roco_train", "medicat_val", "vqa_vqa_rad_train", "vqa_slack_test", "cls_melinda_train", "irtr_roco_test"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let dir = std::env::temp_dir().join(format!("m3ae-fuzz-arrow-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}.arrow", NAMES[pick as usize % NAMES.len()]));
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let label_column = if pick & 0x80 != 0 { "i_meth" } else { "p_meth_label" };
    let Ok(ds) = Dataset::open(&path, label_column) else { return };
    for i in 0..ds.len().min(256) {
        let _ = ds.text(i);
        let (row, j) = ds.index[i];
        let _ = ds.image_bytes(row);
        let _ = ds.vqa.get(row).and_then(|r| r.get(j));
        let _ = ds.cls_labels.get(row).and_then(|r| r.get(j));
    }
    let _ = ds.label_range();
});
