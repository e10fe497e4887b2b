//! Compiles the small C++ shim beside the Rust that binds it (`src/train/autocast.cpp`:
//! CUDA autocast's dtype) against libtorch's headers, embeds an rpath to libtorch's lib folder
//! (so binaries and tests run without LD_LIBRARY_PATH), and force-links libtorch_cuda where it
//! exists so that `tch::Cuda::is_available()` sees the GPU.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=src/train/autocast.cpp");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is unset: run scripts/setup.sh (the Makefile does), which installs PyPI's torch==2.11.0 and links it as ./.libtorch");
    };
    // Resolve the ./.libtorch link so the rpath names the real cache folder.
    let root = libtorch.canonicalize().unwrap_or(libtorch);
    let lib = root.join("lib");
    // the flags torch-sys builds tch's own C++ wrapper with (PyPI wheels use the C++11 ABI)
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/train/autocast.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("m3ae_autocast");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
