//! The tree a pickle decodes to. Classes the reader does not know stay opaque
//! ([`Value::Object`]): their name and arguments are kept, nothing is ever called.
use super::tensor::TensorRef;

/// One decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as pickle's little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A dict or `collections.OrderedDict`, in insertion order; keys may be any value.
    Dict(Vec<(Value, Value)>),
    /// A class or function named by `GLOBAL`/`STACK_GLOBAL`, never imported.
    Global { module: String, name: String },
    /// A tensor view onto a storage record of the archive (read lazily).
    Tensor(TensorRef),
    /// An instance of a class the reader does not interpret.
    Object(Box<Opaque>),
}

/// An object built by `REDUCE`/`NEWOBJ` of an unknown class, kept as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Opaque {
    /// `module.name` of the class or callable.
    pub class: String,
    /// The arguments it would have been called with.
    pub args: Vec<Value>,
    /// What `BUILD` would have passed to `__setstate__`.
    pub state: Option<Value>,
    /// Items added by `SETITEM(S)` (dict subclasses such as Lightning's `AttributeDict`).
    pub items: Vec<(Value, Value)>,
    /// Elements added by `APPEND(S)` (list subclasses).
    pub elements: Vec<Value>,
}

impl Value {
    /// The entries of a dict, or of a dict-like opaque object (`AttributeDict`).
    pub fn dict_items(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(items) => Some(items),
            Value::Object(o) if o.args.is_empty() && !o.items.is_empty() => Some(&o.items),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict-like value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict_items()?.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global { module, name } => format!("class {module}.{name}"),
            Value::Tensor(_) => "tensor".into(),
            Value::Object(o) => format!("object of {}", o.class),
        }
    }

    /// Converts plain data (config dicts) to JSON; `None` where a value has no JSON form
    /// (tensors, opaque objects, non-string keys, big ints, non-finite floats).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => J::Number(serde_json::Number::from_f64(*f)?),
            Value::Str(s) => J::String(s.clone()),
            Value::List(v) | Value::Tuple(v) => J::Array(v.iter().map(Value::to_json).collect::<Option<_>>()?),
            Value::Dict(_) | Value::Object(_) => {
                let items = self.dict_items()?;
                let mut map = serde_json::Map::new();
                for (k, v) in items {
                    let Value::Str(k) = k else { return None };
                    map.insert(k.clone(), v.to_json()?);
                }
                J::Object(map)
            }
            _ => return None,
        })
    }
}
