//! Image bytes as the pipeline meets them (JPEG, PNG, TIFF, BMP, DICOM, recognised by magic
//! bytes), decoded and put through upstream's `clip` transform at 32 px (resize, centre crop,
//! normalize) and, from the first byte's low bit, the `clip_randaug` variant. Must succeed or
//! return an error: no panic, hang, or allocation beyond the decompression-bomb bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m3ae::data::image_io::decode_rgba;
use m3ae::data::transforms::{Transform, TransformKind};
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_rgba(data, "fuzz input") else { return };
    let key = if data.first().is_some_and(|b| b & 1 == 1) { "clip_randaug" } else { "clip" };
    let Ok(kind) = TransformKind::parse(key) else { return };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(data.len() as u32));
    let _ = Transform { kind, size: 32 }.apply(&img, &mut rng);
});
