//! Where the ranks meet: torchrun's environment (`MASTER_ADDR`, `MASTER_PORT`, `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`), read as `torch.distributed`'s `env://` does. Rank 0 hosts the
//! TCPStore unless `TORCHELASTIC_USE_AGENT_STORE=True`, where torchrun's agent hosts it.
use std::time::Duration;

use crate::error::{Error, Result};

/// `dist_timeout_s`'s default: c10d's own default for collectives (30 minutes) is too long
/// to notice a dead rank; upstream's Lightning DDP leaves c10d's.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

/// One rank's view of a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// The TCPStore's host (`MASTER_ADDR`).
    pub master_addr: String,
    /// The TCPStore's port (`MASTER_PORT`).
    pub master_port: u16,
    /// This process's rank, 0 ≤ rank < world_size (`RANK`).
    pub rank: usize,
    /// The number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// This process's index on its machine, which picks its CUDA device (`LOCAL_RANK`).
    pub local_rank: usize,
    /// Whether torchrun's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
    /// torchrun's restart count (`TORCHELASTIC_RESTART_COUNT`): keys of earlier attempts differ.
    pub restart_count: u64,
    /// How long any rendezvous step, store operation or collective may take (`dist_timeout_s`).
    pub timeout: Duration,
}

/// A variable of the environment, `None` when unset.
fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!("environment variable {name} is not UTF-8"))),
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| Error::Config(format!("environment variable {name}={value:?} is not a valid number")))
}

fn required(name: &str) -> Result<String> {
    var(name)?.ok_or_else(|| {
        Error::Config(format!(
            "environment variable {name} is unset: a multi-process run needs MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE (torchrun sets them; so does --nproc)"
        ))
    })
}

impl Rendezvous {
    /// The rendezvous torchrun (or `--nproc`) describes in the environment, with the default
    /// timeout; `None` when `WORLD_SIZE` and `RANK` are both unset (a single-process run).
    pub fn from_env() -> Result<Option<Self>> {
        if var("WORLD_SIZE")?.is_none() && var("RANK")?.is_none() {
            return Ok(None);
        }
        let world_size: usize = parse("WORLD_SIZE", &required("WORLD_SIZE")?)?;
        let rank: usize = parse("RANK", &required("RANK")?)?;
        let local_rank = match var("LOCAL_RANK")? {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let restart_count = match var("TORCHELASTIC_RESTART_COUNT")? {
            Some(v) => parse("TORCHELASTIC_RESTART_COUNT", &v)?,
            None => 0,
        };
        let rdzv = Rendezvous {
            master_addr: required("MASTER_ADDR")?,
            master_port: parse("MASTER_PORT", &required("MASTER_PORT")?)?,
            rank,
            world_size,
            local_rank,
            // rendezvous.py: `os.environ.get("TORCHELASTIC_USE_AGENT_STORE", None) == str(True)`
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE")?.as_deref() == Some("True"),
            restart_count,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_S),
        };
        rdzv.validate()?;
        Ok(Some(rdzv))
    }

    /// The same rendezvous with another timeout (the config's `dist_timeout_s`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the numbers are consistent.
    pub fn validate(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(Error::Config("WORLD_SIZE is 0: a run needs at least one process".into()));
        }
        if self.rank >= self.world_size {
            return Err(Error::Config(format!("RANK={} is not below WORLD_SIZE={}", self.rank, self.world_size)));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("dist_timeout_s must be above 0".into()));
        }
        Ok(())
    }

    /// Whether this process starts the TCPStore server.
    pub fn hosts_store(&self) -> bool {
        !self.agent_store && self.rank == 0
    }

    /// Who hosts the store, for error messages.
    pub fn store_owner(&self) -> String {
        let host = if self.agent_store { "torchrun's agent" } else { "rank 0" };
        format!("the store at {}:{} (hosted by {host})", self.master_addr, self.master_port)
    }

    /// The key prefix of this attempt (torchrun restarts a failed group with a new count).
    pub fn key_prefix(&self) -> String {
        format!("m3ae/attempt_{}/", self.restart_count)
    }
}
