"""Import-time shims that let upstream M3AE's `m3ae.modules` run under torch 2.11 and
transformers 4.57 (upstream pins torch 1.9, transformers 4.6, pytorch-lightning 1.3.2).

Nothing here changes upstream's files: `install()` only adds aliases and stand-in modules
to `sys.modules` before upstream is imported. The gaps bridged are the ones listed in
/work/shared/upstream/NOTES.md ("Running upstream's modules today"):

* `transformers.modeling_utils.{apply_chunking_to_forward, find_pruneable_heads_and_indices,
  prune_linear_layer}` moved to `transformers.pytorch_utils`;
* `transformers.file_utils`' docstring decorators changed signature (upstream uses them
  for documentation only: pass-through decorators);
* `transformers.optimization.AdamW` is gone: `AdamW` below is the transformers-4.6 rule;
* `numpy.float` is gone (upstream's sin-cos table uses it);
* `torch.load` defaults to `weights_only=True` since torch 2.6 (upstream loads its own
  Lightning checkpoints, which hold Python objects);
* `pytorch_lightning`, `timm`, `sklearn` and `sacred` are replaced by light stand-ins:
  enough to build the model, its datamodules and run its objectives and metrics, not to
  train with Lightning (parity/generate_train.py drives the training steps itself).
  `Metric` keeps Lightning 1.3's (torchmetrics 0.3's) single-process semantics, so
  upstream's `Scalar`, `Accuracy` and `VQARADScore` accumulate and compute as they did.
"""
import copy
import importlib.abc
import importlib.machinery
import inspect
import math
import sys
import types
import warnings

import numpy as np
import torch
import torch.nn as nn


class AdamW(torch.optim.Optimizer):
    """transformers 4.6 `AdamW` (correct_bias=True), the optimizer upstream trained with.

    Per step t: m <- b1*m + (1-b1)*g; v <- b2*v + (1-b2)*g^2;
    p <- p - lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)  (eps outside the bias correction);
    then the decoupled decay p <- p - lr*wd*p. Parameters without a gradient are skipped.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t, g = state["exp_avg"], state["exp_avg_sq"], state["step"], p.grad
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                denom = v.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size = step_size * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                p.addcdiv_(m, denom, value=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])


class AttributeDict(dict):
    """pytorch_lightning.utilities.parsing.AttributeDict: a dict with attribute access."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def __setattr__(self, key, value):
        self[key] = value


class ModelCheckpoint:
    """Stand-in for the Lightning callback class, which keys `callbacks` in a checkpoint."""


class LightningModule(nn.Module):
    """Stand-in for pl.LightningModule: an nn.Module that keeps `hparams.config`."""

    def save_hyperparameters(self, *args, **kwargs):
        # Lightning 1.3 collects the caller's __init__ arguments; upstream's is `config`.
        init_locals = inspect.currentframe().f_back.f_locals
        self.hparams = AttributeDict(config=init_locals["config"])

    def log(self, *args, **kwargs):
        pass

    @property
    def device(self):
        return next(self.parameters()).device


class Metric:
    """Stand-in for pytorch_lightning.metrics.Metric (Lightning 1.3 = torchmetrics 0.3),
    single process: `add_state` keeps a default; calling the metric runs `update` on the
    accumulated state, then (compute_on_step) returns `compute()` of this batch alone,
    computed on a fresh state that is then discarded; `reset` restores the defaults;
    `sync`/`unsync` (distributed) do nothing. Like upstream's states (persistent=False),
    none of this enters the model's state_dict: this is a plain object, not a Module."""

    def __init__(self, compute_on_step=True, dist_sync_on_step=False, **kwargs):
        self.compute_on_step = compute_on_step
        self._defaults = {}

    def add_state(self, name, default, dist_reduce_fx=None, persistent=False):
        self._defaults[name] = copy.deepcopy(default)
        setattr(self, name, default)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            self.update(*args, **kwargs)
        if not self.compute_on_step:
            return None
        cache = {name: getattr(self, name) for name in self._defaults}
        self.reset()
        self.update(*args, **kwargs)
        value = self.compute()
        for name, state in cache.items():
            setattr(self, name, state)
        return value

    def reset(self):
        for name, default in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def sync(self, *args, **kwargs):
        pass

    def unsync(self, *args, **kwargs):
        pass


