//! A safetensors file on arbitrary bytes, read the two ways the port reads weights: the
//! header validated and every tensor read (`read_all`), and the strict loader straight into a
//! small model (f32 weight and bias, an i64 buffer). Each must succeed or return an error:
//! no panic, hang, or allocation beyond what the file's own size justifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m3ae::weights::SafetensorsFile;
use tch::nn;

thread_local! {
    static MODEL: nn::VarStore = {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let p = vs.root();
        let fc = &p / "fc";
        let _ = fc.var("weight", &[4, 3], nn::Init::Const(0.0));
        let _ = fc.var("bias", &[4], nn::Init::Const(0.0));
        let _ = p.add("steps", tch::Tensor::zeros([2], (tch::Kind::Int64, tch::Device::Cpu)), false);
        vs
    };
}

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("m3ae-fuzz-safetensors-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(file) = SafetensorsFile::open(&path) {
        let _ = file.read_all();
        MODEL.with(|vs| {
            let _ = file.load_into(vs);
        });
    }
});
