//! MLM masking: its rates worked out by hand, and both of upstream's collators
//! (`whole_word_masking` true: `DataCollatorForWholeWordMask`, false:
//! `DataCollatorForLanguageModeling`) against what transformers' own collators did to the same
//! tokenized texts (tests/fixtures/data/mlm_reference.json, by scripts/make_mlm_reference.py).
use m3ae::config::M3aeConfig;
use m3ae::data::mlm::{MaskingMode, MlmMasker, IGNORE_INDEX};
use m3ae::train::setup::Pipeline;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::super::{fixtures, root, toy_tokenizer};

const TEXTS: [&str; 4] = ["Axial CT of the chest shows a nodule in the right upper lobe.", "no acute abnormality", "", "MRI T2 weighted lesion (arrow) see Fig. 3b; size 14mm"];

fn encodings(len: usize) -> Vec<m3ae::data::tokenizer::Encoding> {
    let tok = toy_tokenizer(len);
    TEXTS.iter().map(|t| tok.encode(t).unwrap()).collect()
}

/// Counts (selected, real tokens, <mask>, kept) over many draws; asserts specials never move.
fn masking_counts(mode: MaskingMode, len: usize, draws: usize) -> [f64; 4] {
    let encs = encodings(len);
    let masker = MlmMasker { probability: 0.15, mode, mask_id: 1000, vocab_size: 1001 };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut counts = [0f64; 4];
    for _ in 0..draws {
        for enc in &encs {
            let m = masker.mask(enc, &mut rng);
            for i in 0..len {
                let special = enc.special_tokens_mask[i] == 1 || enc.attention_mask[i] == 0;
                if special {
                    assert_eq!((m.ids[i], m.labels[i]), (enc.input_ids[i], IGNORE_INDEX), "special/pad at {i} touched");
                    continue;
                }
                counts[1] += 1.0;
                if m.labels[i] != IGNORE_INDEX {
                    assert_eq!(m.labels[i], enc.input_ids[i]);
                    counts[0] += 1.0;
                    counts[2] += f64::from(u8::from(m.ids[i] == 1000));
                    counts[3] += f64::from(u8::from(m.ids[i] == enc.input_ids[i]));
                } else {
                    assert_eq!(m.ids[i], enc.input_ids[i]);
                }
            }
        }
    }
    counts
}

/// Asserts `k / n ≈ p` within 5 binomial standard deviations.
fn assert_rate(k: f64, n: f64, p: f64, what: &str) {
    let sd = (p * (1.0 - p) / n).sqrt();
    println!("{what}: {:.4} (expected {p:.4} ± {:.4})", k / n, 5.0 * sd);
    assert!((k / n - p).abs() <= 5.0 * sd, "{what}: {} vs {p}", k / n);
}

#[test]
fn mlm_whole_word_rates() {
    let [selected, real, masked, kept] = masking_counts(MaskingMode::WholeWord, 32, 3000);
    // Whole words can undershoot the target by a partial word; the toy BPE words are mostly one token.
    assert!((selected / real - 0.15).abs() < 0.03, "selected {}", selected / real);
    assert_rate(masked, selected, 0.8, "<mask> share");
    // Kept: 10% by choice plus random draws that hit the same id (1/1001 of 10%).
    assert_rate(kept, selected, 0.1 + 0.1 / 1001.0, "kept share");
}

#[test]
fn mlm_upstream_rates() {
    // Upstream draws round(0.15 · L) of all L positions, then drops specials and padding.
    let len = 32;
    let encs = encodings(len);
    let real_share: f64 = encs.iter().map(|e| e.attention_mask.iter().sum::<i64>() as f64 - 2.0).sum::<f64>()
        / (encs.len() * len) as f64;
    let [selected, real, masked, _] = masking_counts(MaskingMode::Upstream, len, 3000);
    let draws = 3000.0 * encs.len() as f64;
    assert_rate(selected, draws * len as f64, 5.0 / len as f64 * real_share, "selected per position");
    assert_rate(masked, selected, 0.8, "<mask> share");
    assert!(real > 0.0);
}


