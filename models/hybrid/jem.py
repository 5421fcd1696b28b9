"""``jem``: a Joint Energy-based Model classifier (Grathwohl et al. 2020).

"Your classifier is secretly an energy based model and you should treat it like one": the
logits ``f(x)[y]`` of an ordinary classifier define an energy-based model of the joint,

    p(x, y) ∝ exp(f(x)[y]),      p(y | x) = softmax(f(x))[y],
    p(x) ∝ exp(-E(x)),           E(x) = -logsumexp_y f(x)[y]       (nats, unnormalized).

JEM trains one network for both: the cross-entropy of ``p(y | x)`` plus the maximum-likelihood
gradient of ``log p(x)``, whose intractable normalizer enters only through samples of the model:

    grad(-log p(x)) = grad E(x) - E_{x' ~ p}[grad E(x')].

Here ``f`` is an MLP (SiLU hidden layers: a smooth energy gives useful Langevin gradients, unlike
ReLU's piecewise-constant ones) and the per-example loss of the AdamW stage is

    loss_i = CE_i + alpha * (E(x_i) - mean_j E(x'_j)) + energy_reg * (E(x_i)^2 + mean_j E(x'_j)^2),

where the ``x'_j`` (``batch_size`` of them per minibatch) are the ends of short-run stochastic
gradient Langevin dynamics chains (SGLD; Welling & Teh 2011) on ``E``:

    x_{k+1} = x_k - sgld_step_size * grad E(x_k) + sgld_noise * N(0, I),  k < sgld_steps,

started from uniform noise on ``[-init_range, init_range]^D`` in the engine's standardized units,
run under ``stop_gradient`` (the samples are treated as constants: only their energies are
differentiated). The squared-energy term is Du & Mordatch's (2019) regularizer, which keeps the
energies from drifting to large magnitudes and the training stable. Like JEM, the step size
and the noise are set separately (JEM: step 1, noise 0.01), not tied as ``noise = sqrt(2 step)``.

Simplification (documented): JEM keeps a *persistent* replay buffer of past chains (PCD) and
restarts 5 % of them from noise. The engine's ``Gradient`` stage carries only the parameters
and the optimiser state through its ``lax.scan``; a loss has no state of its own between
minibatches, so there is nowhere to keep a buffer. Every minibatch therefore starts fresh
chains from noise: the *short-run* non-persistent MCMC of Nijkamp et al. (2019, "Learning
non-convergent non-persistent short-run MCMC toward energy-based model"), whose sampler is
biased but whose learned energy still gives real data lower energy than noise.

Cost: the defaults (400 AdamW steps of 64 examples, 20 SGLD steps of 64 chains each) fit a
cell in about 0.5 s on a 2-core CPU (30 cells of ``breast_cancer`` or ``gauss_corr``: 11-15 s
of fit time after a compile of about 13 s).

Model selection: none (``needs_validation = False``, ``select_on_val = False``). The engine's
``Gradient`` stage can only select on the training loss itself, and JEM's contains a fresh
Monte Carlo contrastive term whose value measures chain noise, not classification quality.
Selecting on the deterministic validation cross-entropy (preferred) would need a stage with a
separate validation loss, which ``models/base.py`` does not offer; JEM trains for a fixed
``steps`` on the cell's training subset instead (so the whole subset is used for fitting).

Prediction: ``predict_logits(x) = f(x)``. ``sample(key, y, n)`` runs ``sample_steps`` of the same
SGLD on the class-conditional energy ``-f(x)[y]`` from noise. ``log_prior()`` is the weighted class
frequency of the training subset, set by a ``ClosedForm`` stage before training.

JEM's density is unnormalized (the partition function is unknown), so it is *not* a
``GenerativeModel``: the engine reports no ``log_lik`` for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import (
    Array,
    ClassPrior,
    ClosedForm,
    Gradient,
    Model,
    Paradigm,
    class_counts,
)


def langevin(
    energy: Callable[[Array], Array],
    x0: Array,
    key: Array,
    steps: int,
    step_size: float,
    noise: float,
) -> Array:
    """``steps`` SGLD updates ``x <- x - step_size * grad E(x) + noise * N(0, I)`` from ``x0``.

    Args:
      energy: per-example energies ``[B, D] -> [B]`` (the chains are independent, so the
        gradient of their sum is each chain's own gradient).
      x0: chain starts, ``[B, D]``.
      key: PRNG key of the injected noise.
      steps, step_size, noise: number of updates (static), step on the energy gradient, and
        standard deviation of the Gaussian noise per update.

    Returns:
      The chain ends ``[B, D]``, under ``stop_gradient``.
    """
    grad_energy = jax.grad(lambda x: energy(x).sum())

    def step(x, k):
        x = x - step_size * grad_energy(x) + noise * jax.random.normal(k, x.shape, x.dtype)
        return x, None

    x, _ = jax.lax.scan(step, jax.lax.stop_gradient(x0), jax.random.split(key, steps))
    return jax.lax.stop_gradient(x)


class JEM(ClassPrior, Model):
    """Joint energy-based model: an MLP classifier whose logits are also an energy over x.

    Hyperparameters:
      hidden: widths of the SiLU hidden layers of ``f``.
      alpha: weight of the contrastive (maximum-likelihood) term of ``log p(x)``.
      energy_reg: weight of the squared-energy regularizer (Du & Mordatch 2019).
      sgld_steps, sgld_step_size, sgld_noise: the training chains (short-run SGLD).
      sample_steps: SGLD steps of ``sample`` (longer chains than in training).
      init_range: chains start uniform on ``[-init_range, init_range]^D`` (standardized units).
      learning_rate, weight_decay, steps, batch_size: the AdamW stage (``Gradient``).
    """

    paradigm: ClassVar[Paradigm] = "hybrid"
    needs_validation: ClassVar[bool] = False

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        hidden: tuple[int, ...] = (64, 64),
        alpha: float = 1.0,
        energy_reg: float = 0.1,
        sgld_steps: int = 20,
        sgld_step_size: float = 1.0,
        sgld_noise: float = 0.01,
        sample_steps: int = 100,
        init_range: float = 3.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        steps: int = 400,
        batch_size: int = 64,
    ):
        if sgld_steps < 1 or sample_steps < 1 or steps < 1 or batch_size < 1:
            raise ValueError(
                "sgld_steps, sample_steps, steps and batch_size must be >= 1, got "
                f"{sgld_steps}, {sample_steps}, {steps}, {batch_size}"
            )
        if alpha < 0 or energy_reg < 0 or sgld_step_size < 0 or sgld_noise < 0 or init_range <= 0:
            raise ValueError(
                "alpha, energy_reg, sgld_step_size and sgld_noise must be >= 0 and init_range > 0"
            )
        self.dim = dim
        self.num_classes = num_classes
        self.alpha = alpha
        self.energy_reg = energy_reg
        self.sgld_steps = sgld_steps
        self.sgld_step_size = sgld_step_size
        self.sgld_noise = sgld_noise
        self.sample_steps = sample_steps
        self.init_range = init_range
        sizes = (dim, *hidden, num_classes)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        # Set in closed form and left alone by AdamW (a Variable, not a Param).
        self.log_class_prior = nnx.Variable(jnp.full((num_classes,), -math.log(num_classes)))
        self.plan = Gradient(
            loss="loss",
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            # One block: the validation loss (empty without a validation part) is computed once.
            eval_every=steps,
            select_on_val=False,
            stochastic=True,
        )

    def fit_plan(self):
        return (ClosedForm(), self.plan)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """The class prior from the weighted class counts of the training subset."""
        _, counts = class_counts(y, w, self.num_classes)
        self.set_class_prior(counts)

    def predict_logits(self, x: Array) -> Array:
        """The classifier's logits ``f(x)``, ``[B, C]`` (also ``log p(x, y)`` up to a constant)."""
        for layer in self.layers[:-1]:
            x = jax.nn.silu(layer(x))
        return self.layers[-1](x)

    def energy(self, x: Array) -> Array:
        """``E(x) = -logsumexp_y f(x)[y]``, ``[B]``: ``-log p(x)`` up to the unknown constant."""
        return -jax.nn.logsumexp(self.predict_logits(x), axis=-1)

    def class_energy(self, x: Array, y: int | Array) -> Array:
        """``E(x, y) = -f(x)[y]``, ``[B]``: ``-log p(x, y)`` up to the unknown constant."""
        logits = self.predict_logits(x)
        y = jnp.broadcast_to(jnp.asarray(y, jnp.int32), x.shape[:1])
        return -jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]

    def init_noise(self, key: Array, n: int) -> Array:
        """Chain starts: ``n`` points uniform on ``[-init_range, init_range]^D``, ``[n, D]``."""
        return jax.random.uniform(
            key, (n, self.dim), minval=-self.init_range, maxval=self.init_range
        )

    def loss(self, x: Array, y: Array, key: Array) -> Array:
        """Per-example JEM loss ``[B]`` (nats): cross-entropy + ``alpha`` (E(x_i) - m) +
        ``energy_reg`` (E(x_i)^2 + s), where ``m`` and ``s`` are the mean energy and mean
        squared energy of ``batch_size`` fresh short-run SGLD samples (the same for every i).

        The batch mean is the JEM objective. The number of chains is the ``batch_size``
        hyperparameter, not ``B``, so a call on many examples at once (the engine's validation
        pass over the whole pool) costs one forward pass per example plus ``batch_size`` chains.
        """
        k_init, k_chain = jax.random.split(key)
        x0 = self.init_noise(k_init, self.plan.batch_size)
        # The chains run on a copy of the network under stop_gradient: the samples are
        # constants of the loss, and no gradient is ever formed through the chain.
        graphdef, state = nnx.split(self)
        frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
        x_model = langevin(
            frozen.energy, x0, k_chain, self.sgld_steps, self.sgld_step_size, self.sgld_noise
        )
        logits = self.predict_logits(x)
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]
        e_data = -jax.nn.logsumexp(logits, axis=-1)
        e_model = self.energy(x_model)
        contrast = self.alpha * (e_data - e_model.mean())
        return ce + contrast + self.energy_reg * (e_data**2 + (e_model**2).mean())

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """``n`` approximate draws from ``p(x | y)``, ``[n, D]`` (standardized units):
        ``sample_steps`` of SGLD on ``-f(x)[y]`` from ``init_noise``."""
        k_init, k_chain = jax.random.split(key)
        return self.langevin_class(self.init_noise(k_init, n), y, k_chain, self.sample_steps)

    def langevin_class(self, x0: Array, y: int | Array, key: Array, steps: int) -> Array:
        """SGLD on the class energy ``-f(x)[y]`` from ``x0`` ``[n, D]`` for ``steps`` updates."""
        return langevin(
            lambda x: self.class_energy(x, y),
            x0,
            key,
            steps,
            self.sgld_step_size,
            self.sgld_noise,
        )
