//! `model::linear::Linear`: MKL's packed weights for inference give exactly `at::linear`'s
//! numbers, follow every write to the weight, and stay out of autograd.
use m3ae::kernels::mkl_packed;
use m3ae::model::linear::{Linear, MIN_PACKED_ROWS};
use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

fn layer(vs: &nn::VarStore, bias: bool) -> Linear {
    let bs = bias.then_some(Init::Uniform { lo: -0.5, up: 0.5 });
    Linear::new(&(vs.root() / "fc"), 96, 160, Init::Randn { mean: 0.0, stdev: 0.1 }, bs)
}

fn plain(lin: &Linear, x: &Tensor) -> Tensor {
    tch::no_grad(|| x.linear(&lin.ws, lin.bs.as_ref()))
}

#[test]
fn the_linked_libtorch_has_the_mkl_operators() {
    // PyPI's x86 torch 2.11.0 is built with MKL; without the operators every Linear would
    // silently take the plain path and the benchmark would measure something else.
    assert!(mkl_packed::available(), "mkl::_mkl_linear is not registered by the linked libtorch");
}

#[test]
fn packed_inference_is_bit_equal_to_at_linear() {
    tch::manual_seed(0);
    for bias in [true, false] {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = layer(&vs, bias);
        let x = Tensor::randn([3, 50, 96], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| lin.forward(&x));
        assert_eq!(lin.packed_rows(), Some(150), "bias {bias}: a no_grad fp32 CPU call packs for its 150 rows");
        assert_eq!(y.size(), [3, 50, 160]);
        assert!(y.equal(&plain(&lin, &x)), "bias {bias}: packed result differs from at::linear");
        // the second call reuses the pack
        assert!(tch::no_grad(|| lin.forward(&x)).equal(&y));
    }
}

#[test]
fn a_write_to_the_weight_or_another_row_count_repacks() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = layer(&vs, true);
    let x = Tensor::randn([40, 96], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| lin.forward(&x));
    // an optimizer step or a checkpoint load writes in place
    tch::no_grad(|| {
        let _ = lin.ws.shallow_clone().g_mul_scalar_(-2.0);
    });
    let after = tch::no_grad(|| lin.forward(&x));
    assert!(!after.equal(&before), "the stale pack was used after the weight changed");
    assert!(after.equal(&plain(&lin, &x)), "after a weight write the result is not at::linear's");
    let x2 = Tensor::randn([2, 10, 96], (Kind::Float, Device::Cpu));
    let y2 = tch::no_grad(|| lin.forward(&x2));
    assert_eq!(lin.packed_rows(), Some(20));
    assert!(y2.equal(&plain(&lin, &x2)));
    // below MIN_PACKED_ROWS the plain kernel runs (MKL's small-matrix path) and the pack stays
    for rows in [1, 3, 7, MIN_PACKED_ROWS - 1] {
        let x3 = Tensor::randn([rows, 96], (Kind::Float, Device::Cpu));
        assert!(tch::no_grad(|| lin.forward(&x3)).equal(&plain(&lin, &x3)), "{rows} rows differ from at::linear");
        assert_eq!(lin.packed_rows(), Some(20), "{rows} rows repacked");
    }
}

#[test]
fn with_autograd_on_the_plain_path_runs_and_gradients_flow() {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = layer(&vs, true);
    let x = Tensor::randn([10, 96], (Kind::Float, Device::Cpu));
    let y = lin.forward(&x);
    assert_eq!(lin.packed_rows(), None, "packed under autograd");
    y.sum(Kind::Float).backward();
    assert!(lin.ws.grad().defined(), "no gradient reached the weight");
    // fp64 and other devices take the plain path too
    let x64 = x.to_kind(Kind::Double);
    let lin64 = Linear::from_vars(lin.ws.detach().to_kind(Kind::Double), lin.bs.as_ref().map(|b| b.detach().to_kind(Kind::Double)));
    let _ = tch::no_grad(|| lin64.forward(&x64));
    assert_eq!(lin64.packed_rows(), None, "fp64 was packed");
}
