"""One-vs-rest Newton steps solved per output (``Newton.separable_outputs``, ``linsvm``).

With a loss that sums per-output losses of each output's own score, the Hessian over
``[W; b]`` is block diagonal (one ``[D+1, D+1]`` block per output, in the solver's (d, k)
order interleaved); ``bench.fit._separable_direction`` solves the blocks apart. Checked
against the full solve of the assembled matrix (``_newton_direction``, same damping), and the
engine's ``linsvm`` on ten classes against scikit-learn's ``LinearSVC`` in
``tests/test_models_vs_sklearn.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bench import fit


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
