//! One file per subcommand; each owns its clap arguments and its `run`.
pub mod bench;
pub mod convert;
pub mod data;
pub mod export;
pub mod parity;