/// What one collator did over `draws` draws of the 4 texts (the fields of mlm_reference.json).
struct CollatorStats {
    draws: f64,
    /// [text][position]: draws in which the position was selected.
    selected: Vec<Vec<f64>>,
    /// [text][k]: draws in which the text had k selected positions.
    count_hist: Vec<Vec<f64>>,
    /// Selected positions that became `<mask>`, kept their id, became another id.
    outcome: [f64; 3],
    /// The "another id" replacements, in bins of `bin_width` ids.
    random_hist: Vec<f64>,
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn reference_stats(r: &Value, name: &str) -> CollatorStats {
    let c = &r[name];
    let o = &c["outcome"];
    CollatorStats {
        draws: r["draws"].as_f64().unwrap(),
        selected: c["selected"].as_array().unwrap().iter().map(floats).collect(),
        count_hist: c["count_hist"].as_array().unwrap().iter().map(floats).collect(),
        outcome: ["mask", "kept", "other"].map(|k| o[k].as_f64().unwrap()),
        random_hist: floats(&c["random_hist"]),
    }
}

fn port_stats(mode: MaskingMode, len: usize, bin_width: i64, bins: usize, draws: usize) -> CollatorStats {
    let tok = toy_tokenizer(len);
    let encs = encodings(len);
    let masker = MlmMasker { probability: 0.15, mode, mask_id: tok.mask_id(), vocab_size: tok.vocab_size() as i64 };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = encs.len();
    let mut s = CollatorStats { draws: draws as f64, selected: vec![vec![0.0; len]; n], count_hist: vec![vec![0.0; len + 1]; n], outcome: [0.0; 3], random_hist: vec![0.0; bins] };
    for _ in 0..draws {
        for (t, enc) in encs.iter().enumerate() {
            let m = masker.mask(enc, &mut rng);
            let mut count = 0;
            for i in (0..len).filter(|&i| m.labels[i] != IGNORE_INDEX) {
                count += 1;
                s.selected[t][i] += 1.0;
                let (got, orig) = (m.ids[i], m.labels[i]);
                if got == masker.mask_id {
                    s.outcome[0] += 1.0;
                } else if got == orig {
                    s.outcome[1] += 1.0;
                } else {
                    s.outcome[2] += 1.0;
                    s.random_hist[(got / bin_width) as usize] += 1.0;
                }
            }
            s.count_hist[t][count] += 1.0;
        }
    }
    s
}

/// Asserts that `a` of `n1` and `b` of `n2` are draws of the same rate: within 5 standard
/// deviations of the difference of two binomial proportions (pooled); two rates of 0 (or 1)
/// must both be exactly that.
fn same_rate(a: f64, n1: f64, b: f64, n2: f64, what: &str) {
    let p = (a + b) / (n1 + n2);
    let sd = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let d = (a / n1 - b / n2).abs();
    assert!(d <= 5.0 * sd, "{what}: port {:.5} ({a} of {n1}), transformers {:.5} ({b} of {n2}); 5 sd = {:.5}", a / n1, b / n2, 5.0 * sd);
}

fn compare(port: &CollatorStats, reference: &CollatorStats, name: &str) {
    for (t, (p, r)) in port.selected.iter().zip(&reference.selected).enumerate() {
        for (i, (a, b)) in p.iter().zip(r).enumerate() {
            same_rate(*a, port.draws, *b, reference.draws, &format!("{name}: text {t} position {i} selected"));
        }
    }
    for (t, (p, r)) in port.count_hist.iter().zip(&reference.count_hist).enumerate() {
        for (k, (a, b)) in p.iter().zip(r).enumerate() {
            same_rate(*a, port.draws, *b, reference.draws, &format!("{name}: text {t} with {k} selected"));
        }
    }
    let (n1, n2) = (port.outcome.iter().sum::<f64>(), reference.outcome.iter().sum::<f64>());
    for (k, what) in ["<mask>", "kept", "another id"].iter().enumerate() {
        same_rate(port.outcome[k], n1, reference.outcome[k], n2, &format!("{name}: selected -> {what}"));
    }
    for (k, (a, b)) in port.random_hist.iter().zip(&reference.random_hist).enumerate() {
        same_rate(*a, port.outcome[2], *b, reference.outcome[2], &format!("{name}: random id in bin {k}"));
    }
}

/// Both masking modes draw what transformers' collators draw on the same tokenized texts:
/// which positions are selected, how many per text, what replaces them and the range of the
/// random ids (20,000 draws a side; see `same_rate`).
#[test]
fn mlm_masking_follows_transformers_collators() {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("mlm_reference.json")).unwrap()).unwrap();
    let len = r["max_text_len"].as_u64().unwrap() as usize;
    let tok = toy_tokenizer(len);
    // the same inputs: upstream's tokenization (RobertaTokenizerFast, padded to max_text_len)
    for (t, ids) in r["ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<i64> = ids.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(tok.encode(TEXTS[t]).unwrap().input_ids, want, "text {t}");
    }
    assert_eq!((tok.mask_id(), tok.vocab_size() as i64), (r["mask_id"].as_i64().unwrap(), r["len_tokenizer"].as_i64().unwrap()));
    let bin_width = r["bin_width"].as_i64().unwrap();
    for (name, mode) in [("whole_word", MaskingMode::Upstream), ("language_modeling", MaskingMode::TokenLevel)] {
        let reference = reference_stats(&r, name);
        let port = port_stats(mode, len, bin_width, reference.random_hist.len(), 20_000);
        compare(&port, &reference, name);
    }
}

/// `whole_word_masking` picks the collator, as upstream's `BaseDataModule` does.
#[test]
fn whole_word_masking_picks_the_collator() {
    let tokenizer = root().join("parity/preprocess/toy-roberta-tokenizer.json").display().to_string();
    for (wwm, mode) in [(true, MaskingMode::Upstream), (false, MaskingMode::TokenLevel)] {
        let config = M3aeConfig { tokenizer: tokenizer.clone(), whole_word_masking: wwm, ..M3aeConfig::default() };
        assert_eq!(Pipeline::new(&config).unwrap().collator().masker.mode, mode, "whole_word_masking {wwm}");
    }
}
