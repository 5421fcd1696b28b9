"""Generative models as densities, checked where the true density is known.

- Fitted on many draws from a ``gdbench.tasks.synthetic`` mixture that their family contains, their
mean
  ``log p(x)`` on fresh draws approaches the mixture's exact mean log-density.
- Their densities equal scipy's with the fitted parameters; Bernoulli naive Bayes sums to one
  over every binary vector (exact enumeration).
- ``sample`` draws from the fitted distribution (moments of 50,000 draws).
- The engine's ``log_lik`` is reported in the task's original units (change of variables through
  the per-cell standardization): it approaches the task's exact ``true_log_lik``, and equals the
  density of the same model fitted on unstandardized data where the estimator is equivariant.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from gdbench import models, plan, tasks
from gdbench.engine import run_grid
from gdbench.fit import run_plan
from gdbench.tasks import synthetic

#: Draws per class for fitting and for evaluation in the consistency test.
PER_CLASS = 10_000


def _fit(spec: str, x: np.ndarray, y: np.ndarray, num_classes: int):
    """Our model fitted by the engine's ``run_plan`` on all of ``(x, y)``."""
    model = models.get(spec).build(x.shape[1], num_classes, nnx.Rngs(0))
    n = x.shape[0]
    run_plan(
        model,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(y, jnp.int32),
        jnp.ones(n, jnp.float32),
        jnp.zeros(n, jnp.float32),
        jax.random.key(0),
    )
    return model


# (spec, mixture). The unregularized estimators are the maximum-likelihood fits of a family
# that contains the mixture; gnb keeps its default var_smoothing=1e-3 (a variance floor of
# ~4e-3 against true variances >= 0.25, which costs ~1e-4 nats).
CONSISTENT = [
    ("gnb", "gauss_nb"),
    ("gnb_shared", "gauss_nb"),
    ("lda?shrinkage=0&var_smoothing=0", "gauss_corr"),
    ("qda?reg_param=0&var_smoothing=0", "gauss_quad"),
]


@pytest.mark.parametrize("spec,mixture", CONSISTENT)
def test_fitted_density_approaches_the_true_density(spec: str, mixture: str):
    """Mean log p(x) on fresh draws within 0.01 nats of the exact mean log-density.

    The expected shortfall of a maximum-likelihood fit with k parameters from n draws is the
    expected KL divergence, about k / (2n): at most 89 / 40,000 = 0.0022 nats (qda: two means,
    two covariances, one prior), with a sampling spread of about 0.002 nats; 0.01 nats bounds it
    with a wide margin, and a model of the wrong family misses by far more (next test).
    """
    mix = synthetic.mixture(mixture)
    x, y = mix.draw(PER_CLASS, seed=11)
    x_new, _ = mix.draw(PER_CLASS, seed=12)
    model = _fit(spec, x, y, 2)
    fitted = float(np.asarray(model.log_marginal(jnp.asarray(x_new)), np.float64).mean())
    exact = float(mix.log_density(x_new).mean())
    assert abs(fitted - exact) <= 0.01, (fitted, exact)


def test_a_misspecified_family_misses_the_true_density():
    """The check above discriminates: naive Bayes on correlated features is far off."""
    mix = synthetic.mixture("gauss_corr")
    x, y = mix.draw(PER_CLASS, seed=11)
    x_new, _ = mix.draw(PER_CLASS, seed=12)
    model = _fit("gnb", x, y, 2)
    fitted = float(np.asarray(model.log_marginal(jnp.asarray(x_new)), np.float64).mean())
    assert fitted < mix.log_density(x_new).mean() - 0.1


def _gaussian_components(model) -> list:
    """scipy distributions of p(x | c) from a fitted Gaussian model's parameters."""
    mean = np.asarray(model.mean[...], np.float64)
    if hasattr(model, "var"):
        covs = [np.diag(v) for v in np.asarray(model.var[...], np.float64)]
    else:
        chol = np.asarray(model.chol[...], np.float64)
        covs = [lc @ lc.T for lc in chol]
    return [stats.multivariate_normal(m, c) for m, c in zip(mean, covs, strict=True)]


class _Bernoulli:
    """A product of Bernoulli distributions, ``logpdf`` summed over features."""

    def __init__(self, p: np.ndarray):
        self.p = p

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        return stats.bernoulli(self.p).logpmf(x).sum(-1)


def _bernoulli_components(model) -> list:
    p = special.expit(np.asarray(model.logit_p[...], np.float64))
    return [_Bernoulli(pc) for pc in p]


# (spec, task, parameters -> per-class scipy distributions). Gaussian models are fitted on the
# raw features of a synthetic task, bnb on the 0/1 pixels of digits_bin.
DENSITY_MODELS = [
    ("gnb", "gauss_quad", _gaussian_components),
    ("gnb_shared", "gauss_quad", _gaussian_components),
    ("lda", "gauss_quad", _gaussian_components),
    ("qda", "gauss_quad", _gaussian_components),
    ("bnb", "digits_bin", _bernoulli_components),
]


