//! Writes a Lightning-shaped `.ckpt` (`{"state_dict": OrderedDict, "hyper_parameters":
//! {"config": …}}`) in the `torch.save` zip format, with a protocol-2 pickle that only names
//! what `torch.load(weights_only=True)` allows: `_rebuild_tensor_v2`, `OrderedDict` and the
//! typed storage classes.
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use tch::Tensor;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{Error, Result};
use crate::weights::StateDict;

/// The archive folder every record lives under.
const ARCHIVE: &str = "archive";
/// torch's serialization version record.
const VERSION: &[u8] = b"3\n";

/// A protocol-2 pickle being written, with class references memoised.
struct PickleWriter {
    out: Vec<u8>,
    globals: HashMap<(&'static str, &'static str), u32>,
    memo: u32,
}

impl PickleWriter {
    fn new() -> Self {
        PickleWriter { out: vec![0x80, 2], globals: HashMap::new(), memo: 0 }
    }
    fn op(&mut self, op: u8) {
        self.out.push(op);
    }
    fn global(&mut self, module: &'static str, name: &'static str) {
        if let Some(&id) = self.globals.get(&(module, name)) {
            self.out.push(b'j');
            self.out.extend(id.to_le_bytes());
            return;
        }
        self.out.extend(format!("c{module}\n{name}\n").bytes());
        self.out.push(b'r');
        self.out.extend(self.memo.to_le_bytes());
        self.globals.insert((module, name), self.memo);
        self.memo += 1;
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.bytes());
    }
    fn int(&mut self, i: i64) {
        match i {
            0..=0xff => self.out.extend([b'K', i as u8]),
            0x100..=0xffff => {
                self.out.push(b'M');
                self.out.extend((i as u16).to_le_bytes());
            }
            _ if i32::try_from(i).is_ok() => {
                self.out.push(b'J');
                self.out.extend((i as i32).to_le_bytes());
            }
            _ => {
                self.out.extend([0x8a, 8]);
                self.out.extend(i.to_le_bytes());
            }
        }
    }
    fn ints(&mut self, v: &[i64]) {
        self.op(b'(');
        for &i in v {
            self.int(i);
        }
        self.op(b't');
    }
    fn json(&mut self, v: &serde_json::Value) {
        use serde_json::Value as J;
        match v {
            J::Null => self.op(b'N'),
            J::Bool(b) => self.op(if *b { 0x88 } else { 0x89 }),
            J::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => self.int(i),
                (None, Some(u)) => {
                    self.out.extend([0x8a, 9]);
                    self.out.extend(u.to_le_bytes());
                    self.out.push(0);
                }
                _ => {
                    self.op(b'G');
                    self.out.extend(n.as_f64().unwrap_or(f64::NAN).to_be_bytes());
                }
            },
            J::String(s) => self.str(s),
            J::Array(items) => {
                self.op(b']');
                if !items.is_empty() {
                    self.op(b'(');
                    items.iter().for_each(|x| self.json(x));
                    self.op(b'e');
                }
            }
            J::Object(map) => {
                self.op(b'}');
                if !map.is_empty() {
                    self.op(b'(');
                    for (k, x) in map {
                        self.str(k);
                        self.json(x);
                    }
                    self.op(b'u');
                }
            }
        }
    }
    /// `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` over storage `key`.
    fn tensor(&mut self, key: &str, storage_class: &'static str, size: &[i64]) {
        let mut stride = vec![1i64; size.len()]; // contiguous: stride_i = Π size_{>i}
        for i in (0..size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * size[i + 1].max(1);
        }
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(b'(');
        self.op(b'(');
        self.str("storage");
        self.global("torch", storage_class);
        self.str(key);
        self.str("cpu");
        self.int(size.iter().product());
        self.op(b't');
        self.op(b'Q');
        self.int(0);
        self.ints(size);
        self.ints(&stride);
        self.op(0x89);
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
        self.op(b't');
        self.op(b'R');
    }
}

/// Writes `sd` and `config` as a Lightning-shaped checkpoint at `out`.
pub fn write_checkpoint(out: &Path, sd: &StateDict, config: &serde_json::Value) -> Result<()> {
    write_checkpoint_as(out, sd, Layout::Lightning(config))
}

/// What the pickled root of a written checkpoint holds.
#[derive(Debug, Clone, Copy)]
pub enum Layout<'a> {
    /// `{"state_dict": …, "hyper_parameters": {"config": …}}`, as Lightning saves.
    Lightning(&'a serde_json::Value),
    /// `{"state_dict": …}`: `torch.save({"state_dict": model.state_dict()})`.
    StateDictOnly,
    /// The state dict itself: `torch.save(model.state_dict())`.
    Bare,
}

/// Writes `sd` at `out` in the `torch.save` zip format, its root as `layout` says.
pub fn write_checkpoint_as(out: &Path, sd: &StateDict, layout: Layout) -> Result<()> {
    let mut p = PickleWriter::new();
    let wrapped = !matches!(layout, Layout::Bare);
    if wrapped {
        p.op(b'}');
        p.op(b'(');
        p.str("state_dict");
    }
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    let mut tensors: Vec<Tensor> = Vec::with_capacity(sd.len());
    if !sd.is_empty() {
        p.op(b'(');
        for (i, (name, t)) in sd.iter().enumerate() {
            let class = crate::weights::dtype::storage_class(t.kind()).ok_or_else(|| Error::input(name, format!("cannot export dtype {:?}", t.kind())))?;
            p.str(name);
            p.tensor(&i.to_string(), class, &t.size());
            tensors.push(t.detach().to_device(tch::Device::Cpu).contiguous());
        }
        p.op(b'u');
    }
    if let Layout::Lightning(config) = layout {
        p.str("hyper_parameters");
        p.json(&serde_json::json!({ "config": config }));
    }
    if wrapped {
        p.op(b'u');
    }
    p.op(b'.');

    let io = |e: std::io::Error| Error::io(out, e);
    let zip_err = |e: zip::result::ZipError| Error::Checkpoint { path: out.into(), reason: format!("writing zip: {e}") };
    let file = File::create(out).map_err(io)?;
    let mut zip = ZipWriter::new(BufWriter::new(file));
    let record = |zip: &mut ZipWriter<BufWriter<File>>, name: &str, bytes: &[u8]| -> Result<()> {
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored).with_alignment(64).large_file(bytes.len() >= u32::MAX as usize);
        zip.start_file(format!("{ARCHIVE}/{name}"), opts).map_err(zip_err)?;
        zip.write_all(bytes).map_err(io)
    };
    record(&mut zip, "data.pkl", &p.out)?;
    record(&mut zip, ".format_version", b"1")?;
    record(&mut zip, ".storage_alignment", b"64")?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, t) in tensors.iter().enumerate() {
        let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, t.numel())?;
        record(&mut zip, &format!("data/{i}"), &bytes)?;
    }
    record(&mut zip, "version", VERSION)?;
    zip.finish().map_err(zip_err)?.flush().map_err(io)
}

/// `m3ae export`: a model folder (`model.safetensors` + `config.json`) → `out`.
pub fn export_model_dir(model_dir: &Path, out: &Path) -> Result<usize> {
    let cfg_path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json { path: cfg_path, source })?;
    let sd = crate::weights::read_safetensors(&model_dir.join("model.safetensors"))?;
    write_checkpoint(out, &sd, &config)?;
    Ok(sd.len())
}
