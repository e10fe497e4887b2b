//! The C++ shims' boundary: every kind of exception comes back as an error message (never an
//! unwind into Rust, which aborts the process), and build.rs's check of the hand-declared
//! `at::native::mkldnn_matmul` (build/onednn_check.rs, run here on fixture texts).
use std::io::Cursor;

use m3ae::model::dropout::fused_dropout;
use m3ae::train::adamw_fused::{self, StepCoefficients};
use tch::{Device, Kind, Tensor};

#[path = "../../build/onednn_check.rs"]
#[allow(dead_code)]
mod onednn_check;

/// The guard of src/shim.h on each kind of exception: a c10::Error keeps its message and drops
/// its C++ backtrace, a std::exception keeps what(), and a thrown int (no std::exception)
/// still comes back as an error. Without `catch (...)` the last one aborts this process.
#[test]
fn the_shims_guard_turns_every_exception_into_a_message() {
    assert_eq!(m3ae::shim::guard_check(0), Ok(()));
    let c10 = m3ae::shim::guard_check(1).unwrap_err();
    assert!(c10.contains("TORCH_CHECK failed as asked (kind 1)"), "{c10}");
    assert!(!c10.contains("frame #"), "the C++ backtrace came along: {c10}");
    assert_eq!(m3ae::shim::guard_check(2).unwrap_err(), "std::runtime_error as asked");
    assert_eq!(m3ae::shim::guard_check(3).unwrap_err(), "unknown C++ exception (not a std::exception)");
}

/// The entries report their own refusals through the guard, without a backtrace.
#[test]
fn the_shims_report_bad_tensors_as_messages() {
    let e = fused_dropout(&Tensor::ones([4], (Kind::Double, Device::Cpu)), 0.5).unwrap_err();
    assert!(e.starts_with("fused dropout takes fp32 CPU tensors") && !e.contains("frame #"), "{e}");
    let e = fused_dropout(&Tensor::ones([4], (Kind::Float, Device::Cpu)), 1.5).unwrap_err();
    assert!(e.contains("between 0 and 1, but got 1.5"), "{e}");
    let t = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
    let c = StepCoefficients { w1: 0.1, w2: 0.001, eps: 1e-8, neg_inv_step: -1.0, decay: 1.0 };
    let e = adamw_fused::step(&t(4), &t(4), &t(3), &t(4), c).unwrap_err();
    assert_eq!(e, "fused AdamW takes contiguous fp32 CPU tensors of one size");
}

const VERSION_2_11: &str = "#pragma once\n#define TORCH_VERSION_MAJOR 2\n\n#define TORCH_VERSION_MINOR 11\n#define TORCH_VERSION_PATCH 0\n#define TORCH_VERSION \\\n  \"2.11.0\"\n";

/// The version half of the check: 2.11 (any patch) passes; another minor, or a header without
/// the defines, is refused with the header's name, the version found and the one expected.
#[test]
fn the_mkldnn_matmul_check_refuses_another_torch_version() {
    assert_eq!(onednn_check::torch_version(VERSION_2_11), Some((2, 11)));
    assert_eq!(onednn_check::check_version("v.h", VERSION_2_11), Ok(()));
    assert_eq!(onednn_check::check_version("v.h", &VERSION_2_11.replace("PATCH 0", "PATCH 3")), Ok(()));
    let e = onednn_check::check_version("include/torch/headeronly/version.h", &VERSION_2_11.replace("MINOR 11", "MINOR 12")).unwrap_err();
    assert!(e.starts_with("include/torch/headeronly/version.h says torch 2.12;") && e.contains("Matmul.h of torch 2.11"), "{e}");
    let e = onednn_check::check_version("v.h", &VERSION_2_11.replace("MAJOR 2", "MAJOR 3")).unwrap_err();
    assert!(e.contains("says torch 3.11"), "{e}");
    let e = onednn_check::check_version("v.h", "#pragma once\n").unwrap_err();
    assert!(e.contains("v.h has no TORCH_VERSION_MAJOR"), "{e}");
}

/// A minimal 64-bit ELF file: a `.dynsym` of (name, section index) entries and its `.dynstr`.
fn elf(symbols: &[(&str, u16)]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 24]; // the null symbol
    for (name, shndx) in symbols {
        let mut sym = [0u8; 24];
        sym[..4].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
        sym[6..8].copy_from_slice(&shndx.to_le_bytes());
        symtab.extend_from_slice(&sym);
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
    }
    let (sym_off, str_off) = (64u64, 64 + symtab.len() as u64);
    let shoff = str_off + strtab.len() as u64;
    let mut f = vec![0u8; 64];
    f[..6].copy_from_slice(b"\x7fELF\x02\x01");
    f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    f[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    f[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
    f.extend_from_slice(&symtab);
    f.extend_from_slice(&strtab);
    let section = |ty: u32, off: u64, size: u64, link: u32, entsize: u64| {
        let mut s = [0u8; 64];
        s[4..8].copy_from_slice(&ty.to_le_bytes());
        s[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        s[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        s[0x28..0x2C].copy_from_slice(&link.to_le_bytes());
        s[0x38..0x40].copy_from_slice(&entsize.to_le_bytes());
        s
    };
    f.extend_from_slice(&[0u8; 64]);
    f.extend_from_slice(&section(11, sym_off, symtab.len() as u64, 2, 24)); // SHT_DYNSYM -> section 2
    f.extend_from_slice(&section(3, str_off, strtab.len() as u64, 0, 0)); // SHT_STRTAB
    f
}

/// The symbol half: the declaration's mangled name must be defined (not merely imported, not a
/// longer name it prefixes), and a file that is no ELF is an error, not a pass.
#[test]
fn the_mkldnn_matmul_check_wants_the_symbol_defined() {
    let sym = onednn_check::SYMBOL;
    let found = |symbols: &[(&str, u16)]| onednn_check::defines_dynamic_symbol(&mut Cursor::new(elf(symbols)), sym).unwrap();
    assert!(found(&[("malloc", 0), (sym, 12)]));
    assert!(!found(&[(sym, 0)]), "an undefined (imported) symbol passed");
    assert!(!found(&[("_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_", 12)]), "another signature passed");
    assert!(!found(&[(&format!("{sym}x"), 12)]), "a longer name passed");
    assert!(onednn_check::defines_dynamic_symbol(&mut Cursor::new(b"#!/bin/sh\n".repeat(10)), sym).is_err());
    // a torch folder whose header names another version: refused before the library is read
    let dir = std::env::temp_dir().join(format!("m3ae-onednn-check-{}", std::process::id()));
    let header = dir.join(onednn_check::VERSION_HEADERS[0]);
    std::fs::create_dir_all(header.parent().unwrap()).unwrap();
    std::fs::write(&header, VERSION_2_11.replace("MINOR 11", "MINOR 10")).unwrap();
    let e = onednn_check::check(&dir).unwrap_err();
    assert!(e.contains("version.h says torch 2.10"), "{e}");
    std::fs::write(&header, VERSION_2_11).unwrap();
    let e = onednn_check::check(&dir).unwrap_err();
    assert!(e.contains("lib/libtorch_cpu.so"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On the libtorch this suite runs with, the check passes and the route is built: the real
/// libtorch_cpu.so defines the symbol (and the check was not skipped).
#[test]
fn the_mkldnn_matmul_check_passes_on_this_libtorch() {
    let torch = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/.libtorch")).expect("./.libtorch (scripts/setup.sh)");
    assert_eq!(onednn_check::check(&torch), Ok(()));
    assert!(m3ae::model::linear::onednn_linear_built(), "build.rs compiled the oneDNN route out");
}