@pytest.mark.parametrize("spec,task_name,components", DENSITY_MODELS)
def test_densities_match_scipy_with_fitted_parameters(spec, task_name, components):
    """class_log_probs, log_prob, log_prior, predict_logits and log_marginal against scipy."""
    task = tasks.load(task_name)
    model = _fit(spec, task.x_pool, task.y_pool, task.num_classes)
    x = task.x_test[:500]
    x64 = x.astype(np.float64)
    expected = np.stack([d.logpdf(x64) for d in components(model)], axis=-1)
    log_prior = np.log(np.bincount(task.y_pool) / len(task.y_pool))
    tol = {"rtol": 1e-5, "atol": 1e-4}  # float32 evaluation of log-densities of 10-100 nats

    xj = jnp.asarray(x)
    np.testing.assert_allclose(np.asarray(model.class_log_probs(xj)), expected, **tol)
    np.testing.assert_allclose(np.asarray(model.log_prior()), log_prior, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.predict_logits(xj)), expected + log_prior, **tol)
    log_marginal = np.asarray(model.log_marginal(xj))
    np.testing.assert_allclose(
        log_marginal, special.logsumexp(expected + log_prior, axis=-1), **tol
    )
    np.testing.assert_allclose(
        log_marginal,
        special.logsumexp(np.asarray(model.predict_logits(xj), np.float64), axis=-1),
        rtol=1e-6,
        atol=1e-5,
    )
    y = np.arange(len(x)) % task.num_classes
    np.testing.assert_allclose(
        np.asarray(model.log_prob(xj, jnp.asarray(y))), expected[np.arange(len(x)), y], **tol
    )


@pytest.mark.parametrize("alpha", [1.0, 0.5])
@pytest.mark.fast
def test_bernoulli_nb_sums_to_one_over_all_binary_vectors(alpha: float):
    """Exact enumeration of {0,1}^6: sum_x p(x|c) = 1 per class and sum_{x,c} p(x,c) = 1."""
    dim, num_classes = 6, 3
    rng = np.random.default_rng(0)
    y = rng.integers(0, num_classes, size=90)
    p_true = rng.uniform(0.05, 0.95, size=(num_classes, dim))
    x = (rng.uniform(size=(90, dim)) < p_true[y]).astype(np.float32)
    model = _fit(f"bnb?alpha={alpha}", x, y, num_classes)

    every = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=dim)), jnp.float32)
    assert every.shape == (2**dim, dim)
    per_class = np.exp(np.asarray(model.class_log_probs(every), np.float64)).sum(0)
    np.testing.assert_allclose(per_class, np.ones(num_classes), rtol=0, atol=1e-5)
    joint = np.exp(np.asarray(model.predict_logits(every), np.float64)).sum()
    assert abs(joint - 1.0) <= 1e-5
    marginal = np.exp(np.asarray(model.log_marginal(every), np.float64)).sum()
    assert abs(marginal - 1.0) <= 1e-5


SAMPLE_DRAWS = 50_000
#: Moments of the draws must lie within this many standard errors of the fitted ones.
SAMPLE_SE = 5.0


