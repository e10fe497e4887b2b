//! A whole checkpoint file (zip container, pickle, storages) on arbitrary bytes: reading its
//! state dict must succeed or fail with an error. Seed with small `.pt` / `.ckpt` files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("m3ae-fuzz-archive-{}.ckpt", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = m3ae::checkpoint::read_checkpoint(&path);
    }
});
