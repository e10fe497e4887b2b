//! The one dtype table: each element type as tch, safetensors and `torch.save` name it.
use tch::Kind;

/// `(kind, safetensors dtype, its header name, torch storage class)`.
const TABLE: &[(Kind, safetensors::Dtype, &str, &str)] = &[
    (Kind::Float, safetensors::Dtype::F32, "F32", "FloatStorage"),
    (Kind::Half, safetensors::Dtype::F16, "F16", "HalfStorage"),
    (Kind::BFloat16, safetensors::Dtype::BF16, "BF16", "BFloat16Storage"),
    (Kind::Double, safetensors::Dtype::F64, "F64", "DoubleStorage"),
    (Kind::Int64, safetensors::Dtype::I64, "I64", "LongStorage"),
    (Kind::Int, safetensors::Dtype::I32, "I32", "IntStorage"),
    (Kind::Int16, safetensors::Dtype::I16, "I16", "ShortStorage"),
    (Kind::Int8, safetensors::Dtype::I8, "I8", "CharStorage"),
    (Kind::Uint8, safetensors::Dtype::U8, "U8", "ByteStorage"),
    (Kind::Bool, safetensors::Dtype::BOOL, "BOOL", "BoolStorage"),
];

/// The kind of a safetensors header `dtype` string (`"F32"`, …).
pub fn from_safetensors_name(name: &str) -> Option<Kind> {
    TABLE.iter().find(|r| r.2 == name).map(|r| r.0)
}

/// The safetensors dtype a tensor of `kind` is stored as.
pub fn to_safetensors(kind: Kind) -> Option<safetensors::Dtype> {
    TABLE.iter().find(|r| r.0 == kind).map(|r| r.1)
}

/// The kind of a `torch.<class>` storage; `UntypedStorage` (torch ≥ 2.0) holds bytes.
pub fn from_storage_class(class: &str) -> Option<Kind> {
    if class == "UntypedStorage" {
        return Some(Kind::Uint8);
    }
    TABLE.iter().find(|r| r.3 == class).map(|r| r.0)
}

/// The `torch.<class>` storage a tensor of `kind` is saved as.
pub fn storage_class(kind: Kind) -> Option<&'static str> {
    TABLE.iter().find(|r| r.0 == kind).map(|r| r.3)
}

/// Floating-point kinds: what `load_state_dict` casts between when it copies into a parameter.
pub fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double)
}