class LightningDataModule:
    """Stand-in for pl.LightningDataModule: upstream's datamodules only subclass it."""

    def __init__(self, *args, **kwargs):
        pass

    def prepare_data(self):
        pass


class Experiment:
    """Stand-in for sacred.Experiment: its decorators return the config functions as they are."""

    def __init__(self, *args, **kwargs):
        pass

    def config(self, fn):
        return fn

    named_config = automain = main = capture = config


def _unavailable(name):
    def stub(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:  # used as a decorator
            return args[0]
        raise RuntimeError(f"{name} is a stand-in here (the Swin and metric paths are not supported)")
    return stub


class _StubModule(types.ModuleType):
    """A module whose every missing attribute is a stand-in callable."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{self.__name__}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `_StubModule`s for every module under the given top-level names."""

    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__path__ = []
    for key, value in attrs.items():
        if isinstance(value, type):
            value.__module__ = name  # pickled (in model.ckpt) under Lightning's own path
        setattr(mod, key, value)
    sys.modules[name] = mod
    return mod


def _passthrough_decorator(*args, **kwargs):
    return lambda fn: fn


def install():
    """Installs every shim. Call once, before importing upstream's `m3ae`."""
    if getattr(install, "done", False):
        return
    install.done = True

    if not hasattr(np, "float"):
        np.float = float

    original_load = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)  # upstream's own trusted checkpoints
        return original_load(*args, **kwargs)

    torch.load = load

    import transformers  # before the file_utils patch, so HF's own models are untouched
    if not transformers.__version__.startswith("4."):
        raise RuntimeError(f"transformers {transformers.__version__}: these shims need 4.x (tested 4.57); "
                           "pip install -r parity/requirements.txt")
    warnings.filterwarnings("ignore", message="The `device` argument is deprecated", category=FutureWarning)
    import transformers.file_utils as file_utils
    import transformers.modeling_utils as modeling_utils
    import transformers.optimization as optimization
    import transformers.pytorch_utils as pytorch_utils
    from transformers import RobertaModel  # noqa: F401  (imported before the patch below)

    for name in ("apply_chunking_to_forward", "find_pruneable_heads_and_indices", "prune_linear_layer"):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(pytorch_utils, name))
    for name in ("add_code_sample_docstrings", "add_start_docstrings",
                 "add_start_docstrings_to_model_forward", "replace_return_docstrings"):
        setattr(file_utils, name, _passthrough_decorator)
    optimization.AdamW = AdamW  # removed (or deprecated) since; upstream trained with this rule

    pl = _module("pytorch_lightning", LightningModule=LightningModule, LightningDataModule=LightningDataModule)
    pl.metrics = _module("pytorch_lightning.metrics", Metric=Metric)
    pl.utilities = _module("pytorch_lightning.utilities")
    pl.utilities.parsing = _module("pytorch_lightning.utilities.parsing", AttributeDict=AttributeDict)
    pl.callbacks = _module("pytorch_lightning.callbacks")
    pl.callbacks.model_checkpoint = _module("pytorch_lightning.callbacks.model_checkpoint",
                                            ModelCheckpoint=ModelCheckpoint)
    pl.callbacks.ModelCheckpoint = ModelCheckpoint
    _module("sacred", Experiment=Experiment)
    for root in ("timm", "sklearn"):
        for name in [m for m in sys.modules if m == root or m.startswith(root + ".")]:
            del sys.modules[name]
    sys.meta_path.insert(0, _StubFinder(["timm", "sklearn"]))
