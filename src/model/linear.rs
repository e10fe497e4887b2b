//! `torch.nn.Linear` (keys `weight` [out, in] and `bias` [out]), with MKL's packed weights
//! for inference.
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

use crate::kernels::mkl_packed;

/// Fewer rows take plain `at::linear`: below 12 rows MKL's plain sgemm switches to a
/// small-matrix kernel whose sums differ in the last bits from the packed one (measured on
/// torch 2.11 at 1, 2 and 4 threads), and packing saves nothing there anyway.
pub const MIN_PACKED_ROWS: i64 = 16;

static PACKED_INFERENCE: AtomicBool = AtomicBool::new(true);

/// Turns the packed inference path on (the default) or off for every [`Linear`] of the
/// process; off, each layer frees its packed copy on its next call. `m3ae bench --plain-linear`
/// uses it to measure what packing is worth.
pub fn set_packed_inference(on: bool) {
    PACKED_INFERENCE.store(on, Ordering::Relaxed);
}

/// A weight packed for one row count, valid while the weight is the same storage at the
/// same version.
#[derive(Debug)]
struct Packed {
    rows: i64,
    data_ptr: usize,
    version: i64,
    weight: Tensor,
}

/// `nn.Linear`: y = x Wᵀ + b. Outside autograd (`tch::no_grad`), on fp32 CPU tensors of at
/// least [`MIN_PACKED_ROWS`] rows and a libtorch with MKL, the weight is packed once for the input's row count and reused until
/// the row count changes or the weight is written (load, optimizer step): the results are
/// bit-equal to `at::linear`, without repacking the weight on every call. The cache holds
/// one packed copy of the weight (its size again) for as long as the model lives.
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    packed: RefCell<Option<Packed>>,
}

impl Linear {
    /// `weight` ~ `ws_init`, `bias` ~ `bs_init` when given, under `p`.
    pub fn new(p: &nn::Path, d_in: i64, d_out: i64, ws_init: Init, bs_init: Option<Init>) -> Linear {
        let ws = p.var("weight", &[d_out, d_in], ws_init);
        let bs = bs_init.map(|init| p.var("bias", &[d_out], init));
        Self::from_vars(ws, bs)
    }

    /// A Linear over variables registered under other names (`in_proj_weight`, …).
    pub fn from_vars(ws: Tensor, bs: Option<Tensor>) -> Linear {
        Linear { ws, bs, packed: RefCell::new(None) }
    }

    /// The row count the weight is packed for, if it is (for tests and inspection).
    pub fn packed_rows(&self) -> Option<i64> {
        self.packed.borrow().as_ref().map(|p| p.rows)
    }

    /// The packed product when it applies, else None (the caller takes `at::linear`).
    fn forward_packed(&self, xs: &Tensor) -> Option<Tensor> {
        let w = &self.ws;
        let k = *w.size().last()?;
        if !PACKED_INFERENCE.load(Ordering::Relaxed) {
            self.packed.borrow_mut().take();
            return None;
        }
        let eligible = xs.device() == Device::Cpu
            && xs.kind() == Kind::Float
            && w.kind() == Kind::Float
            && xs.size().last() == Some(&k)
            && xs.numel() > 0
            && mkl_packed::available()
            && !mkl_packed::grad_enabled();
        if !eligible {
            return None;
        }
        let rows = (xs.numel() as i64) / k;
        if rows < MIN_PACKED_ROWS {
            return None;
        }
        let (data_ptr, version) = (w.data_ptr() as usize, mkl_packed::version(w));
        let mut cache = self.packed.borrow_mut();
        let fresh = matches!(&*cache, Some(p) if p.rows == rows && p.data_ptr == data_ptr && p.version == version);
        if !fresh {
            *cache = None; // free the old copy before packing the new one
            let weight = mkl_packed::pack(w, rows).ok()?;
            *cache = Some(Packed { rows, data_ptr, version, weight });
        }
        let packed = cache.as_ref()?;
        mkl_packed::linear(xs, &packed.weight, w, self.bs.as_ref(), rows).ok()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_packed(xs).unwrap_or_else(|| xs.linear(&self.ws, self.bs.as_ref()))
    }
}
