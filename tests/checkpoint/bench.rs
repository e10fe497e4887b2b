//! The Rust half of bench/load_checkpoint.sh (ignored unless asked for; prints, never asserts
//! on time): a ready model loads the converted safetensors, and the .ckpt directly.
use std::path::PathBuf;
use std::time::Instant;

use m3ae::checkpoint::read_checkpoint;
use m3ae::weights::SafetensorsFile;
use m3ae::config::M3aeConfig;
use m3ae::weights::{load_state_dict, read_safetensors, StateDict};
use m3ae::M3aeTransformerSs;
use tch::{nn, Device};

/// Runs `load` `runs` times into the ready model, printing each time (read, copy into the
/// model); returns the best total.
fn time(label: &str, runs: usize, vs: &nn::VarStore, load: impl Fn() -> StateDict) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        let sd = load();
        let read = start.elapsed().as_secs_f64();
        load_state_dict(vs, &sd, std::path::Path::new(label)).unwrap();
        let total = start.elapsed().as_secs_f64();
        println!("  {label}: read {read:.3} s, into the model {:.3} s", total - read);
        drop(sd);
        best = best.min(total);
    }
    println!("BENCH rust {label}: best of {runs} {best:.3} s");
    best
}

#[test]
#[ignore = "benchmark: run by bench/load_checkpoint.sh with M3AE_BENCH_DIR set"]
fn bench_load_into_ready_model() {
    let dir = PathBuf::from(std::env::var("M3AE_BENCH_DIR").expect("M3AE_BENCH_DIR"));
    let conv = dir.join("converted");
    let config = M3aeConfig::from_json_file(&conv.join("config.json")).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), &config).unwrap();
    let runs = 3;
    // straight into the model's variables: no state dict in between
    let file = SafetensorsFile::open(&conv.join("model.safetensors")).unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        file.load_into(&vs).unwrap();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("BENCH rust safetensors load_into(model): best of {runs} {best:.3} s");
    time("safetensors (read_safetensors) + load_state_dict", runs, &vs, || read_safetensors(&conv.join("model.safetensors")).unwrap());
    // the raw .ckpt through our reader (position_ids dropped, as convert does)
    time(".ckpt (checkpoint reader) + load_state_dict", runs, &vs, || {
        let mut sd = read_checkpoint(&dir.join("model.ckpt")).unwrap().0;
        sd.remove("language_encoder.embeddings.position_ids");
        sd
    });
}
