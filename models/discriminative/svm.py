"""``linsvm``: linear support vector machine, with Platt-scaled probabilities.

Training minimizes the squared hinge loss with an L2 penalty, one-vs-rest for more than two
classes, as scikit-learn's ``LinearSVC`` (``loss="squared_hinge"``):
``sum_i w_i sum_k max(0, 1 - t_ik f_k(x_i))^2 + ||W||^2 / (2C)`` with ``t_ik = +1`` for the true
class and ``-1`` otherwise; the intercept is not penalized. The squared hinge is differentiable,
so the engine's fixed-step Newton solver fits it (as LIBLINEAR's primal solver does).

An SVM gives scores, not probabilities. For the likelihood metrics (NLL, ECE, Brier) the scores
are Platt-scaled on the validation part of each cell's training subset (never on test data):
``p(y|x) = softmax(a f(x) + b)`` (for two classes, ``sigmoid(a f(x) + b)``: Platt, 1999), with a
Gaussian prior ``N(1, 1)`` on the slope ``a`` and ``N(0, 1)`` on the intercepts ``b`` that keeps
the fit stable on validation parts of a few examples. Accuracy is computed from the same
calibrated probabilities, as for every model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Array, Model, Newton
from gdbench.models.discriminative.logistic import (
    as_hyperparameter,
    binary_aware_logits,
    check_newton_options,
)


class PlattParam(nnx.Variable):
    """Calibration parameters fitted after the SVM itself, on the validation split."""


class LinearSVM(Model):
    """Squared-hinge linear SVM (one-vs-rest) with Platt scaling on a validation split."""

    paradigm = "discriminative"
    traced_hyperparameters = ("C",)
    needs_validation = True
    calibration = "platt(validation split)"

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        C: float = 1.0,
        newton_steps: int = 25,
        newton_tol: float = 0.0,
    ):
        del rngs
        self.num_classes = num_classes
        self.C = as_hyperparameter(C)
        self.newton_steps = newton_steps
        self.newton_tol = float(newton_tol)
        check_newton_options("linsvm", self.C, self.newton_tol)
        outputs = 1 if num_classes == 2 else num_classes
        self.w = nnx.Param(jnp.zeros((dim, outputs)))
        self.b = nnx.Param(jnp.zeros((outputs,)))
        self.platt_a = PlattParam(jnp.ones(()))
        self.platt_b = PlattParam(jnp.zeros((outputs,)))

    def fit_plan(self):
        return (
            Newton(
                wrt=nnx.Param,
                loss="loss",
                penalty="penalty",
                steps=self.newton_steps,
                tol=self.newton_tol,
                linear_scores=("w", "b"),
                separable_outputs=True,  # one-vs-rest
            ),
            Newton(
                wrt=PlattParam,
                loss="calibration_loss",
                penalty="calibration_penalty",
                split="val",
                steps=15,
            ),
        )

    def decision_function(self, x: Array) -> Array:
        """Raw SVM scores ``[B, 1]`` (two classes) or ``[B, C]`` (one-vs-rest)."""
        return x @ self.w[...] + self.b[...]

    def predict_logits(self, x: Array) -> Array:
        scaled = self.platt_a[...] * self.decision_function(x) + self.platt_b[...]
        return binary_aware_logits(scaled, self.num_classes)

    def loss(self, x: Array, y: Array) -> Array:
        """Per-example squared hinge loss summed over the one-vs-rest problems."""
        return self.score_loss(self.decision_function(x), y)

    def score_loss(self, scores: Array, y: Array) -> Array:
        """Squared hinge loss from raw scores ``[B, K]``."""
        if self.num_classes == 2:
            targets = (2.0 * y - 1.0)[:, None]
        else:
            targets = 2.0 * jax.nn.one_hot(y, self.num_classes) - 1.0
        return (jnp.maximum(0.0, 1.0 - targets * scores) ** 2).sum(-1)

    def penalty(self) -> Array:
        return 0.5 * jnp.sum(self.w[...] ** 2) / self.C

    def calibration_loss(self, x: Array, y: Array) -> Array:
        """Per-example negative log-likelihood of the Platt-scaled probabilities, nats."""
        logp = jax.nn.log_softmax(self.predict_logits(x))
        return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]

    def calibration_penalty(self) -> Array:
        return 0.5 * ((self.platt_a[...] - 1.0) ** 2 + jnp.sum(self.platt_b[...] ** 2))
