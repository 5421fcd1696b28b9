"""Naive Bayes: features independent given the class.

- ``gnb``: Gaussian naive Bayes with a variance per (class, feature), as scikit-learn's
  ``GaussianNB``.
- ``gnb_shared``: Gaussian naive Bayes whose per-feature variances are pooled across classes.
  Its decision boundary is linear: the generative counterpart of logistic regression in
  Ng & Jordan (2001).
- ``bnb``: Bernoulli naive Bayes with Laplace (add-``alpha``) smoothing, as scikit-learn's
  ``BernoulliNB``; inputs are binarized at ``binarize`` (``x > binarize``).

Variance regularization (``gnb``, ``gnb_shared``): ``var_smoothing * max_d Var(x_d)`` is added to
every variance, where ``Var(x_d)`` is the variance of feature d over the whole training subset.
This is scikit-learn's ``var_smoothing``, so ``gnb?var_smoothing=1e-9`` is ``GaussianNB()``.
gdbench's default is 1e-3 (on standardized features: a floor of about 1e-3 on each variance),
which keeps the density finite on features that are constant in small subsets.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import (
    Array,
    ClosedForm,
    FeatureKind,
    GenerativeModel,
    class_counts,
    weighted_feature_variance,
)

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianNB(GenerativeModel):
    """Gaussian naive Bayes; per-class variances unless ``shared_variance``."""

    shared_variance: ClassVar[bool] = False

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs, var_smoothing: float = 1e-3):
        del rngs
        self.var_smoothing = var_smoothing
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))
        self.mean = nnx.Param(jnp.zeros((num_classes, dim)))
        self.var = nnx.Param(jnp.ones((num_classes, dim)))

    def fit_plan(self):
        return (ClosedForm(),)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        num_classes = self.mean.shape[0]
        onehot, counts = class_counts(y, w, num_classes)
        safe = jnp.maximum(counts, 1e-12)[:, None]
        mean = onehot.T @ x / safe
        resid = x - mean[y]
        scatter = onehot.T @ (resid**2)
        if self.shared_variance:
            var = jnp.broadcast_to(scatter.sum(0) / jnp.maximum(counts.sum(), 1e-12), mean.shape)
        else:
            var = scatter / safe
        eps = self.var_smoothing * weighted_feature_variance(x, w).max()
        self.mean[...] = mean
        self.var[...] = var + eps
        self.set_class_prior(counts)

    def class_log_probs(self, x: Array) -> Array:
        mean, var = self.mean[...], self.var[...]
        sq = (x[:, None, :] - mean[None]) ** 2 / var[None]
        return -0.5 * (sq + jnp.log(var)[None] + _LOG_2PI).sum(-1)

    def marginal_logits(self, x: Array, mask: Array) -> Array:
        """``log p(x_obs, y=c)``, ``[B, C]`` nats: the missing features (``mask`` 0; 1 =
        observed, ``[B, D]``) integrated out, which for independent features drops their
        terms (missing entries of ``x`` are ignored, NaN included). All ones gives
        ``predict_logits``."""
        mean, var = self.mean[...], self.var[...]
        sq = (x[:, None, :] - mean[None]) ** 2 / var[None]
        terms = jnp.where(mask[:, None, :] > 0, sq + jnp.log(var)[None] + _LOG_2PI, 0.0)
        return -0.5 * terms.sum(-1) + self.log_prior()[None, :]

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        mean, std = self.mean[...][y], jnp.sqrt(self.var[...][y])
        return mean + std * jax.random.normal(key, (n, mean.shape[-1]))


class GaussianNBShared(GaussianNB):
    """Gaussian naive Bayes with per-feature variances shared by all classes (linear boundary)."""

    shared_variance: ClassVar[bool] = True


class BernoulliNB(GenerativeModel):
    """Bernoulli naive Bayes with add-``alpha`` (Laplace) smoothing on binarized features."""

    input_support: ClassVar[FeatureKind] = "binary"

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        alpha: float = 1.0,
        binarize: float = 0.0,
    ):
        del rngs
        self.alpha = alpha
        self.binarize = binarize
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))
        self.logit_p = nnx.Param(jnp.zeros((num_classes, dim)))

    def fit_plan(self):
        return (ClosedForm(),)

    def _binary(self, x: Array) -> Array:
        return (x > self.binarize).astype(jnp.float32)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        num_classes = self.logit_p.shape[0]
        onehot, counts = class_counts(y, w, num_classes)
        ones = onehot.T @ self._binary(x)
        p = (ones + self.alpha) / (counts[:, None] + 2.0 * self.alpha)
        self.logit_p[...] = jnp.log(p) - jnp.log1p(-p)
        self.set_class_prior(counts)

    def class_log_probs(self, x: Array) -> Array:
        logit = self.logit_p[...]
        xb = self._binary(x)
        # log p(x|c) = sum_d x_d log p + (1 - x_d) log(1 - p) = x . logit + sum_d log(1 - p)
        return xb @ logit.T + jax.nn.log_sigmoid(-logit).sum(-1)[None, :]

    def marginal_logits(self, x: Array, mask: Array) -> Array:
        """``log p(x_obs, y=c)``, ``[B, C]`` nats, the missing features (``mask`` 0; 1 =
        observed, ``[B, D]``) integrated out: their Bernoulli terms dropped."""
        logit = self.logit_p[...]
        observed = (mask > 0).astype(logit.dtype)
        xb = jnp.where(mask > 0, self._binary(x), 0.0)
        return xb @ logit.T + observed @ jax.nn.log_sigmoid(-logit).T + self.log_prior()[None, :]

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        p = jax.nn.sigmoid(self.logit_p[...][y])
        return jax.random.bernoulli(key, p, (n, p.shape[-1])).astype(jnp.float32)
