"""The class-conditional GAN (``gdbench.models.hybrid.gan``) and the engine's ``Adversarial`` stage.

Every fit runs ``gdbench.fit.run_plan`` inside one ``jax.jit``, as the engine does.

- Against a generator frozen at its initialisation (``g_learning_rate=0``), with the data
  shifted far from its samples, the discriminator learns to tell real from fake almost
  perfectly; the fixed latent noise of the trace samples then gives identical samples at every
  trace point.
- On a two-class 2-d Gaussian task the full GAN learns: its class-conditional sample means
  match the data's class means, its discriminator's accuracies settle well below 1 (the
  fakes are hard to tell apart), and its class head is as accurate on test data as
  scikit-learn's logistic regression (the Bayes rule of the task is linear).
- Traces have the documented names, shapes and step numbers; ``run_plan`` of a model without
  an adversarial stage returns ``{}``.
- ``lax.map`` over three cells gives per-cell traces (different seeds, different values).
- The non-saturating loss equals the binary cross-entropy written with ``log sigmoid``; the
  registry builds ``gan`` and ``gan?loss=hinge``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression

from gdbench import models, tasks
from gdbench.fit import LBFGS, NEWTON_CONVERGED, NEWTON_STEPS, run_plan
from gdbench.models.base import Adversarial
from gdbench.models.hybrid.gan import GAN
from gdbench.models.registry import ModelSpecError

SMALL = {"hidden": (32,), "latent": 4}


def _fit(build, x, y, w, key):
    """``build(rngs)`` fitted by ``run_plan`` on ``(x, y)`` with weights ``w`` under one jit;
    returns the fitted model and its traces."""
    x, y, w = jnp.asarray(x), jnp.asarray(y), jnp.asarray(w, jnp.float32)
    graphdef, _ = nnx.split(build(nnx.Rngs(0)))

    @jax.jit
    def fit(key):
        k_init, k_fit = jax.random.split(key)
        model = build(nnx.Rngs(k_init))
        traces = run_plan(model, x, y, w, jnp.zeros_like(w), k_fit)
        return nnx.state(model), traces

    state, traces = fit(key)
    return nnx.merge(graphdef, state), jax.tree.map(np.asarray, traces)


def _standardized(x_train, x_test):
    mean, std = x_train.mean(0), x_train.std(0)
    std[std < 1e-6] = 1.0
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _gaussian_task(per_class: int, seed: int):
    """Two 2-d Gaussian classes with a shared covariance (a linear Bayes rule)."""
    rng = np.random.default_rng(seed)
    means = np.array([[-1.0, 0.0], [1.0, 1.0]])
    cov = np.array([[0.6, 0.2], [0.2, 0.5]])
    x = np.concatenate([rng.multivariate_normal(m, cov, per_class) for m in means])
    y = np.repeat(np.arange(2), per_class).astype(np.int32)
    order = rng.permutation(len(y))
    return x[order], y[order]


# ---------------------------------------------------------------------------------------------
# A discriminator against a frozen generator.


@pytest.fixture(scope="module")
def frozen_fit():
    """GAN whose generator never moves (learning rate 0), on 2-d data shifted 4 standard
    deviations away from where the initial generator puts its samples (near the origin)."""
    x, y = _gaussian_task(200, seed=2)
    x = _standardized(x, x)[0] + 4.0
    hp = dict(SMALL, steps=300, trace_every=100, g_learning_rate=0.0, d_learning_rate=1e-3)
    build = lambda rngs: GAN(2, 2, rngs=rngs, **hp)  # noqa: E731
    model, traces = _fit(build, x, y, np.ones(len(y)), jax.random.key(0))
    return model, traces


def test_discriminator_rejects_a_frozen_generator(frozen_fit):
    _, traces = frozen_fit
    assert traces["d_acc_real"][-1] > 0.95
    assert traces["d_acc_fake"][-1] > 0.95


def test_trace_shapes_and_fixed_sample_noise(frozen_fit):
    model, traces = frozen_fit
    points = 3
    expected = {"d_loss", "g_loss", "d_acc_real", "d_acc_fake", "class_acc_real"}
    expected |= {"class_acc_fake", "trace_step", "trace_samples"}
    assert set(traces) == expected
    for name in expected - {"trace_step", "trace_samples"}:
        assert traces[name].shape == (points,), name
        assert np.all(np.isfinite(traces[name])), name
    assert traces["trace_step"].dtype == np.int32
    np.testing.assert_array_equal(traces["trace_step"], [100, 200, 300])
    samples = traces["trace_samples"]
    assert samples.shape == (points, 2, 4, 2)
    # The generator is frozen and the latent noise fixed: every trace point shows the same draws.
    np.testing.assert_array_equal(samples[0], samples[-1])
    # ... and they are the generator's output for each class (distinct draws within a class).
    assert not np.allclose(samples[0, 0, 0], samples[0, 0, 1])
    assert not np.allclose(samples[0, 0], samples[0, 1])


def test_run_plan_without_an_adversarial_stage_records_no_training_curves():
    task = tasks.load("iris")
    x, _ = _standardized(task.x_pool, task.x_test)
    spec = models.get("logreg")
    build = lambda rngs: spec.build(task.dim, task.num_classes, rngs)  # noqa: E731
    _, traces = _fit(build, x, task.y_pool, np.ones(len(x)), jax.random.key(0))
    # Only the Newton stage's step counts (three classes: L-BFGS's too) and convergence (kept
    # out of the training traces by the engine).
    assert set(traces) == {f"{NEWTON_STEPS}0", f"{NEWTON_STEPS}0{LBFGS}", f"{NEWTON_CONVERGED}0"}


# ---------------------------------------------------------------------------------------------
# A full GAN on a Gaussian task.


def test_gan_learns_a_gaussian_task():
    x_raw, y = _gaussian_task(500, seed=0)
    xt_raw, yt = _gaussian_task(2000, seed=1)
    x, xt = _standardized(x_raw, xt_raw)
    hp = dict(hidden=(32, 32), latent=4, steps=1500)
    build = lambda rngs: GAN(2, 2, rngs=rngs, **hp)  # noqa: E731
    model, traces = _fit(build, x, y, np.ones(len(y)), jax.random.key(1))

    for c in range(2):
        draws = np.asarray(model.sample(jax.random.key(7 + c), c, 4000))
        np.testing.assert_allclose(draws.mean(0), x[y == c].mean(0), atol=0.15)
        # Spread of the right size (a collapsed generator would give ~0).
        ratio = draws.std(0) / x[y == c].std(0)
        assert np.all((ratio > 0.65) & (ratio < 1.35)), ratio

    # Late in training the discriminator can no longer separate real from fake well.
    late = slice(-5, None)
    assert 0.2 < traces["d_acc_real"][late].mean() < 0.85
    assert 0.2 < traces["d_acc_fake"][late].mean() < 0.85
    assert traces["d_acc_real"][late].mean() + traces["d_acc_fake"][late].mean() < 1.7

    gan_acc = (np.asarray(model.predict_logits(jnp.asarray(xt))).argmax(1) == yt).mean()
    ref_acc = LogisticRegression(C=1e4).fit(x, y).score(xt, yt)
    assert gan_acc > ref_acc - 0.03, (gan_acc, ref_acc)


# ---------------------------------------------------------------------------------------------
# Mapping over cells, the losses, the stage and the registry.


def test_cells_mapped_with_lax_map_get_their_own_traces():
    task = tasks.load("iris")
    x, _ = _standardized(task.x_pool, task.x_test)
    x, y = jnp.asarray(x), jnp.asarray(task.y_pool)
    hp = dict(SMALL, steps=200, trace_every=50)
    n = x.shape[0]
    w = np.ones((3, n), np.float32)
    w[1, n // 2 :] = 0.0  # cells differ in their subsets as well as their seeds
    keys = jax.random.split(jax.random.key(3), 3)

    def cell(args):
        key, w_train = args
        k_init, k_fit = jax.random.split(key)
        model = GAN(task.dim, task.num_classes, rngs=nnx.Rngs(k_init), **hp)
        return run_plan(model, x, y, w_train, jnp.zeros_like(w_train), k_fit)

    traces = jax.jit(lambda k, w: jax.lax.map(cell, (k, w), batch_size=3))(keys, jnp.asarray(w))
    assert traces["d_loss"].shape == (3, 4)
    assert traces["trace_samples"].shape == (3, 4, task.num_classes, 4, task.dim)
    np.testing.assert_array_equal(np.asarray(traces["trace_step"]), [[50, 100, 150, 200]] * 3)
    loss = np.asarray(traces["d_loss"])
    assert np.all(np.isfinite(loss))
    assert not np.allclose(loss[0], loss[1]) and not np.allclose(loss[0], loss[2])
    samples = np.asarray(traces["trace_samples"])
    assert not np.allclose(samples[0], samples[2])


@pytest.mark.fast
def test_non_saturating_losses_are_binary_cross_entropy():
    """With the class terms and R1 off, ``d_loss`` is ``-log D(x) - log(1 - D(G(z)))`` and
    ``g_loss`` is ``-log D(G(z))``, ``D = sigmoid(score)``, on the same fakes."""
    model = GAN(3, 2, rngs=nnx.Rngs(0), class_weight=0.0, aux_weight=0.0, r1=0.0, **SMALL)
    x = jax.random.normal(jax.random.key(1), (16, 3)) * 2.0
    y = jnp.arange(16) % 2
    key = jax.random.key(2)
    x_fake, y_fake = model.fakes(key, 16)
    disc = model.discriminator
    real = np.asarray(disc.score(disc.features(x), y), np.float64)
    fake = np.asarray(disc.score(disc.features(x_fake), y_fake), np.float64)
    d_prob_real, d_prob_fake = 1 / (1 + np.exp(-real)), 1 / (1 + np.exp(-fake))
    d_ref = -np.log(d_prob_real).mean() - np.log(1 - d_prob_fake).mean()
    g_ref = -np.log(d_prob_fake).mean()
    assert float(model.d_loss(x, y, key)) == pytest.approx(d_ref, rel=1e-5)
    assert float(model.g_loss(x, y, key)) == pytest.approx(g_ref, rel=1e-5)
    hinge = GAN(3, 2, rngs=nnx.Rngs(0), loss="hinge", class_weight=0.0, r1=0.0, **SMALL)
    d_hinge = np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean()
    assert float(hinge.d_loss(x, y, key)) == pytest.approx(d_hinge, rel=1e-5)
    assert float(hinge.g_loss(x, y, key)) == pytest.approx(-fake.mean(), rel=1e-5, abs=1e-6)
    # The class terms: cross-entropy of the class head on the real batch (discriminator) and
    # on the fakes with their conditioning labels (generator, AC-GAN).
    both = GAN(3, 2, rngs=nnx.Rngs(0), class_weight=0.5, aux_weight=2.0, r1=0.0, **SMALL)
    ce_real = -log_softmax(np.asarray(both.predict_logits(x), np.float64), axis=1)
    ce_fake = -log_softmax(np.asarray(both.predict_logits(x_fake), np.float64), axis=1)
    ce_real = ce_real[np.arange(16), np.asarray(y)].mean()
    ce_fake = ce_fake[np.arange(16), np.asarray(y_fake)].mean()
    assert float(both.d_loss(x, y, key)) == pytest.approx(d_ref + 0.5 * ce_real, rel=1e-5)
    assert float(both.g_loss(x, y, key)) == pytest.approx(g_ref + 2.0 * ce_fake, rel=1e-5)


def test_r1_penalty_matches_finite_differences():
    """``d_loss(r1=g) - d_loss(r1=0) = g/2 * mean ||grad_x score||^2`` (central differences)."""
    kw = dict(SMALL, class_weight=0.0)
    with_r1 = GAN(3, 2, rngs=nnx.Rngs(0), r1=2.0, **kw)
    without = GAN(3, 2, rngs=nnx.Rngs(0), r1=0.0, **kw)
    x = np.asarray(jax.random.normal(jax.random.key(1), (8, 3)), np.float64)
    y = np.arange(8) % 2
    key = jax.random.key(2)
    disc = without.discriminator

    def score(points):
        xs = jnp.asarray(points, jnp.float32)
        return np.asarray(disc.score(disc.features(xs), jnp.asarray(y)), np.float64)

    eps = 1e-2
    grads = np.stack(
        [(score(x + eps * e) - score(x - eps * e)) / (2 * eps) for e in np.eye(3)], axis=-1
    )
    expected = 0.5 * 2.0 * (grads**2).sum(-1).mean()
    x32 = jnp.asarray(x, jnp.float32)
    diff = float(
        with_r1.d_loss(x32, jnp.asarray(y), key) - without.d_loss(x32, jnp.asarray(y), key)
    )
    assert diff == pytest.approx(expected, rel=2e-2)


def test_adversarial_stage_checks_its_settings():
    with pytest.raises(ValueError, match="multiple of trace_every"):
        Adversarial(steps=150, trace_every=100)
    with pytest.raises(ValueError, match="d_steps"):
        Adversarial(d_steps=0)


def test_registry_builds_gan_and_its_hinge_variant():
    for text, loss in (("gan", "ns"), ("gan?loss=hinge", "hinge")):
        spec = models.get(text)
        assert spec.spec == text and spec.paradigm == "hybrid"
        model = spec.build(4, 3, nnx.Rngs(0), "real")
        assert model.loss_kind == loss
        assert model.predict_logits(jnp.zeros((5, 4))).shape == (5, 3)
        assert model.sample(jax.random.key(0), 2, 6).shape == (6, 4)
        assert not hasattr(model, "log_prob")
    with pytest.raises(ModelSpecError, match="loss"):
        models.get("gan?loss=wasserstein")
