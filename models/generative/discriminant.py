"""Gaussian discriminant analysis: full-covariance Gaussian class conditionals.

- ``lda``: one covariance shared by all classes (linear boundary). The pooled maximum-likelihood
  covariance ``S = (1/n) sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T`` is shrunk towards a
  scaled identity, ``(1 - shrinkage) S + shrinkage (tr(S) / D) I``, which is what
  scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage)`` does.
  ``var_smoothing * max_d Var(x_d)`` is then added to the diagonal (as in ``gnb``), so the
  covariance stays positive definite when n < D.
- ``qda``: one covariance per class, the maximum-likelihood estimate ``S_c`` (scatter divided by
  ``n_c``, as scikit-learn 1.9's ``QuadraticDiscriminantAnalysis``) regularized as its
  ``reg_param``: ``(1 - reg_param) S_c + reg_param I`` (features are standardized, so I is the
  scale of the data), plus the same ``var_smoothing`` floor.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from models.base import (
    Array,
    ClosedForm,
    GenerativeModel,
    class_counts,
    weighted_feature_variance,
)

_LOG_2PI = math.log(2.0 * math.pi)


def _gaussian_log_density(x: Array, mean: Array, chol: Array) -> Array:
    """``log N(x; mean, L L^T)``: ``x [B, D]``, ``mean [D]``, lower-triangular ``chol [D, D]``."""
    z = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
    half_logdet = jnp.log(jnp.diagonal(chol)).sum()
    return -0.5 * (z**2).sum(0) - half_logdet - 0.5 * x.shape[-1] * _LOG_2PI


class _GaussianDiscriminant(GenerativeModel):
    """Shared machinery: class means, priors and one Cholesky factor per class."""

    shared_covariance: ClassVar[bool]

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs, var_smoothing: float):
        del rngs
        self.var_smoothing = var_smoothing
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))
        self.mean = nnx.Param(jnp.zeros((num_classes, dim)))
        self.chol = nnx.Param(jnp.broadcast_to(jnp.eye(dim), (num_classes, dim, dim)))

    def fit_plan(self):
        return (ClosedForm(),)

    def _covariances(self, scatter: Array, counts: Array) -> Array:
        """Per-class covariances ``[C, D, D]`` from weighted scatter matrices and class totals."""
        raise NotImplementedError

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        num_classes, dim = self.mean.shape
        onehot, counts = class_counts(y, w, num_classes)
        mean = onehot.T @ x / jnp.maximum(counts, 1e-12)[:, None]
        resid = x - mean[y]
        # Per-class weighted scatter matrices [C, D, D].
        scatter = jnp.einsum("nc,nd,ne->cde", onehot, resid, resid)
        cov = self._covariances(scatter, counts)
        eps = self.var_smoothing * weighted_feature_variance(x, w).max()
        cov = cov + eps * jnp.eye(dim)[None]
        self.mean[...] = mean
        self.chol[...] = jnp.linalg.cholesky(cov)
        self.set_class_prior(counts)

    def class_log_probs(self, x: Array) -> Array:
        per_class = jax.vmap(_gaussian_log_density, in_axes=(None, 0, 0), out_axes=-1)
        return per_class(x, self.mean[...], self.chol[...])

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        mean, chol = self.mean[...][y], self.chol[...][y]
        eps = jax.random.normal(key, (n, mean.shape[-1]))
        return mean + eps @ chol.T


class LDA(_GaussianDiscriminant):
    """Linear discriminant analysis with the pooled covariance shrunk towards a scaled identity."""

    shared_covariance: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        shrinkage: float = 0.1,
        var_smoothing: float = 1e-3,
    ):
        super().__init__(dim, num_classes, rngs=rngs, var_smoothing=var_smoothing)
        self.shrinkage = shrinkage

    def _covariances(self, scatter: Array, counts: Array) -> Array:
        pooled = scatter.sum(0) / jnp.maximum(counts.sum(), 1e-12)
        target = jnp.trace(pooled) / pooled.shape[-1] * jnp.eye(pooled.shape[-1])
        shrunk = (1.0 - self.shrinkage) * pooled + self.shrinkage * target
        return jnp.broadcast_to(shrunk, scatter.shape)


class QDA(_GaussianDiscriminant):
    """Quadratic discriminant analysis with covariances shrunk towards the identity."""

    shared_covariance: ClassVar[bool] = False

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        reg_param: float = 0.1,
        var_smoothing: float = 1e-6,
    ):
        super().__init__(dim, num_classes, rngs=rngs, var_smoothing=var_smoothing)
        self.reg_param = reg_param

    def _covariances(self, scatter: Array, counts: Array) -> Array:
        ml = scatter / jnp.maximum(counts, 1.0)[:, None, None]
        dim = scatter.shape[-1]
        return (1.0 - self.reg_param) * ml + self.reg_param * jnp.eye(dim)[None]
