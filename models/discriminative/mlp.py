"""``mlp``: a multilayer perceptron classifier trained with AdamW on minibatches.

ReLU hidden layers (``hidden``, e.g. ``(128,)`` or ``"64-64"`` on the command line), a linear
softmax output, cross-entropy loss. The engine trains it inside ``lax.scan`` and, every
``eval_every`` steps, evaluates the loss on the validation part of the cell's training subset,
keeping the parameters with the lowest validation loss (early stopping by model selection).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Array, Gradient, Model


class OutputLinear(nnx.Linear):
    """``nnx.Linear`` with its kernel stored transposed, ``[out, in]`` (the same initial values).

    For a layer with few outputs (a classifier's last): the kernel's gradient
    ``dy^T x`` is then formed ``[out, in]``, which XLA:CPU computes 3.7x faster than the
    ``x^T dy`` of an ``[in, out]`` kernel when the cells are batched by vmap (10 seeds of a
    256-input, 10-output layer on 128 examples: 135 against 505 us); the compute MLP's 10-seed
    training step took 7-10 % less time (2-core CPU), one seed the same."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        super().__init__(in_features, out_features, rngs=rngs)
        self.kernel = nnx.Param(self.kernel[...].T)

    def __call__(self, x: Array) -> Array:
        return x @ self.kernel[...].T + self.bias[...]


class MLP(Model):
    """ReLU multilayer perceptron with validation-selected AdamW training."""

    paradigm = "discriminative"
    needs_validation = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        hidden: tuple[int, ...] = (128,),
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        steps: int = 400,
        batch_size: int = 64,
        eval_every: int = 25,
    ):
        sizes = (dim, *hidden, num_classes)
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        hidden_layers = [nnx.Linear(a, b, rngs=rngs) for a, b in pairs[:-1]]
        self.layers = nnx.List([*hidden_layers, OutputLinear(*pairs[-1], rngs=rngs)])
        self.plan = Gradient(
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=eval_every,
        )

    def fit_plan(self):
        return (self.plan,)

    def predict_logits(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)

    def loss(self, x: Array, y: Array) -> Array:
        """Per-example cross-entropy, nats."""
        logp = jax.nn.log_softmax(self.predict_logits(x))
        return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
