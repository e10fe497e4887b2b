//! The build-time check of the one libtorch function we declare by hand:
//! `src/model/onednn_linear.cpp` declares `at::native::mkldnn_matmul` itself, because the
//! wheel ships no `ATen/native/mkldnn/Matmul.h`. The declaration was written from that header
//! of torch [`CHECKED`] (`void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const
//! Tensor& result, float beta = 1, float alpha = 1)`, result = beta·result + alpha·mat1@mat2).
//! build.rs compiles the oneDNN route only when
//! - `include/torch/headeronly/version.h` (or, in older wheels,
//!   `include/torch/csrc/api/include/torch/version.h`) names torch [`CHECKED`] (any patch
//!   release): another version may have changed the arguments' meaning, which no linker sees;
//! - `lib/libtorch_cpu.so` defines the symbol [`SYMBOL`]: the declaration's name and argument
//!   types, as the compiler mangles them.
//!
//! Otherwise it builds the shim without the declaration, says why in a cargo warning, and every
//! linear layer takes the BLAS route (`src/model/linear.rs`). Used by build.rs and by
//! tests/model/shims.rs (`#[path]`), which runs it on fixture texts.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The torch (major, minor) whose Matmul.h the declaration was checked against.
pub const CHECKED: (u32, u32) = (2, 11);

/// `at::native::mkldnn_matmul(at::Tensor const&, at::Tensor const&, at::Tensor const&, float, float)`.
pub const SYMBOL: &str = "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff";

/// Where a wheel states its version, newest layout first (relative to the torch folder).
pub const VERSION_HEADERS: [&str; 2] = ["include/torch/headeronly/version.h", "include/torch/csrc/api/include/torch/version.h"];

/// The value of `#define NAME <integer>` in a header's text.
fn define(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("#define") && words.next() == Some(name)).then(|| words.next()?.parse().ok())?
    })
}

/// `(major, minor)` from a version header's text (`TORCH_VERSION_MAJOR`, `TORCH_VERSION_MINOR`).
pub fn torch_version(header_text: &str) -> Option<(u32, u32)> {
    Some((define(header_text, "TORCH_VERSION_MAJOR")?, define(header_text, "TORCH_VERSION_MINOR")?))
}

/// Ok when the header at `header` (its text `text`) names torch [`CHECKED`].
pub fn check_version(header: &str, text: &str) -> Result<(), String> {
    let (major, minor) = CHECKED;
    match torch_version(text) {
        Some(v) if v == CHECKED => Ok(()),
        Some((a, b)) => Err(format!(
            "{header} says torch {a}.{b}; the declaration of at::native::mkldnn_matmul in src/model/onednn_linear.cpp \
             was checked against ATen/native/mkldnn/Matmul.h of torch {major}.{minor} (mat1, mat2, result, float beta, float alpha)"
        )),
        None => Err(format!("{header} has no TORCH_VERSION_MAJOR / TORCH_VERSION_MINOR: cannot tell which torch it is")),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Reads `len` bytes at `offset`, refusing lengths beyond `limit` (a malformed file).
fn read_at(f: &mut (impl Read + Seek), offset: u64, len: u64, limit: u64) -> Result<Vec<u8>, String> {
    if len > limit {
        return Err(format!("a section of {len} bytes (more than {limit})"));
    }
    let mut buf = vec![0; len as usize];
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    f.read_exact(&mut buf).map_err(|e| format!("{e} reading {len} bytes at {offset}"))?;
    Ok(buf)
}

/// Whether a 64-bit little-endian ELF file's dynamic symbol table (`.dynsym`) defines `name`
/// (an entry of that name whose section index is not `SHN_UNDEF`: an import does not count).
pub fn defines_dynamic_symbol(f: &mut (impl Read + Seek), name: &str) -> Result<bool, String> {
    const LIMIT: u64 = 1 << 30;
    let header = read_at(f, 0, 64, LIMIT)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let (shoff, shentsize, shnum) = (u64_at(&header, 0x28), u16_at(&header, 0x3A) as u64, u16_at(&header, 0x3C) as u64);
    if shentsize < 64 {
        return Err(format!("section header entries of {shentsize} bytes"));
    }
    let sections = read_at(f, shoff, shentsize * shnum, LIMIT)?;
    let section = |i: u64| {
        let s = &sections[(i * shentsize) as usize..][..64];
        // sh_type, sh_offset, sh_size, sh_link, sh_entsize
        (u32_at(s, 4), u64_at(s, 0x18), u64_at(s, 0x20), u32_at(s, 0x28) as u64, u64_at(s, 0x38))
    };
    const SHT_DYNSYM: u32 = 11;
    let Some((_, sym_off, sym_size, link, entsize)) = (0..shnum).map(section).find(|s| s.0 == SHT_DYNSYM) else {
        return Ok(false);
    };
    if link >= shnum || entsize < 24 {
        return Err(format!(".dynsym links section {link} of {shnum}, entries of {entsize} bytes"));
    }
    let (_, str_off, str_size, _, _) = section(link);
    let symbols = read_at(f, sym_off, sym_size, LIMIT)?;
    let strings = read_at(f, str_off, str_size, LIMIT)?;
    let wanted = name.as_bytes();
    Ok(symbols.chunks_exact(entsize as usize).any(|sym| {
        let (st_name, st_shndx) = (u32_at(sym, 0) as usize, u16_at(sym, 6));
        st_shndx != 0 && strings.get(st_name..).is_some_and(|s| s.starts_with(wanted) && s.get(wanted.len()) == Some(&0))
    }))
}

/// The whole check on a torch folder (the wheel's `torch/`): Ok, or why the oneDNN route is off.
pub fn check(torch: &Path) -> Result<(), String> {
    let header = VERSION_HEADERS.iter().map(|h| torch.join(h)).find(|p| p.is_file()).ok_or_else(|| {
        format!("{} has neither {}: cannot tell which torch it is", torch.display(), VERSION_HEADERS.join(" nor "))
    })?;
    let text = std::fs::read_to_string(&header).map_err(|e| format!("{}: {e}", header.display()))?;
    check_version(&header.display().to_string(), &text)?;
    let lib = torch.join("lib/libtorch_cpu.so");
    let mut file = File::open(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    match defines_dynamic_symbol(&mut file, SYMBOL) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{} does not export {SYMBOL} (at::native::mkldnn_matmul(const Tensor&, const Tensor&, const Tensor&, float, float))", lib.display())),
        Err(e) => Err(format!("{}: {e}", lib.display())),
    }
}
