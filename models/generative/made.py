"""``made``: a class-conditional MADE (masked autoencoder for distribution estimation) for binary
data, with an exact likelihood.

MADE (Germain, Gregor, Murray & Larochelle 2015, "MADE: Masked Autoencoder for Distribution
Estimation") factorizes ``p(x | y) = prod_d p(x_d | x_<d, y)`` in the natural feature order and
computes every conditional in one pass of a masked MLP: each hidden unit ``k`` gets a degree
``m(k)`` in ``1..D-1`` (assigned deterministically, ``m(k) = k mod (D-1) + 1``), may see input
``d`` only when ``m(k) >= d`` and previous hidden units of degree ``<= m(k)``, and output ``d``
may see only hidden units with ``m(k) < d``. So logit ``d`` depends on ``x_1..x_{d-1}`` alone.
The class enters as a one-hot vector connected to every hidden unit and every output: it is not
part of ``x``, so the masks allow it. Direct input-to-output connections (strictly lower
triangular) add a logistic autoregressive model (FVSBN) underneath the hidden layers.

    log p(x | y) = sum_d [x_d log sigmoid(l_d) + (1 - x_d) log sigmoid(-l_d)],
    l_d = logit_d(x_<d, y)                                      (nats).

Inputs are binarized as ``x > binarize`` (default 0.0, as ``bnb``): raw 0/1 features stay 0/1
and standardized features are cut at their training mean. The density is over {0, 1}^D
(``input_support = "binary"``); ``sample`` draws 0/1 vectors ancestrally, D sequential steps.

Fitting: a closed-form stage sets the class prior (weighted class frequencies) and the
per-class output logits to the Laplace-smoothed feature frequencies; the output and direct
weights start at zero, so the untrained model is Bernoulli naive Bayes (``bnb``). Then the
engine's AdamW trains every parameter on the per-example negative log-likelihood ``nll``,
keeping the parameters with the best validation ``nll`` (``needs_validation``).
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gdbench.models.base import (
    Array,
    ClosedForm,
    FeatureKind,
    GenerativeModel,
    Gradient,
    class_counts,
)


@functools.cache
def made_masks(dim: int, hidden: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """0/1 connectivity masks ``[fan_in, fan_out]``: input->hidden, hidden->hidden...,
    hidden->output, and the direct input->output mask (strictly lower triangular: input ``e``
    feeds output ``d`` only when ``e < d``). Degrees are 1-based as in Germain et al."""
    inputs = np.arange(1, dim + 1)
    degrees = [inputs] + [np.arange(h) % max(dim - 1, 1) + 1 for h in hidden]
    masks = [
        (later[None, :] >= earlier[:, None]).astype(np.float32)
        for earlier, later in zip(degrees[:-1], degrees[1:], strict=True)
    ]
    masks.append((inputs[None, :] > degrees[-1][:, None]).astype(np.float32))
    masks.append((inputs[None, :] > inputs[:, None]).astype(np.float32))
    return tuple(masks)


class MADE(GenerativeModel):
    """Class-conditional MADE: masked ReLU MLP giving the Bernoulli logits of each feature.

    Hyperparameters:
      hidden: widths of the masked hidden layers (one or two, e.g. ``(128,)``, ``"128-128"``).
      binarize: threshold; the model sees ``x > binarize``.
      learning_rate, weight_decay, steps, batch_size, eval_every: the AdamW stage (``Gradient``).
    """

    input_support: ClassVar[FeatureKind] = "binary"
    likelihood_is_bound: ClassVar[bool] = False
    needs_validation: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        hidden: tuple[int, ...] = (128,),
        binarize: float = 0.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        steps: int = 400,
        batch_size: int = 64,
        eval_every: int = 25,
    ):
        self.dim, self.num_classes = dim, num_classes
        self.hidden_sizes = tuple(hidden)
        self.binarize = binarize
        sizes = (dim, *self.hidden_sizes, dim)
        zeros = nnx.initializers.zeros_init()
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
            + [nnx.Linear(sizes[-2], dim, kernel_init=zeros, rngs=rngs)]
        )
        # The class's one-hot input, connected to every hidden unit and every output.
        init = nnx.initializers.normal(1.0)
        self.class_weights = nnx.List(
            [nnx.Param(init(rngs.params(), (num_classes, b))) for b in sizes[1:-1]]
            + [nnx.Param(jnp.zeros((num_classes, dim)))]
        )
        self.direct = nnx.Param(jnp.zeros((dim, dim)))
        # A plain Variable, not a Param: set by ``estimate`` and left alone by the AdamW stage.
        self.log_class_prior = nnx.Variable(jnp.full((num_classes,), -math.log(num_classes)))
        self.plan = Gradient(
            loss="nll",
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=eval_every,
        )

    def fit_plan(self):
        return (ClosedForm(), self.plan)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """The class prior from weighted class counts, and the starting point of the network:
        per-class output logits of the Laplace-smoothed feature frequencies, so that with the
        zero-initialised output and direct weights the model starts as ``bnb`` (``alpha=1``)."""
        onehot, counts = class_counts(y, w, self.num_classes)
        self.set_class_prior(counts)
        p = (onehot.T @ self.binary(x) + 1.0) / (counts[:, None] + 2.0)
        self.class_weights[-1][...] = jnp.log(p) - jnp.log1p(-p)

    def binary(self, x: Array) -> Array:
        """The 0/1 features the model sees, ``x > binarize``."""
        return (x > self.binarize).astype(jnp.float32)

    def logits(self, xb: Array, y: Array) -> Array:
        """Bernoulli logits ``[B, D]``; logit ``d`` depends only on ``xb[:, :d]`` and ``y``.

        ``xb`` are 0/1 features (already binarized); ``y`` is ``[B]`` or a scalar class.
        """
        onehot = jax.nn.one_hot(jnp.broadcast_to(y, xb.shape[:1]), self.num_classes)
        masks = made_masks(self.dim, self.hidden_sizes)
        h = xb
        for i, (layer, mask, cw) in enumerate(
            zip(self.layers, masks, self.class_weights, strict=False)
        ):
            h = h @ (layer.kernel[...] * mask) + layer.bias[...] + onehot @ cw[...]
            if i < len(self.layers) - 1:
                h = jax.nn.relu(h)
        return h + xb @ (self.direct[...] * masks[-1])

    def log_prob(self, x: Array, y: Array) -> Array:
        """``log p(x | y)``, ``[B]`` nats, of the binarized features."""
        xb = self.binary(x)
        logits = self.logits(xb, y)
        return (xb * jax.nn.log_sigmoid(logits) + (1 - xb) * jax.nn.log_sigmoid(-logits)).sum(-1)

    def class_log_probs(self, x: Array) -> Array:
        classes = jnp.arange(self.num_classes)
        return jax.vmap(lambda c: self.log_prob(x, c), out_axes=1)(classes)

    def nll(self, x: Array, y: Array) -> Array:
        """Per-example ``-log p(x | y)``, ``[B]`` nats: the loss of the AdamW stage."""
        return -self.log_prob(x, y)

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """``n`` ancestral draws ``[n, D]`` of 0/1 features: feature ``d`` at step ``d``."""
        y = jnp.asarray(y, jnp.int32)
        keys = jax.random.split(key, self.dim)

        def step(d, x):
            p = jax.nn.sigmoid(self.logits(x, y)[:, d])
            return x.at[:, d].set(jax.random.bernoulli(keys[d], p).astype(jnp.float32))

        return jax.lax.fori_loop(0, self.dim, step, jnp.zeros((n, self.dim), jnp.float32))
