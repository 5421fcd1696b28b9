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

from models.base import Array, Gradient, Model


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
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
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
