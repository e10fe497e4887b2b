//! Data-parallel training on a [`ProcessGroup`], as torch's `DistributedDataParallel` does it
//! for upstream's Lightning runs: parameters broadcast from rank 0, gradients summed over the
//! ranks in flat buckets of one dtype (`bucket_cap_mb` = 25, torch's default), metric sums
//! added up, evaluation rows gathered. A one-process run uses the same calls, which are then
//! no-ops, so the trainer has one code path.
//!
//! Buckets are reduced after the micro-batch's backward, not overlapped with it: tch exposes
//! no autograd hooks, and on the CPU (Gloo) the reduction competes with backward for the
//! same cores anyway.
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use super::{Backend, ProcessGroup, Rendezvous};
use crate::data::loader::Shard;
use crate::error::Result;

/// The most bytes one bucket holds (torch DDP's `bucket_cap_mb` default, 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The processes of a run: this one alone, or one rank of a process group.
pub struct Ddp {
    pg: Option<ProcessGroup>,
    /// Where the backend's tensors live: the CPU for Gloo, this rank's GPU for NCCL.
    device: Device,
}

impl Ddp {
    /// A one-process run.
    pub fn single(device: Device) -> Self {
        Ddp { pg: None, device }
    }

    /// Joins the group torchrun's environment describes (one process when it describes none),
    /// with collectives bounded by `timeout`. On CUDA each rank takes GPU `LOCAL_RANK`.
    /// Ranks other than 0 then log warnings and errors only (rank 0 reports the run).
    pub fn from_env(timeout: Duration, device: Device) -> Result<Self> {
        match Rendezvous::from_env()? {
            None => Ok(Ddp::single(device)),
            Some(rdzv) => {
                let device = if device.is_cuda() { Device::Cuda(rdzv.local_rank) } else { device };
                let gpus = tch::Cuda::device_count() as usize;
                if device.is_cuda() && rdzv.local_rank >= gpus {
                    return Err(crate::error::Error::Dist { rank: rdzv.rank, reason: format!("LOCAL_RANK {} needs GPU {}, but this machine has {gpus}: start at most {gpus} processes per machine", rdzv.local_rank, rdzv.local_rank) });
                }
                let pg = ProcessGroup::new(&rdzv.with_timeout(timeout), Backend::for_device(device))?;
                if pg.rank() != 0 {
                    log::set_max_level(log::LevelFilter::Warn);
                }
                Ok(Ddp { pg: Some(pg), device })
            }
        }
    }

    /// The device this rank computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// This process's rank (0 alone).
    pub fn rank(&self) -> usize {
        self.pg.as_ref().map_or(0, ProcessGroup::rank)
    }

    /// The number of processes (1 alone).
    pub fn world(&self) -> usize {
        self.pg.as_ref().map_or(1, ProcessGroup::world_size)
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The process group, when there is one.
    pub fn group(&self) -> Option<&ProcessGroup> {
        self.pg.as_ref()
    }

    /// This rank's share of the batches when each `group` consecutive batches are dealt out
    /// round robin (an optimizer step's micro-batches; `world` for evaluation).
    pub fn shard(&self, group: usize) -> Shard {
        Shard { group, rank: self.rank(), world: self.world() }
    }

    /// Overwrites `tensors` with rank 0's (the model's variables at the start).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        bucketed(tensors, |flat| pg.broadcast(flat, 0))
    }

    /// Sums each slot over the ranks. `grads[i]` undefined means this rank has no gradient
    /// for slot i (`like[i]` gives its shape and dtype); a slot stays undefined only when no
    /// rank has one, so the optimizer skips it as it would in one process.
    pub fn sum_gradients(&self, mut grads: Vec<Tensor>, like: &[&Tensor]) -> Result<Vec<Tensor>> {
        let Some(pg) = &self.pg else { return Ok(grads) };
        let mut defined: Vec<f64> = grads.iter().map(|g| f64::from(u8::from(g.defined()))).collect();
        self.sum_f64(&mut defined)?;
        let mut live = Vec::new();
        for (i, g) in grads.iter_mut().enumerate() {
            if defined[i] > 0.0 {
                if !g.defined() {
                    *g = like[i].zeros_like().to_device(self.device);
                }
                live.push(g.shallow_clone());
            }
        }
        bucketed(&live, |flat| pg.allreduce_sum(flat))?;
        Ok(grads)
    }

    /// Sums `values` over the ranks, in place (losses, counts, metric sums).
    pub fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        if values.is_empty() {
            return Ok(());
        }
        let mut t = Tensor::from_slice(values).to_device(self.device);
        pg.allreduce_sum(&mut t)?;
        let summed = Vec::<f64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    /// Every rank's rows of `t`, in rank order (the ranks' row counts may differ).
    pub fn gather_rows(&self, t: &Tensor) -> Result<Tensor> {
        let Some(pg) = &self.pg else { return Ok(t.shallow_clone()) };
        Ok(pg.allgather_rows(&t.to_device(self.device).contiguous())?.to_device(t.device()))
    }
}

/// Runs `op` on flat copies of `tensors` in buckets (consecutive tensors of one dtype and
/// device, at most [`BUCKET_BYTES`] unless one tensor is larger), then copies each result back.
fn bucketed(tensors: &[Tensor], mut op: impl FnMut(&mut Tensor) -> Result<()>) -> Result<()> {
    let bytes = |t: &Tensor| t.numel() * t.kind().elt_size_in_bytes();
    let mut start = 0;
    while start < tensors.len() {
        let (kind, device) = (tensors[start].kind(), tensors[start].device());
        let (mut end, mut size) = (start, 0);
        while end < tensors.len() && tensors[end].kind() == kind && tensors[end].device() == device && (end == start || size + bytes(&tensors[end]) <= BUCKET_BYTES) {
            size += bytes(&tensors[end]);
            end += 1;
        }
        let parts: Vec<Tensor> = tensors[start..end].iter().map(|t| t.detach().reshape([-1])).collect();
        let mut flat = Tensor::cat(&parts, 0);
        op(&mut flat)?;
        tch::no_grad(|| {
            let mut offset = 0;
            for t in &tensors[start..end] {
                let n = t.numel() as i64;
                let mut target = t.shallow_clone();
                target.copy_(&flat.narrow(0, offset, n).view_as(t));
                offset += n;
            }
        });
        start = end;
    }
    Ok(())
}
