//! The pickle decoder on arbitrary bytes: it must return a value or an error, never panic,
//! hang or allocate without bound. Seed with `data.pkl` records of real checkpoints.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = m3ae::checkpoint::pickle::parse(data);
});
