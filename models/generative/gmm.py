"""``gmm``: a class-conditional Gaussian mixture, fitted by EM inside the grid program.

Each class c has its own mixture of ``components`` Gaussians,
``p(x | c) = sum_k pi_ck N(x; mu_ck, Sigma_ck)``, with diagonal covariances (``covariance="diag"``,
the default) or full ones (``"full"``). The engine runs EM as an ``Iterate`` stage: ``em_init``
once, then ``em_steps`` fixed ``em_step`` updates inside ``lax.scan`` (no convergence test, so
vmapped cells batch well).

- Initialisation: the class prior from weighted counts; for each class, the means at
  ``components`` distinct training examples of that class drawn with the cell's key (Gumbel
  top-k over the example weights), every covariance the class's (diagonal or full) covariance,
  equal mixture weights. A class with fewer examples than components puts its spare components
  at the class mean.
- EM step: responsibilities of each class's components for that class's examples only (weights
  ``w * 1[y = c]``), then the weighted maximum-likelihood update of weights, means and
  covariances.
- Variance floor: ``var_smoothing * max_d Var(x_d)`` (the variance of feature d over the whole
  training subset, as in ``gnb``) is added to every variance (the covariance diagonal), so
  components collapsing onto a single example keep a finite density. With the floor an EM step
  is no longer guaranteed to increase the likelihood (in the tests it still does); with
  ``var_smoothing=0`` it is the plain maximum-likelihood EM.
- Empty components (total responsibility below ``1e-8``) keep their previous means and
  covariances; their weight goes to (a floor of) ``1e-30``, so all parameters stay finite.

The likelihood is exact; ``components=1`` with ``covariance="full"`` and ``var_smoothing=0`` is
the per-class Gaussian maximum-likelihood fit (unregularized QDA), and ``components=1`` with
diagonal covariances is ``gnb`` (same ``var_smoothing``).

Cost per EM step and cell: O(N C K D) diagonal, O(N C K D^2) full (on 64-d digits with 10
classes, 30 vmapped cells: about 0.015 s diagonal, 0.5 s full per step on a 2-core CPU).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import (
    Array,
    GenerativeModel,
    Iterate,
    class_counts,
    weighted_feature_variance,
)
from gdbench.models.generative.discriminant import masked_gaussian_log_density

_LOG_2PI = math.log(2.0 * math.pi)
#: Total responsibility below which a component counts as empty and keeps its parameters.
_EMPTY = 1e-8
#: Floor of the mixture weights, so that their logarithms stay finite.
_MIN_WEIGHT = 1e-30


class GMM(GenerativeModel):
    """Class-conditional Gaussian mixture with ``components`` components per class, fitted by EM."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        components: int = 3,
        covariance: str = "diag",
        em_steps: int = 100,
        var_smoothing: float = 1e-3,
    ):
        del rngs
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        if components < 1:
            raise ValueError(f"components must be at least 1, got {components}")
        self.covariance = covariance
        self.em_steps = em_steps
        self.var_smoothing = var_smoothing
        c, k, d = num_classes, components, dim
        self.log_class_prior = nnx.Param(jnp.full((c,), -math.log(c)))
        self.log_weights = nnx.Param(jnp.full((c, k), -math.log(k)))
        self.means = nnx.Param(jnp.zeros((c, k, d)))
        if covariance == "diag":
            self.var = nnx.Param(jnp.ones((c, k, d)))
        else:
            self.chol = nnx.Param(jnp.broadcast_to(jnp.eye(d), (c, k, d, d)))

    def fit_plan(self):
        return (Iterate(init="em_init", step="em_step", steps=self.em_steps),)

    def _floor(self, x: Array, w: Array) -> Array:
        return self.var_smoothing * weighted_feature_variance(x, w).max()

    def em_init(self, x: Array, y: Array, w: Array, key: Array) -> None:
        """Class prior, and each class's components at random training examples of that class."""
        num_classes, k, dim = self.means.shape
        onehot, counts = class_counts(y, w, num_classes)  # [N, C], [C]
        self.set_class_prior(counts)
        class_mean = onehot.T @ x / jnp.maximum(counts, 1e-12)[:, None]  # [C, D]
        resid = x[:, None, :] - class_mean[None]  # [N, C, D]
        denom = jnp.maximum(counts, 1e-12)
        eps = self._floor(x, w)
        if self.covariance == "diag":
            cov = jnp.einsum("nc,ncd->cd", onehot, resid**2) / denom[:, None] + eps
        else:
            scatter = jnp.einsum("nc,ncd,nce->cde", onehot, resid, resid)
            cov = scatter / denom[:, None, None] + eps * jnp.eye(dim)
        # Gumbel top-k: k distinct examples of class c, drawn in proportion to their weights.
        gumbel = jax.random.gumbel(key, onehot.shape)
        scores = jnp.where(
            onehot > 0, jnp.log(jnp.where(onehot > 0, onehot, 1.0)) + gumbel, -jnp.inf
        )
        top, idx = jax.lax.top_k(scores.T, k)  # [C, K]
        valid = jnp.isfinite(top)[..., None]
        self.means[...] = jnp.where(valid, x[idx], class_mean[:, None, :])
        self.log_weights[...] = jnp.full((num_classes, k), -math.log(k))
        cov = jnp.broadcast_to(cov[:, None], (num_classes, k, *cov.shape[1:]))
        if self.covariance == "diag":
            self.var[...] = cov
        else:
            self.chol[...] = jnp.linalg.cholesky(cov)

    def component_log_probs(self, x: Array) -> Array:
        """``log pi_ck + log N(x; mu_ck, Sigma_ck)`` for every class and component, ``[B, C, K]``.

        Written as matrix products over all C*K components at once (as scikit-learn's
        ``GaussianMixture``): diagonal, ``sum_d (x_d^2 - 2 x_d mu_d + mu_d^2) / var_d``; full,
        ``|L^-1 (x - mu)|^2`` with ``L^-1`` applied to ``x`` and ``mu`` separately.
        """
        num_classes, k, dim = self.means.shape
        mu = self.means[...].reshape(num_classes * k, dim)
        if self.covariance == "diag":
            var = self.var[...].reshape(num_classes * k, dim)
            prec = 1.0 / var
            quad = (x**2) @ prec.T - 2.0 * x @ (mu * prec).T + (mu**2 * prec).sum(-1)
            log_n = -0.5 * (jnp.maximum(quad, 0.0) + jnp.log(var).sum(-1))
        else:
            chol = self.chol[...].reshape(num_classes * k, dim, dim)
            eye = jnp.broadcast_to(jnp.eye(dim, dtype=chol.dtype), chol.shape)
            linv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # [Q, D, D]
            z = jnp.einsum("nd,qed->nqe", x, linv) - jnp.einsum("qd,qed->qe", mu, linv)
            half_logdet = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
            log_n = -0.5 * (z**2).sum(-1) - half_logdet
        log_n = log_n - 0.5 * dim * _LOG_2PI
        return log_n.reshape(-1, num_classes, k) + self.log_weights[...][None]

    def em_step(self, x: Array, y: Array, w: Array) -> None:
        """One EM update of every class's mixture from its own weighted examples."""
        num_classes, k, dim = self.means.shape
        onehot, _ = class_counts(y, w, num_classes)  # [N, C]: w_n 1[y_n = c]
        log_joint = self.component_log_probs(x)  # [N, C, K]
        resp = jax.nn.softmax(log_joint, axis=-1) * onehot[..., None]  # weighted, [N, C, K]
        resp = resp.reshape(-1, num_classes * k)  # [N, Q]
        nk = resp.sum(0)  # [Q]
        filled = nk > _EMPTY
        safe = jnp.where(filled, nk, 1.0)[:, None]
        means = resp.T @ x / safe  # [Q, D]
        eps = self._floor(x, w)
        old_means = self.means[...].reshape(means.shape)
        self.means[...] = jnp.where(filled[:, None], means, old_means).reshape(self.means.shape)
        if self.covariance == "diag":
            # E[x^2] - mean^2 (as scikit-learn), clamped against rounding.
            var = jnp.maximum(resp.T @ (x**2) / safe - means**2, 0.0) + eps
            old = self.var[...].reshape(var.shape)
            self.var[...] = jnp.where(filled[:, None], var, old).reshape(self.var.shape)
        else:
            diff = x[:, None, :] - means[None]  # [N, Q, D]
            scatter = jnp.einsum("nq,nqd,nqe->qde", resp, diff, diff)
            chol = jnp.linalg.cholesky(scatter / safe[..., None] + eps * jnp.eye(dim))
            old = self.chol[...].reshape(chol.shape)
            self.chol[...] = jnp.where(filled[:, None, None], chol, old).reshape(self.chol.shape)
        nk = nk.reshape(num_classes, k)
        weights = nk / jnp.maximum(nk.sum(-1, keepdims=True), 1e-12)
        self.log_weights[...] = jnp.log(jnp.maximum(weights, _MIN_WEIGHT))

    def class_log_probs(self, x: Array) -> Array:
        return jax.nn.logsumexp(self.component_log_probs(x), axis=-1)

    def marginal_logits(self, x: Array, mask: Array) -> Array:
        """``log p(x_obs, y=c)``, ``[B, C]`` nats, the missing features (``mask`` 0; 1 =
        observed, ``[B, D]``) integrated out. The marginal of a mixture is the mixture of the
        components' marginals with the same weights: diagonal components drop the missing
        features' terms; full ones use the observed sub-covariance
        (``discriminant.masked_gaussian_log_density``, one Cholesky factorization per
        example and component)."""
        num_classes, k, dim = self.means.shape
        mu = self.means[...].reshape(num_classes * k, dim)
        observed = (mask > 0).astype(mu.dtype)
        if self.covariance == "diag":
            var = self.var[...].reshape(num_classes * k, dim)
            prec = 1.0 / var
            xo = jnp.where(mask > 0, x, 0.0)
            quad = (xo**2) @ prec.T - 2.0 * xo @ (mu * prec).T + observed @ (mu**2 * prec).T
            log_n = -0.5 * (jnp.maximum(quad, 0.0) + observed @ jnp.log(var).T)
            log_n = log_n - 0.5 * observed.sum(-1, keepdims=True) * _LOG_2PI
        else:
            chol = self.chol[...].reshape(num_classes * k, dim, dim)
            per_component = jax.vmap(
                masked_gaussian_log_density, in_axes=(None, None, 0, 0), out_axes=-1
            )
            log_n = per_component(x, mask, mu, chol)
        joint = log_n.reshape(-1, num_classes, k) + self.log_weights[...][None]
        return jax.nn.logsumexp(joint, axis=-1) + self.log_prior()[None, :]

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """Draw a component by its weight, then from that component's Gaussian; ``[n, D]``."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, self.log_weights[...][y], shape=(n,))
        mean = self.means[...][y][comp]  # [n, D]
        noise = jax.random.normal(k_noise, mean.shape)
        if self.covariance == "diag":
            return mean + jnp.sqrt(self.var[...][y][comp]) * noise
        chol = self.chol[...][y][comp]  # [n, D, D]
        return mean + jnp.einsum("nde,ne->nd", chol, noise)
