"""A NumPy stand-in for the few parts of PyTorch that ``bench/benchmarks/mlp_torch.py`` uses,
for CI machines without PyTorch (never a dependency of gdbench): tensors backed by float32
arrays, ``nn.Linear`` (PyTorch's default initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in))),
``nn.ReLU``, ``nn.Sequential``, ``nn.functional.cross_entropy`` (mean over the batch),
``optim.AdamW`` (PyTorch's update: decoupled weight decay, bias-corrected moments), ``randint``
with a ``Generator``, ``no_grad``. Gradients flow back through a chain of layers (what an MLP
needs), computed by hand. ``install(monkeypatch)`` puts it in ``sys.modules`` as ``torch``.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np

_state = {"grad": True, "rng": np.random.default_rng(0)}


class Tensor:
    def __init__(self, data, backward=None):
        self.data = np.asarray(data)
        self.grad = None
        self._backward = backward if _state["grad"] else None

    shape = property(lambda self: self.data.shape)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        return Tensor(self.data[index.data if isinstance(index, Tensor) else index])

    def item(self) -> float:
        return float(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def argmax(self, dim: int) -> Tensor:
        return Tensor(self.data.argmax(dim))

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def clone(self) -> Tensor:
        return Tensor(self.data.copy())

    def copy_(self, other: Tensor) -> Tensor:
        self.data[...] = other.data
        return self

    def backward(self) -> None:
        self._backward(np.ones_like(self.data))


class Parameter(Tensor):
    def accumulate(self, grad: np.ndarray) -> None:
        self.grad = grad if self.grad is None else self.grad + grad


class Linear:
    def __init__(self, fan_in: int, fan_out: int):
        bound = 1.0 / np.sqrt(fan_in)
        rng = _state["rng"]
        self.weight = Parameter(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        self.bias = Parameter(rng.uniform(-bound, bound, fan_out).astype(np.float32))

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def __call__(self, x: Tensor) -> Tensor:
        def backward(g):
            self.weight.accumulate(g.T @ x.data)
            self.bias.accumulate(g.sum(0))
            if x._backward is not None:
                x._backward(g @ self.weight.data)

        return Tensor(x.data @ self.weight.data.T + self.bias.data, backward)


class ReLU:
    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: Tensor) -> Tensor:
        def backward(g):
            x._backward(g * (x.data > 0))

        return Tensor(np.maximum(x.data, 0), backward)


class Sequential:
    def __init__(self, *layers):
        self.layers = layers

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __call__(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    z = logits.data - logits.data.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    n = len(y.data)

    def backward(g):
        d = np.exp(logp)
        d[np.arange(n), y.data] -= 1.0
        logits._backward(g * d / n)

    return Tensor(-logp[np.arange(n), y.data].mean(), backward)


class AdamW:
    def __init__(self, params, lr: float, weight_decay: float, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr, self.wd, self.betas, self.eps = lr, weight_decay, betas, eps
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            p.data *= 1 - self.lr * self.wd
            m[...] = b1 * m + (1 - b1) * p.grad
            v[...] = b2 * v + (1 - b2) * p.grad**2
            m_hat, v_hat = m / (1 - b1**self.t), v / (1 - b2**self.t)
            p.data -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.data.dtype)


class Generator:
    def manual_seed(self, seed: int) -> Generator:
        self.rng = np.random.default_rng(seed)
        return self


def randint(high: int, size: tuple[int, ...], generator: Generator) -> Tensor:
    return Tensor(generator.rng.integers(0, high, size))


def manual_seed(seed: int) -> None:
    _state["rng"] = np.random.default_rng(seed)


@contextlib.contextmanager
def no_grad():
    before, _state["grad"] = _state["grad"], False
    try:
        yield
    finally:
        _state["grad"] = before


def install(monkeypatch) -> types.ModuleType:
    """Register the stand-in as ``torch`` (and its ``nn``, ``nn.functional``, ``optim``)."""
    torch = types.ModuleType("torch")
    nn = types.ModuleType("torch.nn")
    functional = types.ModuleType("torch.nn.functional")
    optim = types.ModuleType("torch.optim")
    functional.cross_entropy = cross_entropy
    nn.Linear, nn.ReLU, nn.Sequential, nn.functional = Linear, ReLU, Sequential, functional
    optim.AdamW = AdamW
    torch.nn, torch.optim, torch.Generator = nn, optim, Generator
    torch.from_numpy, torch.randint, torch.manual_seed = Tensor, randint, manual_seed
    torch.no_grad, torch.set_num_threads = no_grad, lambda n: None
    torch.__version__ = "numpy stand-in"
    for name, module in [
        ("torch", torch),
        ("torch.nn", nn),
        ("torch.nn.functional", functional),
        ("torch.optim", optim),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    return torch
