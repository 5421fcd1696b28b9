"""Synthetic Gaussian tasks with a known Bayes accuracy and an exact log-density.

Every task is a two-class mixture with equal priors, ``p(x) = 1/2 N(x; mu_0, S_0) +
1/2 N(x; mu_1, S_1)`` in D = 8 dimensions. The pool (1,000 examples per class) and the test set
(2,500 per class) are drawn once with fixed NumPy seeds, so every run sees the same data.

- ``gauss_nb``: shared *diagonal* covariance. Naive Bayes' independence assumption holds; the
  Bayes rule is linear. Bayes accuracy ``Phi(Delta/2)`` with Mahalanobis distance Delta = 2
  (exact: 0.8413).
- ``gauss_corr``: shared covariance with strong correlations (eigenvalues from 0.05 to 4). The
  independence assumption is badly violated: the naive-Bayes (diagonal covariance) rule reaches only
  0.625 asymptotically, while the Bayes rule (linear, LDA/logistic regression) reaches
  ``Phi(Delta/2)`` with Delta = 2.5 (exact: 0.8944).
- ``gauss_quad``: class covariances differ (class 1 is stretched and rotated), so the Bayes
  rule is quadratic (QDA). Its Bayes accuracy has no closed form: it is estimated once by Monte
  Carlo with 4,000,000 draws (standard error below 2.5e-4), stated in the task description.

``true_log_lik`` is the mean of the exact ``log p(x)`` over the test set, in nats.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import special

from gdbench.tasks.base import Task

DIM = 8
POOL_PER_CLASS = 1000
TEST_PER_CLASS = 2500


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Two equally likely Gaussian classes."""

    means: np.ndarray  # [2, D]
    covs: np.ndarray  # [2, D, D]

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Exact ``log p(x)`` of the mixture, nats, ``[N]``."""
        per_class = np.stack(
            [
                _gaussian_log_pdf(x, m, c) + math.log(0.5)
                for m, c in zip(self.means, self.covs, strict=True)
            ],
            axis=-1,
        )
        return special.logsumexp(per_class, axis=-1)

    def bayes_predict(self, x: np.ndarray) -> np.ndarray:
        per_class = np.stack(
            [_gaussian_log_pdf(x, m, c) for m, c in zip(self.means, self.covs, strict=True)],
            axis=-1,
        )
        return per_class.argmax(-1)

    def draw(self, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        xs = [
            rng.multivariate_normal(m, c, size=per_class)
            for m, c in zip(self.means, self.covs, strict=True)
        ]
        y = np.repeat(np.arange(2), per_class)
        order = rng.permutation(len(y))
        return np.concatenate(xs)[order].astype(np.float32), y[order].astype(np.int32)

    def linear_rule_accuracy(self, w: np.ndarray, c: float) -> float:
        """Exact accuracy of the rule ``predict 1 iff w.x + c > 0`` (shared covariance only)."""
        s = math.sqrt(w @ self.covs[0] @ w)
        p1 = special.ndtr((w @ self.means[1] + c) / s)
        p0 = special.ndtr(-(w @ self.means[0] + c) / s)
        return 0.5 * (p0 + p1)


def _gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(x; mean, cov)`` of each row of ``x``, nats, through the Cholesky factor (the
    value of ``scipy.stats.multivariate_normal(mean, cov).logpdf(x)``, without importing
    ``scipy.stats``: about 1.5 s of every ``gdbench`` process that loads such a task)."""
    factor = np.linalg.cholesky(cov)
    z = np.linalg.solve(factor, (np.atleast_2d(x) - mean).T)  # [D, N]
    log_det = 2.0 * np.log(np.diagonal(factor)).sum()
    return -0.5 * (len(mean) * math.log(2 * math.pi) + log_det + (z * z).sum(axis=0))


