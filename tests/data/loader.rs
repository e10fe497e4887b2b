//! The loader: reproducible across workers, randomness per sample, unreadable images replaced,
//! skipped or refused.
use std::sync::Arc;

use m3ae::data::collate::Collator;
use m3ae::data::dataset::Dataset;
use m3ae::data::loader::{Loader, LoaderConfig, Shard, Unreadable};
use m3ae::data::mlm::{MaskingMode, MlmMasker};
use m3ae::data::transforms::{Transform, TransformKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::super::{fixtures, toy_tokenizer};

fn loader(name: &str, workers: usize, config: impl Fn(&mut LoaderConfig)) -> Loader {
    let ds = Dataset::open(&fixtures().join("arrow").join(name), "p_meth_label").unwrap();
    let tok = Arc::new(toy_tokenizer(16));
    let masker = MlmMasker { probability: 0.15, mode: MaskingMode::Upstream, mask_id: tok.mask_id(), vocab_size: tok.vocab_size() as i64 };
    let mut cfg = LoaderConfig { batch_size: 2, shuffle: true, seed: 3, workers, prefetch: 2, draw_false_image: 1, draw_false_text: 0, drop_last: false, unreadable: Unreadable::Skip };
    config(&mut cfg);
    let transforms = vec![Transform { kind: TransformKind::ClipRandAug, size: 32 }];
    Loader::new(ds, tok, transforms, Collator { masker, vqa_label_size: 4 }, cfg, 0).unwrap()
}

#[test]
fn loader_batches_are_reproducible_across_workers() {
    let collect = |workers| -> Vec<(Vec<usize>, Tensor, Tensor)> {
        loader("roco_train.arrow", workers, |_| {})
            .map(|b| b.unwrap())
            .map(|b| (b.indices.clone(), b.image[0].shallow_clone(), b.text.ids_mlm.shallow_clone()))
            .collect()
    };
    let (one, three) = (collect(1), collect(3));
    assert_eq!(one.len(), 3);
    let mut seen: Vec<usize> = one.iter().flat_map(|b| b.0.clone()).collect();
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.0, b.0);
        assert!(a.1.equal(&b.1) && a.2.equal(&b.2));
    }
    let batch = loader("roco_train.arrow", 2, |_| {}).next().unwrap().unwrap();
    assert_eq!(batch.image[0].size(), [2, 3, 32, 32]);
    assert_eq!(batch.false_images[0][0].size(), [2, 3, 32, 32]);
    let (itm_images, itm_labels) = batch.itm(&mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!((itm_images[0].size(), itm_labels.sum(tch::Kind::Int64).int64_value(&[])), (vec![2, 3, 32, 32], 1));
}

#[test]
fn sharded_loaders_split_the_epoch_round_robin_within_each_group() {
    let all: Vec<(Vec<usize>, Tensor)> = loader("roco_train.arrow", 2, |c| c.batch_size = 1).map(|b| b.unwrap()).map(|b| (b.indices.clone(), b.image[0].shallow_clone())).collect();
    assert_eq!(all.len(), 5);
    // groups of 3 batches over 2 ranks: places 0 and 2 of each group to rank 0, place 1 to rank 1
    let mut seen = vec![None; all.len()];
    for rank in 0..2 {
        let mut l = loader("roco_train.arrow", 2, |c| c.batch_size = 1);
        l.set_shard(Shard { group: 3, rank, world: 2 });
        while let Some((n, batch)) = l.next_slot() {
            let Some(batch) = batch else { continue };
            let batch = batch.unwrap();
            assert_eq!(batch.indices, all[n].0, "batch {n}");
            assert!(batch.image[0].equal(&all[n].1), "batch {n}'s image");
            assert!(seen[n].replace(rank).is_none(), "batch {n} built twice");
        }
    }
    assert_eq!(seen, [Some(0), Some(1), Some(0), Some(0), Some(1)]);
}

#[test]
fn a_samples_draws_do_not_depend_on_the_batch_size() {
    let per_sample = |batch_size| -> Vec<(usize, Tensor, Tensor, Tensor, Tensor)> {
        let mut out = Vec::new();
        for b in loader("roco_train.arrow", 2, |c| c.batch_size = batch_size) {
            let b = b.unwrap();
            let noise = b.mim_noise(4);
            for (i, &index) in b.indices.iter().enumerate() {
                let i = i as i64;
                out.push((index, b.image[0].get(i), b.false_images[0][0].get(i), b.text.ids_mlm.get(i), noise.get(i)));
            }
        }
        out.sort_by_key(|s| s.0);
        out
    };
    let (ones, threes) = (per_sample(1), per_sample(3));
    assert_eq!(ones.len(), 5);
    for (a, b) in ones.iter().zip(&threes) {
        assert_eq!(a.0, b.0);
        assert!(a.1.equal(&b.1) && a.2.equal(&b.2) && a.3.equal(&b.3) && a.4.equal(&b.4), "sample {}", a.0);
    }
    // and the draws differ between samples
    assert!(!ones[0].4.equal(&ones[1].4));
}

