//! Bad and hostile inputs: each must give an `Error` naming the file and what is wrong, never a
//! panic, a hang, an unbounded allocation or code execution.
use m3ae::checkpoint::read_checkpoint;
use m3ae::checkpoint::pickle::parse;
use m3ae::checkpoint::{TorchFile, Value};

use super::util::{fixture, root, scratch, tensor_pickle, write_archive};

/// The error `read_checkpoint` gives for an archive holding `data.pkl` (and `data/0` bytes).
fn archive_error(test: &str, pickle: &[u8], storage: &[u8]) -> String {
    let path = scratch(test).join("bad.ckpt");
    write_archive(&path, &[("data.pkl", pickle), ("byteorder", b"little"), ("data/0", storage), ("version", b"3\n")]);
    let err = read_checkpoint(&path).err().unwrap_or_else(|| panic!("{test}: accepted")).to_string();
    assert!(err.contains("bad.ckpt"), "{test}: error does not name the file: {err}");
    err
}

#[test]
fn truncated_and_corrupt_zips_are_refused() {
    let bytes = std::fs::read(root().join("parity/tiny-b/model.ckpt")).unwrap();
    let dir = scratch("truncated");
    for (name, data) in [("half.ckpt", bytes[..bytes.len() / 2].to_vec()), ("tail-cut.ckpt", bytes[..bytes.len() - 30].to_vec())] {
        std::fs::write(dir.join(name), data).unwrap();
        let err = read_checkpoint(&dir.join(name)).expect_err("truncated zip accepted").to_string();
        assert!(err.contains(name) && err.contains("zip"), "{err}");
    }
    // the central directory points past the records: corrupt every offset byte of the last entry
    let mut corrupt = bytes.clone();
    let cd = corrupt.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    corrupt[cd + 42..cd + 46].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(dir.join("corrupt.ckpt"), corrupt).unwrap();
    assert!(read_checkpoint(&dir.join("corrupt.ckpt")).is_err());
}

#[test]
fn non_zip_and_legacy_files_are_refused() {
    let dir = scratch("non-zip");
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let err = read_checkpoint(&dir.join("notes.txt")).err().unwrap().to_string();
    assert!(err.contains("notes.txt") && err.contains("not a torch.save zip archive"), "{err}");
    let err = read_checkpoint(&fixture("legacy.pt")).err().unwrap().to_string();
    assert!(err.contains("legacy.pt") && err.contains("legacy (pre-1.6"), "{err}");
    let err = read_checkpoint(&dir.join("absent.ckpt")).err().unwrap().to_string();
    assert!(err.contains("absent.ckpt"), "{err}");
}

#[test]
fn unknown_opcode_is_named() {
    let err = archive_error("opcode", b"\x80\x02\xff.", b"");
    assert!(err.contains("data.pkl") && err.contains("unsupported opcode 0xff") && err.contains("byte 2"), "{err}");
}

#[test]
fn deep_nesting_is_bounded() {
    // 200k nested lists: ]]]…]aaa…a.
    let n = 200_000;
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let err = parse(&p).expect_err("deep nesting accepted");
    assert!(err.contains("deeper than 200"), "{err}");
    // 199 levels are fine
    let mut ok = b"\x80\x02".to_vec();
    ok.extend(std::iter::repeat_n(b']', 199));
    ok.extend(std::iter::repeat_n(b'a', 198));
    ok.push(b'.');
    assert!(matches!(parse(&ok), Ok(Value::List(_))));
}

