//! Multi-process training on libtorch's own c10d: a TCPStore rendezvous and a process group
//! (ProcessGroupGloo on CPU, ProcessGroupNCCL on CUDA), reached through the C++ shim
//! `c10d.cpp` beside this file.
//!
//! - [`rendezvous`]: torchrun's environment; [`ProcessGroup`]: the collectives.
//! - [`ddp`]: data-parallel training's steps (broadcast, bucketed gradient sums, gathers).
//! - [`launch`]: `--nproc N`, torchrun's job on one machine.
//! - Every collective is waited on with the rendezvous timeout (`dist_timeout_s`). A failure
//!   (a dead peer, a timeout, an unreachable store) comes back as [`Error::Dist`] naming the
//!   ranks that did not report, never as an abort or a hang; the group then refuses further
//!   collectives, so the caller's only move is to end the process.
pub mod ddp;
mod ffi;
pub mod launch;
pub mod rendezvous;

use std::cell::Cell;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::error::{Error, Result};
pub use rendezvous::{Rendezvous, DEFAULT_TIMEOUT_S};

/// The longest a failing rank waits for its peers to report the same failure.
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// The c10d backend of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ProcessGroupGloo: CPU tensors, over TCP.
    Gloo,
    /// ProcessGroupNCCL: CUDA tensors (needs a build with CUDA and NCCL headers).
    Nccl,
}

impl Backend {
    /// The backend for tensors on `device`: NCCL on CUDA, Gloo otherwise.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    /// Whether this build contains the backend.
    pub fn compiled(self) -> bool {
        self == Backend::Gloo || ffi::has_nccl()
    }
}

/// One rank's membership in a group of processes.
pub struct ProcessGroup {
    group: Option<ffi::Group>,
    store: ffi::Store,
    rdzv: Rendezvous,
    backend: Backend,
    /// Collectives started so far: every rank issues them in the same order.
    seq: Cell<u64>,
    /// Set after a failure: the group is unusable from then on.
    failed: Cell<bool>,
}

impl ProcessGroup {
    /// Joins the rendezvous: connects to (or hosts) the TCPStore, waits for every rank within
    /// the timeout, and builds the backend.
    pub fn new(rdzv: &Rendezvous, backend: Backend) -> Result<Self> {
        rdzv.validate()?;
        let err = |reason: String| Error::Dist { rank: rdzv.rank, reason };
        if !backend.compiled() {
            return Err(err("NCCL was requested but this build has no NCCL (build.rs found no CUDA or NCCL headers); train on the CPU with Gloo".into()));
        }
        log::info!(
            "rank {}/{}: {:?} group, {} ({} s timeout)",
            rdzv.rank,
            rdzv.world_size,
            backend,
            rdzv.store_owner(),
            rdzv.timeout.as_secs()
        );
        let store = ffi::Store::connect(&rdzv.master_addr, rdzv.master_port, rdzv.hosts_store(), rdzv.world_size, rdzv.timeout, &rdzv.key_prefix()).map_err(|e| {
            // c10d's socket error names the errno: "code: -98, name: EADDRINUSE"
            if rdzv.hosts_store() && e.contains("EADDRINUSE") {
                return Error::PortInUse { addr: format!("{}:{}", rdzv.master_addr, rdzv.master_port), reason: e };
            }
            err(format!("rendezvous at {} failed (not every one of the {} ranks joined within {} s?): {e}", rdzv.store_owner(), rdzv.world_size, rdzv.timeout.as_secs()))
        })?;
        let group = ffi::Group::new(&store, backend == Backend::Nccl, rdzv.rank, rdzv.world_size, rdzv.timeout)
            .map_err(|e| err(format!("creating the {backend:?} process group failed: {e}")))?;
        Ok(ProcessGroup { group: Some(group), store, rdzv: rdzv.clone(), backend, seq: Cell::new(0), failed: Cell::new(false) })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rdzv.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.rdzv.world_size
    }

    /// The rendezvous this group joined.
    pub fn rendezvous(&self) -> &Rendezvous {
        &self.rdzv
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sums `t` over the ranks, in place (any dtype c10d supports; `t` contiguous).
    pub fn allreduce_sum(&self, t: &mut Tensor) -> Result<()> {
        self.check_tensor("allreduce", t)?;
        self.run("allreduce", |g| g.allreduce_sum(&*t))
    }

    /// Averages `t` over the ranks, in place (floating-point `t` only: c10d's Gloo has no AVG,
    /// so this is a sum divided by the world size).
    pub fn allreduce_mean(&self, t: &mut Tensor) -> Result<()> {
        if !t.is_floating_point() {
            return Err(self.local_error(format!("allreduce_mean of a {:?} tensor: only floating-point tensors can be averaged", t.kind())));
        }
        self.allreduce_sum(t)?;
        t.f_div_scalar_(self.world_size() as f64).map(|_| ()).map_err(|e| self.local_error(e.to_string()))
    }

    /// Copies rank `root`'s `t` into every rank's `t`, in place.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<()> {
        if root >= self.world_size() {
            return Err(self.local_error(format!("broadcast from rank {root}: the group has {} ranks", self.world_size())));
        }
        self.check_tensor("broadcast", t)?;
        self.run("broadcast", |g| g.broadcast(&*t, root))
    }

