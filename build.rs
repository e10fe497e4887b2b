//! Compiles the small C++ shims beside the Rust that binds them (`src/train/autocast.cpp`:
//! CUDA autocast's dtype; `src/model/onednn_linear.cpp`: oneDNN's fp32 matmul with
//! autograd; `src/train/adamw_fused.cpp`: AdamW in one pass; `src/model/dropout.cpp`: dropout in one
//! parallel pass; `src/dist/c10d.cpp`: libtorch's c10d, Gloo and, where CUDA headers
//! are found, NCCL) against libtorch's headers, embeds an rpath to libtorch's lib folder
//! (so binaries and tests run without LD_LIBRARY_PATH), and force-links libtorch_cuda where it
//! exists so that `tch::Cuda::is_available()` sees the GPU.
//!
//! Our own C++ is compiled with `-Wall -Wextra` (libtorch's and CUDA's headers as system
//! headers, whose warnings are not ours to fix); the build prints no warning of ours. The
//! hand-declared `at::native::mkldnn_matmul` is checked against the libtorch at hand first
//! (build/onednn_check.rs): on a mismatch the oneDNN route is compiled out, with a warning
//! saying why, and linear layers take the BLAS route.
use std::path::PathBuf;

#[path = "build/onednn_check.rs"]
mod onednn_check;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=src/train/autocast.cpp");
    println!("cargo:rerun-if-changed=src/dist/c10d.cpp");
    println!("cargo:rerun-if-changed=src/model/onednn_linear.cpp");
    println!("cargo:rerun-if-changed=src/train/adamw_fused.cpp");
    println!("cargo:rerun-if-changed=src/model/dropout.cpp");
    println!("cargo:rerun-if-changed=src/dist/gloo_decls");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-changed=build/onednn_check.rs");
    println!("cargo:rerun-if-env-changed=M3AE_CUDA_INCLUDE");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is unset: run scripts/setup.sh (the Makefile does), which installs PyPI's torch==2.11.0 and links it as ./.libtorch");
    };
    // Resolve the ./.libtorch link so the rpath names the real cache folder.
    let root = libtorch.canonicalize().unwrap_or(libtorch);
    let lib = root.join("lib");
    // the flags torch-sys builds tch's own C++ wrapper with (PyPI wheels use the C++11 ABI)
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let shim = |file: &str| {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .file(file)
            .include("src")
            .flag("-isystem")
            .flag(root.join("include").display().to_string())
            .flag("-isystem")
            .flag(root.join("include/torch/csrc/api/include").display().to_string())
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .warnings(true)
            .extra_warnings(true);
        build
    };
    shim("src/shim.cpp").compile("m3ae_shim");
    shim("src/train/autocast.cpp").compile("m3ae_autocast");
    for header in onednn_check::VERSION_HEADERS {
        println!("cargo:rerun-if-changed={}", root.join(header).display());
    }
    let mut onednn = shim("src/model/onednn_linear.cpp");
    if let Err(why) = onednn_check::check(&root) {
        println!("cargo:warning=the oneDNN linear route is off, every linear layer takes at::linear (BLAS): {why}");
        onednn.define("M3AE_NO_ONEDNN_MATMUL", "1");
    }
    onednn.compile("m3ae_onednn_linear");
    shim("src/model/dropout.cpp").flag("-O3").compile("m3ae_dropout");
    // sqrt without errno lets the AdamW loop vectorise; no other flag changes its rounding
    shim("src/train/adamw_fused.cpp").flag("-fno-math-errno").flag("-O3").compile("m3ae_adamw_fused");
    // The wheel lacks gloo's headers: our declaration-only stand-ins let ProcessGroupGloo.hpp
    // parse (src/dist/gloo_decls/README.md; tests/dist.rs checks no gloo symbol is referenced).
    let mut c10d = shim("src/dist/c10d.cpp");
    c10d.include("src/dist/gloo_decls").define("USE_C10D_GLOO", "1");
    let cuda = cuda_includes(&root);
    if let Some(dirs) = &cuda {
        c10d.define("USE_C10D_NCCL", "1").define("USE_CUDA", "1");
        for dir in dirs {
            c10d.flag("-isystem").flag(dir.display().to_string());
        }
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    } else {
        println!("cargo:warning=no CUDA headers (crt/host_defines.h, nccl.h): the dist module is built without NCCL");
    }
    c10d.compile("m3ae_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// The include folders ProcessGroupNCCL.hpp needs, when all are present: the CUDA runtime's
/// (with `crt/`, from PyPI's nvidia-cuda-crt, and `nv/target`, from nvidia-cuda-cccl, or a
/// toolkit's), and NCCL's. `M3AE_CUDA_INCLUDE` (folders joined by `:`) adds a toolkit's.
fn cuda_includes(torch: &std::path::Path) -> Option<Vec<PathBuf>> {
    if !torch.join("lib/libtorch_cuda.so").exists() {
        return None;
    }
    let site = torch.parent()?.join("nvidia");
    let mut dirs: Vec<PathBuf> = std::env::var("M3AE_CUDA_INCLUDE")
        .map(|v| v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect())
        .unwrap_or_default();
    dirs.extend([site.join("cu13/include"), site.join("cu13/include/cccl"), site.join("nccl/include")]);
    dirs.retain(|d| d.is_dir());
    let has = |file: &str| dirs.iter().any(|d| d.join(file).exists());
    (has("crt/host_defines.h") && has("nv/target") && has("cuda_runtime_api.h") && has("nccl.h")).then_some(dirs)
}
