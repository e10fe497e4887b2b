//! Cutting a step's texts to the columns they use (`Batch::cut_text`).
use m3ae::data::collate::{Batch, TextBatch};
use m3ae::data::mlm::IGNORE_INDEX;
use tch::{Kind, Tensor};

fn text(masks: &[[i64; 8]], label_at: Option<(i64, i64)>) -> TextBatch {
    let masks = Tensor::from_slice2(masks);
    let ids = Tensor::arange(masks.numel() as i64, (Kind::Int64, tch::Device::Cpu)).view_as(&masks) + 3;
    let labels = masks.full_like(IGNORE_INDEX);
    if let Some((row, col)) = label_at {
        let _ = labels.get(row).get(col).fill_(7);
    }
    TextBatch { ids: ids.shallow_clone(), masks, ids_mlm: ids, labels_mlm: labels }
}

fn batch(text: TextBatch, false_texts: Vec<TextBatch>) -> Batch {
    let b = text.ids.size()[0] as usize;
    Batch { indices: (0..b).collect(), seeds: vec![0; b], image: vec![], false_images: vec![], text, false_texts, vqa_targets: None, answer_types: None, cls_labels: None }
}

const RAGGED: [[i64; 8]; 3] = [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 0, 0, 0]];

/// Every column some row attends to counts, holes included, and so does an MLM label.
#[test]
fn used_columns_end_at_the_last_attended_or_labelled_column() {
    assert_eq!(text(&RAGGED, None).used_columns(), 5);
    // a label in a column no row attends to (the masker never makes one; counted anyway)
    assert_eq!(text(&RAGGED, Some((1, 6))).used_columns(), 7);
    assert_eq!(text(&[[1; 8], [1; 8], [1; 8]], None).used_columns(), 8);
    assert_eq!(text(&[[0; 8], [0; 8], [0; 8]], None).used_columns(), 0);
}

/// The cut keeps the first n columns of every field of the text and of every false text, and
/// a batch's width is the largest of all its texts'.
#[test]
fn cut_text_keeps_the_first_columns_of_every_text() {
    let wide = text(&[[1, 1, 1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]], None);
    let mut b = batch(text(&RAGGED, None), vec![wide]);
    assert_eq!(b.used_text_columns(), 6);
    let before = text(&RAGGED, None);
    b.cut_text(6);
    for t in std::iter::once(&b.text).chain(&b.false_texts) {
        for f in [&t.ids, &t.masks, &t.ids_mlm, &t.labels_mlm] {
            assert_eq!(f.size(), [3, 6]);
        }
    }
    assert_eq!(b.text.ids, before.ids.narrow(1, 0, 6));
    assert_eq!(b.text.masks, before.masks.narrow(1, 0, 6));
    assert_eq!(b.irtr_text_ids().size(), [3, 2, 6]);
    // no wider than the batch, never narrower than one column
    b.cut_text(100);
    assert_eq!(b.text.ids.size(), [3, 6]);
    b.cut_text(0);
    assert_eq!(b.text.ids.size(), [3, 1]);
}