def _shared(cov: np.ndarray, delta: np.ndarray, distance: float) -> GaussianMixture:
    """Means ``+-delta/2`` scaled to Mahalanobis distance ``distance`` under ``cov``."""
    delta = delta * distance / math.sqrt(delta @ np.linalg.solve(cov, delta))
    return GaussianMixture(np.stack([-delta / 2, delta / 2]), np.stack([cov, cov]))


def gauss_nb_mixture() -> GaussianMixture:
    cov = np.diag(np.linspace(0.5, 2.0, DIM) ** 2)
    return _shared(cov, np.sqrt(np.diag(cov)), 2.0)


def gauss_corr_mixture() -> GaussianMixture:
    rng = np.random.default_rng(1234)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    cov = q @ np.diag(np.geomspace(0.05, 4.0, DIM)) @ q.T
    delta = q @ np.array([1.0, 0, 0, 0, 0, 0, 0, 1.0])
    return _shared(cov, delta, 2.5)


def gauss_quad_mixture() -> GaussianMixture:
    rng = np.random.default_rng(4321)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    cov1 = q @ np.diag(np.geomspace(0.25, 4.0, DIM)) @ q.T
    means = np.stack([np.zeros(DIM), np.full(DIM, 0.25)])
    return GaussianMixture(means, np.stack([np.eye(DIM), cov1]))


@functools.cache
def monte_carlo_bayes_accuracy(name: str, draws: int = 4_000_000) -> tuple[float, float]:
    """Monte Carlo Bayes accuracy (estimate, standard error) of a mixture with no closed form."""
    mix = _MIXTURES[name][0]()
    hits = 0
    chunk = 500_000
    for i in range(draws // chunk):
        x, y = mix.draw(chunk // 2, seed=10_000 + i)
        hits += int((mix.bayes_predict(x) == y).sum())
    acc = hits / draws
    return acc, math.sqrt(acc * (1 - acc) / draws)


def _closed_form_bayes_accuracy(mix: GaussianMixture) -> float:
    delta = mix.means[1] - mix.means[0]
    return float(special.ndtr(0.5 * math.sqrt(delta @ np.linalg.solve(mix.covs[0], delta))))


_MIXTURES = {
    "gauss_nb": (gauss_nb_mixture, "independent features (naive Bayes holds), linear Bayes rule"),
    "gauss_corr": (gauss_corr_mixture, "strongly correlated features (naive Bayes violated)"),
    "gauss_quad": (gauss_quad_mixture, "class covariances differ, quadratic Bayes rule"),
}


def make(name: str) -> Task:
    """Build the synthetic task ``name`` (a key of ``_MIXTURES``)."""
    factory, what = _MIXTURES[name]
    mix = factory()
    x_pool, y_pool = mix.draw(POOL_PER_CLASS, seed=1)
    x_test, y_test = mix.draw(TEST_PER_CLASS, seed=2)
    if np.allclose(mix.covs[0], mix.covs[1]):
        bayes = _closed_form_bayes_accuracy(mix)
        how = "exact"
    else:
        bayes, se = monte_carlo_bayes_accuracy(name)
        how = f"Monte Carlo, 4e6 draws, s.e. {se:.1e}"
    return Task(
        name=name,
        x_pool=x_pool,
        y_pool=y_pool,
        x_test=x_test,
        y_test=y_test,
        num_classes=2,
        class_names=("0", "1"),
        feature_kind="real",
        preprocess="standardize",
        description=f"two 8-d Gaussians, {what}; Bayes accuracy {bayes:.4f} ({how})",
        source="gdbench synthetic",
        version="1",
        split=f"pool {2 * POOL_PER_CLASS} (seed 1), test {2 * TEST_PER_CLASS} (seed 2)",
        bayes_accuracy=bayes,
        true_log_lik=float(mix.log_density(x_test).mean()),
    )


def names() -> list[str]:
    return list(_MIXTURES)


def mixture(name: str) -> GaussianMixture:
    return _MIXTURES[name][0]()
