"""The hybrid models: ``hybrid`` (blended generative/discriminative objective) and ``jem``.

- ``hybrid?lam=1`` is the closed-form generative MLE (NumPy class means, pooled variances and
  class frequencies; ``gnb_shared``'s logits), and the blended loss at ``lam = 1`` has zero
  gradient there.
- ``hybrid?lam=0`` is an unregularized logistic regression: its training conditional NLL
  reaches scikit-learn's optimum and its test accuracy matches scikit-learn's.
- The ``lam`` endpoints on ``gauss_corr`` (naive Bayes assumption badly violated): the
  discriminative end wins on accuracy and conditional NLL, the generative end on log p(x); on
  the training subset the two losses move monotonically with ``lam`` (exchange argument for
  minimisers of ``lam * A + (1 - lam) * B``).
- ``jem``: classifier accuracy comparable to logistic regression, class-conditional SGLD
  lowers the class energy from the starting noise, real data have lower energy than noise.
- Both build from the registry with overrides and run through the engine's grid program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_softmax, logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from gdbench import engine, fit, models, plan, tasks
from gdbench.models.base import ClosedForm, GenerativeModel, Gradient
from gdbench.models.hybrid.blend import BlendedGaussian
from gdbench.models.hybrid.jem import JEM


def _subset(task, n: int, seed: int):
    """Training weights of the engine's cell (n, seed) and the pool/test data standardized by
    the subset's mean and population standard deviation (as the engine does)."""
    cells = plan.make_cells(task.y_pool, task.num_classes, (n,), (seed,), validation=False)
    w = np.asarray(cells.w_train[0], np.float32)
    idx = w > 0
    mean, std = task.x_pool[idx].mean(0), task.x_pool[idx].std(0)
    std[std**2 <= 1e-12] = 1.0
    z_pool = ((task.x_pool - mean) / std).astype(np.float32)
    z_test = ((task.x_test - mean) / std).astype(np.float32)
    return w, idx, z_pool, z_test


def _fit(spec: str, task, w, z_pool, seed: int = 0):
    """Build ``spec`` for the task and run its fit plan (under ``jax.jit`` when it has a
    gradient stage; a closed form alone runs eagerly, which is faster than compiling it)."""
    model = models.get(spec).build(task.dim, task.num_classes, nnx.Rngs(seed))
    graphdef, state = nnx.split(model)
    y = jnp.asarray(task.y_pool)

    def run(state, key):
        m = nnx.merge(graphdef, state)
        fit.run_plan(m, jnp.asarray(z_pool), y, jnp.asarray(w), jnp.zeros_like(w), key)
        return nnx.state(m)

    if any(isinstance(stage, Gradient) for stage in model.fit_plan()):
        run = jax.jit(run)
    return nnx.merge(graphdef, run(state, jax.random.key(seed)))


def _logits(model, z) -> np.ndarray:
    return np.asarray(model.predict_logits(jnp.asarray(z)), np.float64)


def _cond_nll(logits: np.ndarray, y: np.ndarray) -> float:
    return float(-log_softmax(logits, axis=1)[np.arange(len(y)), y].mean())


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


# ---------------------------------------------------------------------------------------------
# hybrid