#[test]
fn loader_skips_unreadable_images_and_builds_targets() {
    let mut val = loader("roco_val.arrow", 2, |c| {
        c.batch_size = 3;
        c.draw_false_image = 0;
    });
    let batch = val.next().unwrap().unwrap();
    assert_eq!(batch.indices, vec![0]);
    let mut skipped: Vec<usize> = val.unreadable().iter().map(|s| s.index).collect();
    skipped.sort();
    assert_eq!(skipped, vec![1, 2]);
    assert!(val.unreadable().iter().all(|u| u.replacement.is_none() && u.file.ends_with("roco_val.arrow")));

    let mut vqa = loader("vqa_vqa_rad_train.arrow", 1, |c| {
        c.shuffle = false;
        c.batch_size = 3;
        c.draw_false_text = 2;
    });
    let b = vqa.next().unwrap().unwrap();
    let targets = Tensor::from_slice(&[1f32, 0., 0., 0., 0., 0., 0., 1., 0., 0., 1., 0.]).view([3, 4]);
    assert!(b.vqa_targets.as_ref().unwrap().equal(&targets));
    assert_eq!(Vec::<i64>::try_from(b.answer_types.as_ref().unwrap()).unwrap(), vec![0, 1, 1]);
    assert_eq!(b.irtr_text_ids().size(), [3, 3, 16]);
    assert!(b.irtr_text_ids().select(1, 0).equal(&b.text.ids));
}

/// A loader worker runs its tensor work on its own thread (no OpenMP team of its own next to
/// the training thread's); other threads keep libtorch's thread count.
#[test]
fn helper_threads_run_tensor_ops_single_threaded() {
    let before = tch::get_num_threads();
    let on_helper = std::thread::spawn(|| {
        let serial = m3ae::runtime::serial_tensor_ops_on_this_thread();
        // a parallel-sized op still computes
        let sum = tch::Tensor::ones([1 << 20], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Float).double_value(&[]);
        (serial, tch::get_num_threads(), sum)
    })
    .join()
    .unwrap();
    assert_eq!(on_helper, (true, 1, (1 << 20) as f64), "the helper thread's team size");
    assert_eq!(tch::get_num_threads(), before, "the calling thread's team size changed");
    let fresh = std::thread::spawn(tch::get_num_threads).join().unwrap();
    assert_eq!(fresh, before, "a new thread no longer gets libtorch's thread count");
}

/// roco_val.arrow: samples 1 and 2 have unreadable images, sample 0 a readable one.
#[test]
fn unreadable_images_are_replaced_in_training_skipped_in_evaluation_or_refused() {
    // evaluation: a batch whose every sample is unreadable is an empty place, not an error
    let mut skip = loader("roco_val.arrow", 1, |c| {
        c.shuffle = false;
        c.batch_size = 1;
        c.draw_false_image = 0;
    });
    let places: Vec<(usize, bool)> = std::iter::from_fn(|| skip.next_slot()).map(|(n, b)| (n, b.map(|b| b.unwrap()).is_some())).collect();
    assert_eq!(places, [(0, true), (1, false), (2, false)]);
    // training: every sample is replaced, as upstream's get_suite retries; the replacements
    // come from each sample's own stream, so any number of workers draws the same
    let replaced = |workers| {
        let mut l = loader("roco_val.arrow", workers, |c| {
            c.shuffle = false;
            c.batch_size = 3;
            c.draw_false_image = 0;
            c.unreadable = Unreadable::Replace;
        });
        let b = l.next().unwrap().unwrap();
        let mut u = l.unreadable();
        u.sort_by_key(|u| (u.index, u.replacement));
        (b, u)
    };
    let ((b1, u1), (b3, u3)) = (replaced(1), replaced(3));
    assert_eq!(b1.indices, [0, 0, 0], "the only readable sample stands in for both unreadable ones");
    assert!(b1.image[0].equal(&b3.image[0]) && b1.text.ids_mlm.equal(&b3.text.ids_mlm));
    assert_eq!(u1, u3);
    assert!(u1.len() >= 2 && u1.iter().all(|u| u.replacement.is_some() && [1, 2].contains(&u.index)), "{u1:?}");
    // strict_images: the decoder's error, naming the file and the row
    let mut fail = loader("roco_val.arrow", 1, |c| {
        c.shuffle = false;
        c.batch_size = 3;
        c.unreadable = Unreadable::Fail;
    });
    let e = fail.next().unwrap().err().expect("an unreadable image fails the batch").to_string();
    assert!(e.contains("roco_val.arrow") && e.contains("row 1"), "{e}");
}
