"""The Newton loop's certificate from the previous factorization (``CurvatureBound``).

``logreg`` declares how far the curvature of its loss can fall when the scores move
(``score_curvature_drop``); the loop then bounds the Newton decrement where a step led by
``exp(drop)`` times the one the old factorization gives, instead of forming and factorizing
the Hessian there. The declared inequality is checked here against the exact Hessians of the
loss (closed forms in float64, not the model's code), and the solve with the bound against
the same solve with a Hessian formed at every test: the same optimum, fewer factorizations
(several classes; with two the loop does not use the bound).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gdbench import fit, tasks
from gdbench.models.base import CurvatureBound, has_ability
from gdbench.models.discriminative.logistic import LogisticRegression
from gdbench.plan import seed_order
from gdbench.sharding import CHUNK


def _hessian(scores: np.ndarray, k: int) -> np.ndarray:
    """The Hessian in the scores of the negative log-likelihood, float64 closed forms: two
    classes ``sigma'(s)`` (the label's sign does not change it), more ``diag(p) - p p^T``."""
    if k == 2:
        p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return (p * (1 - p))[:, None, None]
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.einsum("bk,kl->bkl", p, np.eye(k)) - p[:, :, None] * p[:, None, :]


@pytest.mark.parametrize("k", [2, 3, 10])
def test_the_declared_drop_bounds_the_loss_hessian_from_below(k: int):
    model = LogisticRegression(4, k, rngs=nnx.Rngs(0), C=1.0)
    assert has_ability(model, CurvatureBound)
    rng = np.random.default_rng(k)
    outputs = 1 if k == 2 else k
    worst = np.inf
    for scale_s, scale_d in [(1.0, 0.1), (4.0, 1.0), (8.0, 4.0), (2.0, 10.0)]:
        s = rng.normal(scale=scale_s, size=(400, outputs))
        d = rng.normal(scale=scale_d, size=(400, outputs))
        if k > 2:  # moves that push one class far up or down
            d[:100] = 0.0
            d[np.arange(100), rng.integers(0, k, 100)] = rng.normal(scale=3 * scale_d, size=100)
        drop = np.asarray(model.score_curvature_drop(jnp.asarray(d, jnp.float32)), np.float64)
        assert drop.shape == (400,) and np.all(drop >= 0)
        before, after = _hessian(s, k), _hessian(s + d, k)
        # after - exp(-drop) before must be positive semidefinite, per example.
        gap = after - np.exp(-drop)[:, None, None] * before
        low = np.linalg.eigvalsh(gap).min(axis=1)
        size = np.abs(before).max(axis=(1, 2)) + np.abs(after).max(axis=(1, 2))
        assert np.all(low >= -1e-5 * size - 1e-12), low.min()
        worst = min(worst, float(np.min(low / size)))
    # Not vacuous: with small moves the factor is close to 1.
    small = np.full((1, outputs), 1e-3)
    small[0, 0] = 0.0
    assert float(model.score_curvature_drop(jnp.asarray(small))[0]) <= 1e-3 + 1e-9


class _WithoutBound(LogisticRegression):
    """``logreg`` whose Newton tests each form and factorize their own Hessian."""

    score_curvature_drop = None


def _fit(cls, task_name: str, n: int, seeds: tuple[int, ...], C: float):
    """Fit ``cls`` on ``n`` examples of each seed's subset, the cells vmapped as in the
    engine's chunks (``gdbench.sharding.CHUNK``); per cell: float64 objective of the result,
    Newton steps (factorizations), converged."""
    task = tasks.load(task_name)
    weights, inputs = [], []
    for seed in seeds:
        w = np.zeros(task.pool_size, np.float32)
        w[seed_order(task.y_pool, task.num_classes, seed)[:n]] = 1.0
        mean, std = task.x_pool[w > 0].mean(0), task.x_pool[w > 0].std(0)
        weights.append(w)
        inputs.append((task.x_pool - mean) / np.where(std > 1e-6, std, 1.0))
    # Ten classes: L-BFGS finished by the Newton steps the bound concerns (``polish_steps``).
    model = cls(task.dim, task.num_classes, rngs=nnx.Rngs(0), C=C, polish_steps=10)
    graphdef, state = nnx.split(model)

    def run(state, z, y, w):
        m = nnx.merge(graphdef, state)
        traces = fit.run_plan(m, z, y, w, jnp.zeros_like(w), jax.random.key(0))
        return m.w[...], m.b[...], traces["newton_steps/0"], traces["newton_converged/0"]

    mapped = jax.jit(jax.vmap(run, in_axes=(None, 0, None, 0), axis_name=CHUNK))
    out = mapped(
        state, jnp.asarray(np.stack(inputs)), jnp.asarray(task.y_pool), jnp.asarray(weights)
    )
    results = []
    for i, w in enumerate(weights):
        zw = np.asarray(inputs[i], np.float64)[w > 0]
        yw = task.y_pool[w > 0]
        W, b = np.asarray(out[0][i], np.float64), np.asarray(out[1][i], np.float64)
        scores = zw @ W + b
        if task.num_classes == 2:
            loss = np.logaddexp(0.0, -np.where(yw == 1, scores[:, 0], -scores[:, 0]))
        else:
            top = scores.max(1)
            lse = top + np.log(np.exp(scores - top[:, None]).sum(1))
            loss = lse - scores[np.arange(len(yw)), yw]
        objective = loss.sum() + 0.5 * (W**2).sum() / C
        results.append((objective, int(out[2][i]), bool(out[3][i])))
    return results


@pytest.mark.parametrize("task_name, n, C", [("digits_bin", 20, 1e4), ("digits_bin", 592, 1.0)])
def test_the_bound_saves_factorizations_and_reaches_the_same_optimum(task_name, n, C):
    seeds = (0, 1, 2, 3)
    bounded = _fit(LogisticRegression, task_name, n, seeds, C)
    exact = _fit(_WithoutBound, task_name, n, seeds, C)
    for (f_bound, _, ok_bound), (f_exact, _, ok_exact) in zip(bounded, exact, strict=True):
        assert ok_bound and ok_exact
        # Both are certified by the decrement test (1e-6 of the objective); the chord step
        # after the bounded test leaves the result no further from the optimum.
        assert f_bound <= f_exact + 1e-6 * abs(f_exact), (f_bound, f_exact)
    steps_bound = sum(steps for _, steps, _ in bounded)
    steps_exact = sum(steps for _, steps, _ in exact)
    assert steps_bound < steps_exact, (steps_bound, steps_exact)


def test_one_output_does_not_use_the_bound():
    """Two classes (one output, at most 65 parameters): a factorization costs less than the
    bound's second line search, so the loop tests each point exactly, as without the ability:
    the same steps and the same optimum."""
    bounded = _fit(LogisticRegression, "breast_cancer", 40, (0, 1, 2, 3), 1e4)
    exact = _fit(_WithoutBound, "breast_cancer", 40, (0, 1, 2, 3), 1e4)
    assert bounded == exact
    assert all(ok for _, _, ok in bounded)
