"""The normalizing flow (``flow``) and MADE (``made``) checked against exact references.

- flow: the log-determinant of ``forward`` equals ``log |det J|`` of the autodiff Jacobian;
  ``inverse`` undoes ``forward``; the density integrates to one on a grid (1-d and 2-d).
- made: ``p(x | y)`` sums to one over all 2^8 binary vectors (exact enumeration); logit ``d``
  does not depend on ``x_{>=d}`` (autodiff Jacobian and flipped inputs).
- Both, fitted with the engine's ``run_plan`` on many draws from a known density, reach its
  exact mean log-density; they sample the right shapes and supports, per class; and as Bayes
  classifiers they reach the accuracy of an exact or scikit-learn reference.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

from gdbench.fit import run_plan
from gdbench.models.base import GenerativeModel
from gdbench.models.generative.flow import Flow
from gdbench.models.generative.made import MADE
from gdbench.tasks import synthetic


def _fit(model: GenerativeModel, x, y, seed: int = 0) -> GenerativeModel:
    """``model`` fitted by the engine's ``run_plan`` on all of ``(x, y)`` (no validation part),
    in one jit-compiled program as in the engine."""
    graphdef, state = nnx.split(model)
    n = x.shape[0]

    @jax.jit
    def fit(state, x, y, key):
        m = nnx.merge(graphdef, state)
        run_plan(m, x, y, jnp.ones(n), jnp.zeros(n), key)
        return nnx.state(m)

    state = fit(state, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), jax.random.key(seed))
    return nnx.merge(graphdef, state)


def _randomized(model: GenerativeModel, seed: int, scale: float) -> GenerativeModel:
    """A copy of ``model`` with every parameter drawn from N(0, scale^2): far from the
    identity-like initialisation, so that every layer of the checks below does something."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [scale * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves, strict=True)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


# --------------------------------------------------------------------------------------- flow


