"""The Newton solver's linear algebra (``gdbench.fit``): the Kronecker-form Hessian of linear
models, the damped solve, and one-vs-rest steps solved per output.

``_kron_hessian`` forms ``sum_i (u_i u_i^T) kron A_i`` from the distinct pairs of both
symmetric factors; it is checked against the dense sum in float64 for one output, several
outputs with few features and several outputs with many (the two product layouts), and is
exactly symmetric. ``_newton_direction`` reads only the lower triangle of ``H`` and equals the
dense solve of ``(H + lambda I) d = -g``.

One-vs-rest Newton steps solved per output (``Newton.separable_outputs``, ``linsvm``).

With a loss that sums per-output losses of each output's own score, the Hessian over
``[W; b]`` is block diagonal (one ``[D+1, D+1]`` block per output, in the solver's (d, k)
order interleaved); ``gdbench.fit._separable_direction`` solves the blocks apart. Checked
against the full solve of the assembled matrix (``_newton_direction``, same damping), and the
engine's ``linsvm`` on ten classes against scikit-learn's ``LinearSVC`` in
``tests/test_models_vs_sklearn.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdbench import fit


@pytest.mark.parametrize("k", [2, 3, 10])
def test_separable_direction_equals_the_full_block_diagonal_solve(k: int):
    rng = np.random.default_rng(k)
    n, dim = 40, 6
    u = np.concatenate([rng.normal(size=(n, dim)), np.ones((n, 1))], axis=1)
    diag = rng.uniform(0.0, 2.0, size=(n, k)) * (rng.uniform(size=(n, k)) < 0.7)
    curv = np.zeros((n, k, k))
    curv[:, np.arange(k), np.arange(k)] = diag
    # An L2 penalty on the weights (not the intercepts), separable over outputs.
    pen = np.diag(np.concatenate([np.full(dim * k, 0.5), np.zeros(k)]))
    g = rng.normal(size=(dim + 1) * k)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    full = fit._kron_hessian(f32(u), f32(u.T), f32(curv)) + f32(pen)
    want = fit._newton_direction(f32(g), full, jnp.eye(full.shape[0]))
    got = fit._separable_direction(f32(g), f32(u), f32(u.T), f32(curv), f32(pen))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-5)


def _dense_kron(u, curv):
    """``sum_i (u_i u_i^T) kron curv_i`` in float64, (d, k) order, by its definition."""
    return sum(np.kron(np.outer(ui, ui), ci) for ui, ci in zip(u, curv, strict=True))


@pytest.mark.parametrize(("dim", "k"), [(6, 1), (13, 3), (4, 3), (9, 10)])
def test_kron_hessian_equals_the_dense_sum(dim: int, k: int):
    # (13, 3): K^2 <= D+1, products over u; (4, 3), (9, 10): over u's outer products.
    rng = np.random.default_rng(dim * 100 + k)
    n = 30
    u = np.concatenate([rng.normal(size=(n, dim)), np.ones((n, 1))], axis=1)
    p = rng.dirichlet(np.ones(k), size=n)
    curv = p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :]  # softmax curvature
    curv *= rng.uniform(size=(n, 1, 1)) < 0.8  # rows outside the subset: zero curvature
    got = np.asarray(fit._kron_hessian(*(jnp.asarray(a, jnp.float32) for a in (u, u.T, curv))))
    want = _dense_kron(u, curv)
    assert got.shape == want.shape == ((dim + 1) * k,) * 2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_array_equal(got, got.T)  # both halves read the same entries


@pytest.mark.fast
def test_pairs_index_each_unordered_pair_once():
    index, first, second = fit._pairs(4)
    assert first.size == second.size == 10
    np.testing.assert_array_equal(index, index.T)
    np.testing.assert_array_equal(index[first, second], np.arange(10))
    assert np.all(first <= second)


def test_trace_reads_the_diagonal_under_vmap():
    h = np.random.default_rng(0).normal(size=(3, 5, 5)).astype(np.float32)
    got = jax.vmap(fit._trace)(jnp.asarray(h))
    np.testing.assert_allclose(np.asarray(got), np.trace(h, axis1=1, axis2=2), rtol=1e-6)


def test_newton_direction_reads_the_lower_triangle_and_solves_the_damped_system():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 8))
    h = a @ a.T + np.eye(8)
    g = rng.normal(size=8)
    damping = 1e-4 * (1.0 + np.trace(h) / 8)
    want = -np.linalg.solve(h + damping * np.eye(8), g)
    garbage = h + np.triu(rng.normal(size=(8, 8)) * 100.0, 1)  # upper triangle not read
    eye = jnp.eye(8)
    for matrix in (h, garbage):
        got = fit._newton_direction(
            jnp.asarray(g, jnp.float32), jnp.asarray(matrix, jnp.float32), eye
        )
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
