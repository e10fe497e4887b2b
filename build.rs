//! Embeds an rpath to libtorch's lib folder, so binaries and tests run without
//! LD_LIBRARY_PATH, and force-links libtorch_cuda where it exists so that
//! `tch::Cuda::is_available()` sees the GPU.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:warning=LIBTORCH is unset: run scripts/setup.sh (the Makefile does)");
        return;
    };
    // Resolve the ./.libtorch link so the rpath names the real cache folder.
    let lib = libtorch.canonicalize().unwrap_or(libtorch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