def _fitted_mean_cov(model, c: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(model.mean[...], np.float64)[c]
    if hasattr(model, "var"):
        return mean, np.diag(np.asarray(model.var[...], np.float64)[c])
    chol = np.asarray(model.chol[...], np.float64)[c]
    return mean, chol @ chol.T


@pytest.mark.parametrize("spec", ["gnb", "gnb_shared", "lda", "qda"])
def test_gaussian_samples_have_the_fitted_moments(spec: str):
    """Sample mean and covariance of 50k draws within 5 standard errors of the fitted ones.

    Standard errors of a Gaussian sample: ``sqrt(S_dd / n)`` for means and
    ``sqrt((S_ii S_jj + S_ij^2) / n)`` for covariance entries.
    """
    task = tasks.load("gauss_quad")
    model = _fit(spec, task.x_pool, task.y_pool, task.num_classes)
    for c in range(task.num_classes):
        draws = model.sample(jax.random.key(c), c, SAMPLE_DRAWS)
        assert draws.shape == (SAMPLE_DRAWS, task.dim)
        draws = np.asarray(draws, np.float64)
        assert np.isfinite(draws).all()
        mean, cov = _fitted_mean_cov(model, c)
        n = SAMPLE_DRAWS
        var = np.diag(cov)
        assert np.all(np.abs(draws.mean(0) - mean) <= SAMPLE_SE * np.sqrt(var / n))
        se_cov = np.sqrt((np.outer(var, var) + cov**2) / n)
        assert np.all(np.abs(np.cov(draws.T, bias=True) - cov) <= SAMPLE_SE * se_cov)


def test_bernoulli_samples_have_the_fitted_probabilities():
    task = tasks.load("digits_bin")
    model = _fit("bnb", task.x_pool, task.y_pool, task.num_classes)
    p = special.expit(np.asarray(model.logit_p[...], np.float64))
    for c in (0, 7):
        draws = np.asarray(model.sample(jax.random.key(c), c, SAMPLE_DRAWS))
        assert draws.shape == (SAMPLE_DRAWS, task.dim)
        assert set(np.unique(draws)) <= {0.0, 1.0}
        se = np.sqrt(p[c] * (1 - p[c]) / SAMPLE_DRAWS)
        assert np.all(np.abs(draws.mean(0) - p[c]) <= SAMPLE_SE * se)


def test_samples_are_reproducible_from_the_key():
    task = tasks.load("gauss_quad")
    model = _fit("qda", task.x_pool, task.y_pool, task.num_classes)
    a = np.asarray(model.sample(jax.random.key(3), 1, 10))
    b = np.asarray(model.sample(jax.random.key(3), 1, 10))
    c = np.asarray(model.sample(jax.random.key(4), 1, 10))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# (spec, task, k): the maximum-likelihood fits of the family containing each task's mixture,
# with k free parameters (2 means, covariance parameters, 1 prior).
ENGINE_DENSITY = [
    ("gnb_shared?var_smoothing=0", "gauss_nb", 2 * 8 + 8 + 1),
    ("lda?shrinkage=0&var_smoothing=0", "gauss_corr", 2 * 8 + 36 + 1),
    ("qda?reg_param=0&var_smoothing=0", "gauss_quad", 2 * 8 + 2 * 36 + 1),
]
#: nats; see test_engine_log_lik_approaches_the_exact_log_lik.
ENGINE_LOG_LIK_TOL = 0.03


@pytest.mark.parametrize("spec,task_name,k", ENGINE_DENSITY)
def test_engine_log_lik_approaches_the_exact_log_lik(spec: str, task_name: str, k: int):
    """The engine's log_lik (original units) against the task's exact mean log-density.

    Fitted on the whole pool (n = 2,000), a maximum-likelihood fit falls short of the truth by
    the expected KL divergence k / (2n) (0.006, 0.013 and 0.022 nats here) with a spread of
    about sqrt(k / 2) / n from the fit plus about 0.003 from the 5,000 test points; 0.03 nats
    covers that, and is ten times smaller than the log-Jacobian of the standardization (checked
    below), so a log_lik left in standardized units would fail.
    """
    task = tasks.load(task_name)
    rows, _ = run_grid(task, models.get(spec), (task.pool_size,), (0,))
    (row,) = rows
    assert row["status"] == "ok"
    assert row["true_log_lik"] == pytest.approx(task.true_log_lik)
    mix = synthetic.mixture(task_name)
    assert task.true_log_lik == pytest.approx(mix.log_density(task.x_test).mean(), abs=1e-9)

    log_jacobian = np.log(task.x_pool.astype(np.float64).std(0)).sum()
    assert abs(log_jacobian) > 10 * ENGINE_LOG_LIK_TOL
    assert abs(row["log_lik"] - task.true_log_lik) <= ENGINE_LOG_LIK_TOL
    assert row["log_lik"] - task.true_log_lik <= 3 * k / (2 * task.pool_size)
    assert row["bits_per_dim"] == pytest.approx(-row["log_lik"] / (task.dim * math.log(2.0)))


# Estimators that commute with per-feature affine maps (no regularization towards a fixed
# scale), so the density of the standardized fit, carried back to the original units, is the
# density of a fit on the original units; bnb on binary data is not standardized at all.
EQUIVARIANT = [
    ("gnb?var_smoothing=0", "gauss_nb"),
    ("gnb_shared?var_smoothing=0", "gauss_corr"),
    ("lda?shrinkage=0&var_smoothing=0", "gauss_corr"),
    ("qda?reg_param=0&var_smoothing=0", "gauss_quad"),
    ("bnb", "digits_bin"),
]


@pytest.mark.parametrize("spec,task_name", EQUIVARIANT)
def test_engine_log_lik_equals_a_fit_in_original_units(spec: str, task_name: str):
    """For each cell, engine log_lik == mean log p(x) of the model fitted on raw features."""
    task = tasks.load(task_name)
    sizes, seeds = (40, task.pool_size), (0, 1)
    spec_ = models.get(spec)
    rows, _ = run_grid(task, spec_, sizes, seeds)
    cells = plan.make_cells(task.y_pool, task.num_classes, sizes, seeds, validation=False)
    for row, w in zip(rows, cells.w_train, strict=True):
        keep = w > 0
        model = _fit(spec, task.x_pool[keep], task.y_pool[keep], task.num_classes)
        raw = float(np.asarray(model.log_marginal(jnp.asarray(task.x_test)), np.float64).mean())
        assert row["log_lik"] == pytest.approx(raw, rel=1e-5), (row["n_train"], row["seed"])