def _banana(n: int, seed: int, dim: int = 5, num_classes: int = 3):
    """Non-Gaussian class-dependent data: a curved, shifted Gaussian per class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.normal(size=(n, dim))
    x[:, 1:] += 0.5 * x[:, :1] ** 2 + y[:, None]
    return x.astype(np.float32), y.astype(np.int32)


BANANA_X, BANANA_Y = _banana(2000, seed=0)


@pytest.fixture(scope="module")
def flows() -> dict[str, Flow]:
    """A 5-d, 3-class flow with random parameters and one briefly trained (100 steps)."""
    model = Flow(5, 3, rngs=nnx.Rngs(0), steps=100)
    return {
        "random": _randomized(model, seed=1, scale=0.2),
        "trained": _fit(model, BANANA_X, BANANA_Y),
    }


@pytest.mark.parametrize("which", ["random", "trained"])
def test_flow_logdet_equals_the_autodiff_jacobian(flows, which: str):
    """``forward``'s log-determinant equals ``slogdet`` of ``jax.jacfwd`` of ``z(x)``, per class,
    to 1e-4 nats (float32 rounding); the Jacobian is not trivially the identity."""
    model = flows[which]
    x = jnp.asarray(_banana(20, seed=1)[0])

    @jax.jit
    def jacobians(c):
        one = lambda v: model.forward(v[None], c)[0][0]  # noqa: E731
        return jax.vmap(jax.jacfwd(one))(x), model.forward(x, c)[1]

    for c in range(3):
        jac, logdet = jacobians(jnp.asarray(c))
        sign, reference = np.linalg.slogdet(np.asarray(jac, np.float64))
        assert np.all(sign != 0)
        np.testing.assert_allclose(np.asarray(logdet), reference, rtol=0, atol=1e-4)
        assert np.abs(np.asarray(jac) - np.eye(5)).max() > 0.05


@pytest.mark.parametrize("which", ["random", "trained"])
def test_flow_inverse_undoes_forward(flows, which: str):
    """``inverse(forward(x)) == x`` and ``forward(inverse(z)) == z`` to 1e-4 (float32)."""
    model = flows[which]
    x, y = map(jnp.asarray, _banana(500, seed=2))
    z = jax.random.normal(jax.random.key(3), (500, 5))

    @jax.jit
    def round_trips():
        x_back = model.inverse(model.forward(x, y)[0], y)
        return x_back, model.forward(model.inverse(z, y), y)[0]

    x_back, z_back = round_trips()
    np.testing.assert_allclose(np.asarray(x_back), np.asarray(x), atol=1e-4)
    np.testing.assert_allclose(np.asarray(z_back), np.asarray(z), atol=1e-4)


@pytest.mark.parametrize("dim", [pytest.param(1, marks=pytest.mark.fast), 2])
def test_flow_density_integrates_to_one(dim: int):
    """The midpoint rule on [-16, 16]^dim (step 0.005 in 1-d, 0.04 in 2-d) sums exp(log p(x|c))
    of a randomly parameterised flow to 1 within 1e-3, for every class.

    The density is continuous (smooth between the ReLU kinks) and its tails are Gaussian-like
    (every coupling's log-scale is bounded); with these parameters its mass outside
    [-12, 12]^dim is below 1e-4 (measured with 10^5 samples per class and a grid out to 30), so
    the quadrature and truncation errors are far below the tolerance.
    """
    model = _randomized(Flow(dim, 3, rngs=nnx.Rngs(0), hidden=(16,)), seed=dim, scale=0.3)
    step = 0.005 if dim == 1 else 0.04
    axis = np.arange(-16.0 + step / 2, 16.0, step)
    grid = np.stack(np.meshgrid(*[axis] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
    log_p = np.asarray(jax.jit(model.class_log_probs)(jnp.asarray(grid, jnp.float32)), np.float64)
    mass = np.exp(log_p).sum(0) * step**dim
    np.testing.assert_allclose(mass, np.ones(3), rtol=0, atol=1e-3)


def _gaussian_pair():
    """Two 2-d Gaussians with strong (and opposite) correlations."""
    means = np.array([[-1.0, 0.5], [1.0, -0.5]])
    covs = np.array([[[1.0, 0.8], [0.8, 1.0]], [[0.5, -0.4], [-0.4, 0.8]]])
    return [stats.multivariate_normal(m, c) for m, c in zip(means, covs, strict=True)]


def _draw_gaussians(dists, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.concatenate([d.rvs(per_class, random_state=rng) for d in dists])
    y = np.repeat(np.arange(len(dists)), per_class)
    return x.astype(np.float32), y.astype(np.int32)


def test_flow_fitted_density_approaches_the_true_density():
    """Fitted on 10,000 draws per class of two correlated 2-d Gaussians (a family the flow
    contains: a coupling can be any triangular affine map), the mean log p(x|y) on 20,000 fresh
    draws is within 0.03 nats of the exact mean log-density (measured: 0.004; the shortfall is a
    KL divergence, >= 0 up to sampling noise of ~0.005). The flow's starting point, Gaussian
    naive Bayes, misses by at least the features' mutual information, (0.51 + 0.26) / 2 = 0.38
    nats, so the check tells a fitted flow from its initialisation. Its samples have the
    classes' means and covariances (5,000 draws per class: standard errors <= 0.02)."""
    dists = _gaussian_pair()
    x, y = _draw_gaussians(dists, 10_000, seed=0)
    x_new, y_new = _draw_gaussians(dists, 10_000, seed=1)
    model = _fit(Flow(2, 2, rngs=nnx.Rngs(0), steps=800, batch_size=256), x, y)
    fitted = np.asarray(model.log_prob(jnp.asarray(x_new), jnp.asarray(y_new)), np.float64)
    exact = np.where(y_new == 0, dists[0].logpdf(x_new), dists[1].logpdf(x_new))
    assert -0.01 <= exact.mean() - fitted.mean() <= 0.03, (fitted.mean(), exact.mean())

    for c, d in enumerate(dists):
        draws = np.asarray(model.sample(jax.random.key(c), c, 5000), np.float64)
        assert draws.shape == (5000, 2) and np.isfinite(draws).all()
        np.testing.assert_allclose(draws.mean(0), d.mean, atol=0.1)
        np.testing.assert_allclose(np.cov(draws.T), d.cov, atol=0.1)


def test_flow_classifies_by_bayes_rule():
    """On ``gauss_quad`` (8-d, class covariances differ, Bayes accuracy 0.808) the flow with its
    default hyperparameters, fitted on the standardized 2,000-example pool, is within 0.02 of
    scikit-learn's QDA (the Bayes-optimal family) fitted on the same pool, on the same 5,000
    test examples (measured: 0.801 and 0.810)."""
    mixture = synthetic.mixture("gauss_quad")
    x_pool, y_pool = mixture.draw(synthetic.POOL_PER_CLASS, seed=1)  # the task's pool and test
    x_test, y_test = mixture.draw(synthetic.TEST_PER_CLASS, seed=2)
    mean, std = x_pool.mean(0), x_pool.std(0)
    model = _fit(Flow(8, 2, rngs=nnx.Rngs(0)), (x_pool - mean) / std, y_pool)
    logits = jax.jit(model.predict_logits)(jnp.asarray((x_test - mean) / std))
    accuracy = (np.asarray(logits).argmax(-1) == y_test).mean()
    qda = QuadraticDiscriminantAnalysis().fit(x_pool, y_pool)
    reference = qda.score(x_test, y_test)
    assert accuracy >= reference - 0.02, (accuracy, reference)


# --------------------------------------------------------------------------------------- made


def _binary_vectors(dim: int) -> np.ndarray:
    """Every vector of {0,1}^dim, ``[2^dim, dim]``, in lexicographic order (x_1 slowest)."""
    return np.asarray(list(itertools.product([0.0, 1.0], repeat=dim)), np.float32)


class _Chain:
    """A Markov chain of binary features per class: ``x_1 ~ B(p0_c)``,
    ``x_d | x_{d-1} ~ B(q_c[x_{d-1}])``: tree-structured, not factorized, exact log p."""

    def __init__(self, dim: int, seed: int):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.p0 = rng.uniform(0.2, 0.8, size=2)
        self.q = rng.uniform(0.05, 0.95, size=(2, dim - 1, 2))  # [class, d, x_{d-1}]

    def draw(self, per_class: int, seed: int):
        rng = np.random.default_rng(seed)
        y = np.repeat([0, 1], per_class)
        x = np.zeros((len(y), self.dim), np.float32)
        x[:, 0] = rng.uniform(size=len(y)) < self.p0[y]
        for d in range(1, self.dim):
            p = self.q[y, d - 1, x[:, d - 1].astype(int)]
            x[:, d] = rng.uniform(size=len(y)) < p
        return x, y.astype(np.int32)

    def log_prob(self, x: np.ndarray, c: int) -> np.ndarray:
        """Exact ``log p(x | y=c)``, nats."""
        xi = x.astype(int)
        out = np.log(np.where(xi[:, 0] == 1, self.p0[c], 1 - self.p0[c]))
        for d in range(1, self.dim):
            q = self.q[c, d - 1, xi[:, d - 1]]
            out += np.log(np.where(xi[:, d] == 1, q, 1 - q))
        return out


CHAIN_X, CHAIN_Y = _Chain(8, seed=0).draw(1000, seed=1)
CHAIN_Y = np.where(np.arange(len(CHAIN_Y)) % 7 == 0, 2, CHAIN_Y).astype(np.int32)  # 3 classes


@pytest.fixture(scope="module")
def made_models() -> dict[str, MADE]:
    """8-d, 3-class MADEs with random parameters (one and two hidden layers) and one briefly
    trained (one hidden layer, as the default; 100 steps)."""
    model = MADE(8, 3, rngs=nnx.Rngs(0), hidden=(32,), steps=100)
    return {
        "random 32": _randomized(model, seed=2, scale=1.0),
        "random 32-16": _randomized(MADE(8, 3, rngs=nnx.Rngs(0), hidden=(32, 16)), 2, 1.0),
        "trained 32": _fit(model, CHAIN_X, CHAIN_Y),
    }


MADE_CASES = ["random 32", "random 32-16", "trained 32"]


@pytest.mark.parametrize("which", MADE_CASES)
def test_made_sums_to_one_over_all_binary_vectors(made_models, which: str):
    """Exact enumeration of {0,1}^8: sum_x p(x|c) = 1 per class to 1e-5 (float32), and the
    joint p(x, c) sums to one."""
    model = made_models[which]
    every = jnp.asarray(_binary_vectors(8))
    log_p = np.asarray(model.class_log_probs(every), np.float64)
    np.testing.assert_allclose(np.exp(log_p).sum(0), np.ones(3), rtol=0, atol=1e-5)
    joint = np.exp(np.asarray(model.predict_logits(every), np.float64))
    assert abs(joint.sum() - 1.0) <= 1e-5
    assert np.ptp(log_p) > 1.0  # not a uniform distribution


@pytest.mark.parametrize("which", MADE_CASES)
def test_made_is_autoregressive(made_models, which: str):
    """d logit_d / d x_e is exactly zero for e >= d (autodiff Jacobian: zero on and above the
    diagonal, nonzero below it), and flipping any x_{>=d} leaves logit_d unchanged."""
    model = made_models[which]
    every = _binary_vectors(8)
    for c in range(3):
        jac = np.asarray(jax.jacfwd(lambda v, c=c: model.logits(v[None], c)[0])(every[77]))
        assert np.all(np.triu(jac) == 0.0)
        assert np.abs(np.tril(jac, -1)).max() > 1e-3
        logits = np.asarray(model.logits(jnp.asarray(every), c))
        for d in range(8):
            # Rows that agree on x_{<d} share logit d: blocks of 2^(8-d) consecutive rows.
            blocks = logits[:, d].reshape(2**d, 2 ** (8 - d))
            assert np.all(blocks == blocks[:, :1]), (c, d)


def test_made_fitted_density_approaches_the_true_density():
    """Fitted on 10,000 draws per class of a 10-d binary Markov chain (a family MADE contains:
    logit d is linear in x_{d-1} through the direct connections), the mean log p(x|y) on 20,000
    fresh draws is within 0.03 nats of the exact one (measured: 0.012), whose mean matches the
    exact conditional entropy -H(X|Y) (enumerating {0,1}^10) to sampling error. Bernoulli naive
    Bayes (fitted frequencies) misses by more than 0.1 nats.

    Samples: 0/1, with the fitted model's own feature frequencies (from enumeration) within
    5 standard errors, 5,000 draws per class."""
    chain = _Chain(10, seed=3)
    x, y = chain.draw(10_000, seed=4)
    x_new, y_new = chain.draw(10_000, seed=5)
    model = _fit(MADE(10, 2, rngs=nnx.Rngs(0), steps=1500, batch_size=256), x, y)
    fitted = np.asarray(model.log_prob(jnp.asarray(x_new), jnp.asarray(y_new)), np.float64)
    exact = np.where(y_new == 0, chain.log_prob(x_new, 0), chain.log_prob(x_new, 1))
    assert -0.01 <= exact.mean() - fitted.mean() <= 0.03, (fitted.mean(), exact.mean())

    every = _binary_vectors(10)
    exact_p = [np.exp(chain.log_prob(every, c)) for c in (0, 1)]
    neg_entropy = np.mean([(p * np.log(p)).sum() for p in exact_p])  # equal class priors
    assert abs(exact.mean() - neg_entropy) <= 0.05  # standard error about 0.015 nats
    naive = np.mean(
        [
            stats.bernoulli(x[y == c].mean(0)).logpmf(x_new[y_new == c]).sum(-1).mean()
            for c in (0, 1)
        ]
    )
    assert naive < exact.mean() - 0.1

    model_p = np.exp(np.asarray(model.class_log_probs(jnp.asarray(every)), np.float64))
    for c in (0, 1):
        draws = np.asarray(model.sample(jax.random.key(c), c, 5000))
        assert draws.shape == (5000, 10) and set(np.unique(draws)) <= {0.0, 1.0}
        freq = model_p[:, c] @ every
        se = np.sqrt(freq * (1 - freq) / 5000)
        assert np.all(np.abs(draws.mean(0) - freq) <= 5 * se + 1e-6), (draws.mean(0), freq)


def test_made_classifies_by_bayes_rule():
    """Two 12-d binary chains, 1,000 training draws per class, default hyperparameters: test
    accuracy on 20,000 draws within 0.02 of the Bayes rule's on the same draws (exact log p)."""
    chain = _Chain(12, seed=6)
    x, y = chain.draw(1000, seed=7)
    x_test, y_test = chain.draw(10_000, seed=8)
    model = _fit(MADE(12, 2, rngs=nnx.Rngs(0)), x, y)
    predicted = np.asarray(model.predict_logits(jnp.asarray(x_test))).argmax(-1)
    bayes = np.stack([chain.log_prob(x_test, c) for c in (0, 1)], -1).argmax(-1)
    accuracy, reference = (predicted == y_test).mean(), (bayes == y_test).mean()
    assert accuracy >= reference - 0.02, (accuracy, reference)


def test_made_binarizes_its_input(made_models):
    """The model sees ``x > binarize`` (default 0): inputs on the same side of the threshold
    as 0/1 data (standardized-like values) give the same log-probabilities."""
    model = made_models["trained 32"]
    xb = jnp.asarray(_binary_vectors(8))
    shifted = xb * 3.0 - 1.0  # 1 -> 2, 0 -> -1
    np.testing.assert_array_equal(model.class_log_probs(xb), model.class_log_probs(shifted))


# --------------------------------------------------------------------------------- both


def _trained(name: str, flows, made_models) -> tuple[GenerativeModel, np.ndarray, np.ndarray]:
    if name == "flow":
        return flows["trained"], BANANA_X, BANANA_Y
    return made_models["trained 32"], CHAIN_X, CHAIN_Y


@pytest.mark.parametrize("name", ["flow", "made"])
def test_sample_with_a_traced_class_under_jit_and_vmap(flows, made_models, name: str):
    """``sample(key, y, n)`` with ``y`` a traced int32 scalar, as the engine calls it under
    ``vmap`` over classes: ``[C, n, D]``, finite, 0/1 for MADE; the samples' class means differ
    as the data's do (same sign wherever the data's differ by more than 0.2)."""
    model, x, y = _trained(name, flows, made_models)
    graphdef, state = nnx.split(model)

    @jax.jit
    def draw(state, key):
        m = nnx.merge(graphdef, state)
        return jax.vmap(lambda c: m.sample(jax.random.fold_in(key, c), c, 2000))(jnp.arange(3))

    draws = np.asarray(draw(state, jax.random.key(0)))
    assert draws.shape == (3, 2000, x.shape[1]) and np.isfinite(draws).all()
    if name == "made":
        assert set(np.unique(draws)) <= {0.0, 1.0}
    data_means = np.stack([x[y == c].mean(0) for c in range(3)])
    sample_means = draws.mean(1)
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        differ = np.abs(data_means[a] - data_means[b]) > 0.2
        assert differ.any()
        data_sign = np.sign(data_means[a] - data_means[b])[differ]
        assert np.all(np.sign(sample_means[a] - sample_means[b])[differ] == data_sign)


@pytest.mark.parametrize("name", ["flow", "made"])
def test_declared_properties_and_fitted_prior(flows, made_models, name: str):
    """Exact likelihoods on the right support, with a validation part for model selection; the
    fitted prior is the class frequencies (the AdamW stage leaves it alone); ``log_marginal``
    is the logsumexp of the joint; ``nll`` is ``-log_prob``."""
    model, x, y = _trained(name, flows, made_models)
    assert model.likelihood_is_bound is False and model.needs_validation
    assert model.input_support == ("real" if name == "flow" else "binary")
    np.testing.assert_allclose(
        np.exp(np.asarray(model.log_prior())), np.bincount(y) / len(y), rtol=1e-6
    )
    xj, yj = jnp.asarray(x[:200]), jnp.asarray(y[:200])

    @jax.jit
    def evaluate():
        return (model.log_marginal(xj), model.predict_logits(xj), model.nll(xj, yj)), (
            model.log_prob(xj, yj)
        )

    (log_marginal, joint, nll), log_prob = evaluate()
    np.testing.assert_allclose(
        np.asarray(log_marginal),
        special.logsumexp(np.asarray(joint, np.float64), axis=-1),
        rtol=1e-5,
        atol=1e-4,
    )
    np.testing.assert_array_equal(np.asarray(nll), -np.asarray(log_prob))
    assert np.isfinite(np.asarray(nll)).all()