def test_hybrid_lam1_is_the_generative_mle():
    task = tasks.load("wine")  # three classes, 13 features
    w, idx, z_pool, _ = _subset(task, 60, 0)
    model = _fit("hybrid?lam=1&var_smoothing=0", task, w, z_pool)
    assert model.fit_plan() == (ClosedForm(),)

    x, y = z_pool[idx].astype(np.float64), task.y_pool[idx]
    means = np.stack([x[y == c].mean(0) for c in range(task.num_classes)])
    pooled = ((x - means[y]) ** 2).mean(0)
    freq = np.bincount(y, minlength=task.num_classes) / len(y)
    np.testing.assert_allclose(np.asarray(model.mean[...]), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.variance), pooled, rtol=1e-5)
    np.testing.assert_allclose(np.exp(np.asarray(model.log_prior())), freq, rtol=1e-5)

    # The closed form minimises the lam = 1 blended loss: its gradient vanishes there.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def mean_loss(p):
        m = nnx.merge(graphdef, p, rest)
        return m.blended_loss(jnp.asarray(z_pool), jnp.asarray(task.y_pool)) @ w / w.sum()

    grads = jax.tree.leaves(jax.grad(mean_loss)(params))
    assert max(float(jnp.abs(g).max()) for g in grads) < 1e-4

    # With the default variance floor, lam = 1 gives gnb_shared's model exactly.
    hybrid = _fit("hybrid?lam=1", task, w, z_pool)
    gnb = _fit("gnb_shared", task, w, z_pool)
    assert isinstance(hybrid, GenerativeModel) and hybrid.paradigm == "hybrid"
    np.testing.assert_allclose(_logits(hybrid, z_pool), _logits(gnb, z_pool), rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def gauss_corr_sweep():
    """hybrid at lam in {0, 0.1, 1} on one 400-example cell of gauss_corr, with the data."""
    task = tasks.load("gauss_corr")
    w, idx, z_pool, z_test = _subset(task, 400, 0)
    fitted = {lam: _fit(f"hybrid?lam={lam}", task, w, z_pool) for lam in (0.0, 0.1, 1.0)}
    return task, idx, z_pool, z_test, fitted


def test_hybrid_lam0_is_logistic_regression(gauss_corr_sweep):
    task, idx, z_pool, z_test, fitted = gauss_corr_sweep
    model = fitted[0.0]
    assert any(isinstance(s, Gradient) for s in model.fit_plan())
    x, y = z_pool[idx], task.y_pool[idx]
    ref = LogisticRegression(C=1e8, max_iter=100_000, tol=1e-10).fit(x, y)
    ref_train_nll = log_loss(y, ref.predict_proba(x))
    ours_train_nll = _cond_nll(_logits(model, x), y)
    # The same model class (linear softmax) fitted on the same objective: scikit-learn's
    # optimum bounds ours from below, and minibatch AdamW gets within a few hundredths of a nat.
    assert ref_train_nll - 1e-6 <= ours_train_nll <= ref_train_nll + 0.02
    ours_acc = _accuracy(_logits(model, z_test), task.y_test)
    assert abs(ours_acc - ref.score(z_test, task.y_test)) <= 0.02


def test_hybrid_endpoints_trade_accuracy_for_density(gauss_corr_sweep):
    task, idx, z_pool, z_test, fitted = gauss_corr_sweep
    disc, gen = _logits(fitted[0.0], z_test), _logits(fitted[1.0], z_test)
    y = task.y_test
    # Features are strongly correlated: the diagonal-Gaussian density is wrong, so the
    # discriminative fit classifies better and the generative fit models x better.
    assert _accuracy(disc, y) > _accuracy(gen, y)
    assert _cond_nll(disc, y) < _cond_nll(gen, y)
    assert logsumexp(gen, axis=1).mean() > logsumexp(disc, axis=1).mean()

    # On the training subset: the joint NLL rises and the conditional NLL falls as lam -> 0.
    x, yt = z_pool[idx], task.y_pool[idx]
    joint, cond = [], []
    for lam in (1.0, 0.1, 0.0):
        logits = _logits(fitted[lam], x)
        joint.append(float(-logits[np.arange(len(yt)), yt].mean()))
        cond.append(_cond_nll(logits, yt))
    assert joint[0] < joint[1] < joint[2]
    assert cond[0] > cond[1] > cond[2]


def test_hybrid_samples_follow_the_class_gaussian():
    model = BlendedGaussian(3, 2, rngs=nnx.Rngs(0), lam=0.5)
    model.mean[...] = jnp.asarray([[0.0, 1.0, -2.0], [3.0, 0.0, 0.5]])
    model.log_var[...] = jnp.log(jnp.asarray([0.25, 1.0, 4.0]))
    draws = np.asarray(model.sample(jax.random.key(0), 1, 20_000))
    np.testing.assert_allclose(draws.mean(0), [3.0, 0.0, 0.5], atol=0.05)
    np.testing.assert_allclose(draws.var(0), [0.25, 1.0, 4.0], rtol=0.05)


# ---------------------------------------------------------------------------------------------
# jem


@pytest.fixture(scope="module")
def jem_fit():
    task = tasks.load("gauss_nb")
    w, idx, z_pool, z_test = _subset(task, 400, 0)
    return task, idx, z_pool, z_test, _fit("jem", task, w, z_pool)


def test_jem_classifies_like_logistic_regression(jem_fit):
    task, idx, z_pool, z_test, model = jem_fit
    assert isinstance(model, JEM) and not isinstance(model, GenerativeModel)
    ref = LogisticRegression().fit(z_pool[idx], task.y_pool[idx])
    acc = _accuracy(_logits(model, z_test), task.y_test)
    assert acc >= ref.score(z_test, task.y_test) - 0.03
    freq = np.bincount(task.y_pool[idx], minlength=task.num_classes) / idx.sum()
    np.testing.assert_allclose(np.exp(np.asarray(model.log_prior())), freq, rtol=1e-6)


def test_jem_energy_ranks_data_below_noise(jem_fit):
    task, _, _, z_test, model = jem_fit
    e_data = np.asarray(model.energy(jnp.asarray(z_test)))
    e_noise = np.asarray(model.energy(model.init_noise(jax.random.key(7), 2000)))
    assert e_data.mean() < e_noise.mean()
    # Energy as a detector of real data against uniform noise: far better than chance.
    labels = np.r_[np.ones_like(e_data), np.zeros_like(e_noise)]
    assert roc_auc_score(labels, -np.r_[e_data, e_noise]) > 0.9


def test_jem_sgld_lowers_the_class_energy(jem_fit):
    *_, model = jem_fit
    graphdef, state = nnx.split(model)
    labels = jnp.arange(model.num_classes)
    keys = jax.random.split(jax.random.key(11), model.num_classes)

    @jax.jit
    def chains(state):
        m = nnx.merge(graphdef, state)

        def one(key, label):
            k_init, k_chain = jax.random.split(key)
            start = m.init_noise(k_init, 256)
            again = m.langevin_class(start, label, k_chain, m.sample_steps)
            return start, m.sample(key, label, 256), again

        return jax.vmap(one)(keys, labels)

    starts, samples, again = chains(state)
    # ``sample`` is SGLD on the class energy from ``init_noise`` (same keys, same chains).
    np.testing.assert_allclose(samples, again, rtol=1e-6, atol=1e-6)
    assert samples.shape == (model.num_classes, 256, model.dim)
    for label in range(model.num_classes):
        start, drawn = starts[label], samples[label]
        e_start = float(model.class_energy(start, label).mean())
        assert float(model.class_energy(drawn, label).mean()) < e_start
        # Conditional sampling moves the chains into class ``label``'s region.
        assert (np.asarray(model.predict_logits(drawn)).argmax(1) == label).mean() > 0.5


@pytest.mark.fast
def test_jem_loss_without_energy_terms_is_cross_entropy():
    model = JEM(4, 3, rngs=nnx.Rngs(0), alpha=0.0, energy_reg=0.0, sgld_steps=2)
    x = jax.random.normal(jax.random.key(1), (10, 4))
    y = jnp.arange(10) % 3
    graphdef, state = nnx.split(model)
    loss_fn = jax.jit(lambda st, k: nnx.merge(graphdef, st).loss(x, y, k))
    loss = np.asarray(loss_fn(state, jax.random.key(2)))
    ref = -log_softmax(_logits(model, x), axis=1)[np.arange(10), np.asarray(y)]
    np.testing.assert_allclose(loss, ref, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# registry and engine


def test_registry_overrides_and_bad_values():
    hybrid = models.get("hybrid?lam=0.25")
    assert hybrid.spec == "hybrid?lam=0.25" and hybrid.paradigm == "hybrid"
    assert hybrid.build(5, 2, nnx.Rngs(0)).lam == 0.25
    jem = models.get("jem?sgld_steps=5")
    assert jem.spec == "jem?sgld_steps=5" and jem.paradigm == "hybrid"
    built = jem.build(5, 2, nnx.Rngs(0))
    assert built.sgld_steps == 5 and built.plan.stochastic
    with pytest.raises(models.ModelSpecError, match="lam"):
        models.get("hybrid?lam=1.5")
    with pytest.raises(models.ModelSpecError, match="sgld_steps"):
        models.get("jem?sgld_steps=0")


def test_engine_rows():
    task = tasks.load("gauss_nb")
    pairs = [(20, 0), (40, 1)]
    hybrid = engine.run_cells(task, models.get("hybrid?lam=0.25&steps=100"), pairs).rows
    jem = engine.run_cells(task, models.get("jem?sgld_steps=2&steps=20&hidden=8"), pairs).rows
    for row in hybrid + jem:
        assert row["status"] == "ok" and row["paradigm"] == "hybrid"
        assert 0.0 <= row["accuracy"] <= 1.0 and np.isfinite(row["nll"])
    # hybrid has a normalized density (its log p(x) is reported), JEM's is unnormalized.
    assert all(np.isfinite(r["log_lik"]) and r["likelihood_is_bound"] is False for r in hybrid)
    assert all(np.isnan(r["log_lik"]) and r["likelihood_is_bound"] is None for r in jem)