#[test]
fn memo_cycles_and_exponential_sharing_are_refused() {
    // l = []; l.append(l)
    let err = parse(b"\x80\x02]q\x00h\x00a.").expect_err("cycle accepted");
    assert!(err.contains("self-referencing"), "{err}");
    // d = {}; d["d"] = d
    let err = parse(b"\x80\x02}q\x00X\x01\x00\x00\x00dh\x00s.").expect_err("cycle accepted");
    assert!(err.contains("self-referencing"), "{err}");
    // 64 levels of [x, x]: 2^64 leaves if expanded
    let mut p = b"\x80\x02]".to_vec();
    for _ in 0..64 {
        p.extend(b"q\x000(h\x00h\x00l");
    }
    p.push(b'.');
    let err = parse(&p).expect_err("exponential expansion accepted");
    assert!(err.contains("exceeds"), "{err}");
}

#[test]
fn views_outside_their_storage_are_refused() {
    let storage = [0u8; 16]; // 4 floats
    let err = archive_error("offset", &tensor_pickle(4, 5, &[1], &[1]), &storage);
    assert!(err.contains("reaches past the storage's 4 elements"), "{err}");
    let err = archive_error("stride", &tensor_pickle(4, 0, &[2, 2], &[3, 1]), &storage);
    assert!(err.contains("reaches past"), "{err}");
    let err = archive_error("negative", &tensor_pickle(4, 0, &[-1], &[1]), &storage);
    assert!(err.contains("negative"), "{err}");
    let big = 1i64 << 40;
    let err = archive_error("absurd", &tensor_pickle(4, 0, &[big, big], &[big, 1]), &storage);
    assert!(err.contains("reaches past") || err.contains("overflows"), "{err}");
    let err = archive_error("overflow", &tensor_pickle(4, 0, &[1 << 62, 1 << 62, 1 << 62], &[1, 1, 1]), &storage);
    assert!(err.contains("overflows"), "{err}");
    // a storage declaring more than its record holds
    let err = archive_error("declared", &tensor_pickle(1 << 40, 0, &[2], &[1]), &storage);
    assert!(err.contains("data/0") && err.contains("record holds 16 bytes"), "{err}");
    // the same view inside its storage reads
    let path = scratch("inside").join("ok.ckpt");
    let floats: Vec<u8> = [1f32, 2., 3., 4.].iter().flat_map(|f| f.to_le_bytes()).collect();
    write_archive(&path, &[("data.pkl", &tensor_pickle(4, 1, &[2], &[2])), ("data/0", &floats)]);
    let (sd, _) = read_checkpoint(&path).unwrap();
    assert_eq!(Vec::<f32>::try_from(&sd["w"]).unwrap(), [2., 4.]);
}

#[test]
fn missing_state_dict_is_named() {
    // {"epoch": 3}
    let err = archive_error("no-sd", b"\x80\x02}X\x05\x00\x00\x00epochK\x03s.", b"");
    assert!(err.contains("no `state_dict`") && err.contains("\"epoch\""), "{err}");
    let err = archive_error("not-dict", b"\x80\x02K\x03.", b"");
    assert!(err.contains("int, not a checkpoint dict"), "{err}");
}

#[test]
fn os_system_is_never_called() {
    let marker = std::path::Path::new("/tmp/m3ae_pickle_exploit_marker");
    let _ = std::fs::remove_file(marker);
    let pickle = std::fs::read(fixture("os_system.pkl")).unwrap();
    // decoded as an opaque object naming the function and its argument
    let root = parse(&pickle).unwrap();
    let Some(Value::Object(o)) = root.get("state_dict") else { panic!("expected an opaque object, got {root:?}") };
    assert!(o.class.ends_with(".system"), "{}", o.class);
    assert_eq!(o.args, [Value::Str("touch /tmp/m3ae_pickle_exploit_marker".into())]);
    // and as a checkpoint it is refused
    let err = archive_error("os-system", &pickle, b"");
    assert!(err.contains("`state_dict` is a object of") && err.contains("system"), "{err}");
    let path = scratch("os-system-file").join("x.ckpt");
    write_archive(&path, &[("data.pkl", &pickle)]);
    assert!(TorchFile::open(&path).is_ok());
    assert!(!marker.exists(), "the pickle's os.system call ran");
}
