//! The crate's error type: every I/O, config or shape boundary returns `Result<T, Error>`.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("{path}: invalid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    #[error("config: {0}")]
    Config(String),

    #[error("{path}: key `{key}`: the checkpoint holds shape {found:?}, the model built from the config expects {expected:?}; the config key that sets it: `{config_key}`")]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<i64>, found: Vec<i64>, config_key: &'static str },

    #[error("{path}: key `{key}`: expected a floating-point tensor ({expected}), found {found}: integer or bool data cannot fill a float parameter")]
    DtypeMismatch { path: PathBuf, key: String, expected: String, found: String },

    #[error("{path}: {count} parameter(s) missing from the checkpoint, first: {first:?}")]
    MissingKeys { path: PathBuf, count: usize, first: Vec<String> },

    #[error("{path}: tensor `{key}` is missing")]
    MissingTensor { path: PathBuf, key: String },

    #[error("input `{name}`: {reason}")]
    Input { name: String, reason: String },

    #[error("parity: {0}")]
    Parity(String),

    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    #[error("image {name}: {reason}")]
    Image { name: String, reason: String },

    #[error("{path}: column `{column}`: {reason}")]
    Dataset { path: PathBuf, column: String, reason: String },

    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    #[error("distributed run, rank {rank}: {reason}")]
    Dist { rank: usize, reason: String },

    /// The store's port is taken (another program bound it after the port was chosen): a
    /// launcher that chose the port starts over with another (`dist::launch::PORT_IN_USE_EXIT`).
    #[error("distributed run: the store cannot listen on {addr}: the port is in use ({reason})")]
    PortInUse { addr: String, reason: String },

    /// A raw dataset file that `m3ae data prepare` cannot read; `line` 0 when not line-based.
    #[error("{}: {reason}", location(path, *line))]
    Prepare { path: PathBuf, line: usize, reason: String },

    /// A CPU kernel route failed where a fallback is an error (`model::linear`).
    #[error("kernel: {0}")]
    Kernel(String),

    #[error("training stopped at step {step}: {reason}")]
    Training { step: u64, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

fn location(path: &std::path::Path, line: usize) -> String {
    if line == 0 { path.display().to_string() } else { format!("{}:{line}", path.display()) }
}

impl Error {
    pub fn prepare(path: impl Into<PathBuf>, line: usize, reason: impl Into<String>) -> Self {
        Error::Prepare { path: path.into(), line, reason: reason.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn input(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Input { name: name.into(), reason: reason.into() }
    }
}