    /// Every rank's `t`, in rank order (each rank's `t` must have the same shape and dtype).
    pub fn allgather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        self.check_tensor("allgather", t)?;
        let outputs: Vec<Tensor> = (0..self.world_size()).map(|_| t.empty_like()).collect();
        self.run("allgather", |g| g.allgather(t, &outputs))?;
        Ok(outputs)
    }

    /// Every rank's rows of `t` concatenated in rank order; the ranks' first dimensions may
    /// differ (the rest of the shape and the dtype may not).
    pub fn allgather_rows(&self, t: &Tensor) -> Result<Tensor> {
        let size = t.size();
        let Some((&rows, rest)) = size.split_first() else {
            return Err(self.local_error("allgather_rows of a 0-dimensional tensor".into()));
        };
        let counts = self.allgather(&Tensor::from_slice(&[rows]).to_device(t.device()))?;
        let counts: Vec<i64> = counts.iter().map(|c| c.int64_value(&[0])).collect();
        let most = counts.iter().copied().max().unwrap_or(0);
        let mut padded_shape = vec![most];
        padded_shape.extend_from_slice(rest);
        let padded = Tensor::zeros(padded_shape.as_slice(), (t.kind(), t.device()));
        if rows > 0 {
            padded.narrow(0, 0, rows).copy_(t);
        }
        let parts = self.allgather(&padded)?;
        let kept: Vec<Tensor> = parts.iter().zip(&counts).map(|(p, &n)| p.narrow(0, 0, n)).collect();
        Ok(Tensor::cat(&kept, 0))
    }

    /// Returns when every rank has reached it.
    pub fn barrier(&self) -> Result<()> {
        self.run("barrier", |g| g.barrier())
    }

    /// A contiguous, defined tensor, or an error raised before any rank starts the collective.
    fn check_tensor(&self, op: &str, t: &Tensor) -> Result<()> {
        if !t.defined() || !t.is_contiguous() {
            return Err(self.local_error(format!("{op}: the tensor must be defined and contiguous (shape {:?})", t.size())));
        }
        Ok(())
    }

    /// An error found before any communication (the group stays usable).
    fn local_error(&self, reason: String) -> Error {
        Error::Dist { rank: self.rank(), reason }
    }

    /// Runs one collective, turning its failure into an error that names the absent ranks.
    fn run(&self, op: &str, f: impl FnOnce(&ffi::Group) -> std::result::Result<(), String>) -> Result<()> {
        let seq = self.seq.get() + 1;
        let group = match (&self.group, self.failed.get()) {
            (Some(g), false) => g,
            _ => return Err(self.local_error(format!("{op}: the process group failed earlier; the run cannot continue"))),
        };
        self.seq.set(seq);
        f(group).map_err(|e| {
            self.failed.set(true);
            let who = self.absent_ranks(seq);
            Error::Dist { rank: self.rank(), reason: format!("{op} (collective #{seq}) failed: {e}; {who}") }
        })
    }

    /// After collective `seq` failed here: reports this rank's failure in the store and names
    /// the ranks that do not report theirs within a short grace (dead, or stuck elsewhere).
    fn absent_ranks(&self, seq: u64) -> String {
        let key = |r: usize| format!("failed/{seq}/{r}");
        if let Err(e) = self.store.set(&key(self.rank()), "1") {
            return format!("{} cannot be reached ({e}): its host has probably died", self.rdzv.store_owner());
        }
        let grace = REPORT_GRACE.min(self.rdzv.timeout);
        let start = Instant::now();
        loop {
            let mut absent = Vec::new();
            for r in (0..self.world_size()).filter(|&r| r != self.rank()) {
                match self.store.check(&key(r)) {
                    Ok(true) => {}
                    Ok(false) => absent.push(r),
                    Err(e) => return format!("{} cannot be reached ({e}): its host has probably died", self.rdzv.store_owner()),
                }
            }
            if absent.is_empty() {
                return "every other rank reported the same failure".into();
            }
            if start.elapsed() >= grace {
                let list = absent.iter().map(|r| format!("rank {r}")).collect::<Vec<_>>().join(", ");
                return format!("{list} did not report within {} s: dead, or stuck outside this collective", grace.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            if self.failed.get() {
                group.abandon();
            }
        }
    }
}

