"""Work on the cell's subset rows only: the Newton Hessian of one-output linear models and the
validation loss of gradient-trained models (``gdbench.fit``); and the MLP's output layer.

A learning-curve cell fits on a subset of the pool (weight 0 elsewhere). For one output the
Newton solver moves the subset's rows to the front and forms the Hessian from the first ``r``
rows, ``r`` the smallest of a few static row counts that holds the largest subset of the
vmapped chunk (``gdbench.sharding.CHUNK``); the validation loss is computed on the validation
rows, chosen the same way. Checked here:

- the row counts, and ``map_cells`` binding the chunk axis (a cell sees its chunk's maximum);
- the product equals the full-pool product of ``_kron_hessian`` for subsets of every size, and
  under the chunk's vmap it stays one ``cond`` (not a select that computes every branch);
- through the engine, binary cells of very different sizes in one chunk (the large one sets
  the rows of all) give a single fit's numbers, rebuilt by hand outside the engine, where each
  cell uses its own row count;
- the validation loss on the chosen rows equals the masked sum over the pool for every count
  (one branch per chunk; stochastic losses keep the pool);
- the MLP's output layer (kernel stored ``[out, in]``) starts from ``nnx.Linear``'s values and
  computes the same function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdbench import fit, models, tasks
from gdbench.engine import run_grid
from gdbench.sharding import CHUNK, map_cells
from tests.test_engine import _hand_fit_cell


@pytest.mark.fast
def test_row_buckets_divide_the_pool():
    assert fit._row_buckets(290) == [19, 73, 290]
    assert fit._row_buckets(5) == [1, 2, 5]
    assert fit._row_buckets(1) == [1]


def test_map_cells_gives_each_cell_its_chunks_maximum():
    # 10 cells in chunks of at most 4: 3 balanced chunks of 4, the last padded with copies of
    # cell 9 (whose outputs are dropped).
    values = jnp.arange(10.0)
    got = map_cells(lambda v: jax.lax.pmax(v, CHUNK), values, 4)
    np.testing.assert_array_equal(np.asarray(got), [3, 3, 3, 3, 7, 7, 7, 7, 9, 9])
    # Outside a chunk the value is its own maximum.
    assert fit._chunk_max(jnp.asarray(5)) == 5


def _sorted_cell(rng, n, dim, count):
    """Rows ``[x, 1]`` with the first ``count`` active and curvature 0 on the others."""
    u = np.concatenate([rng.normal(size=(n, dim)), np.ones((n, 1))], axis=1)
    active = np.arange(n) < count
    curv = np.where(active, rng.uniform(0.01, 0.25, size=n), 0.0)[:, None, None]
    return jnp.asarray(u, jnp.float32), jnp.asarray(active), jnp.asarray(curv, jnp.float32)


@pytest.mark.parametrize("count", [0, 1, 5, 12, 13, 30, 57, 100])
def test_subset_hessian_equals_the_full_product(count: int):
    rng = np.random.default_rng(count)
    u, active, curv = _sorted_cell(rng, 100, 7, count)
    want = fit._kron_hessian(u, u.T, curv)
    got = fit._subset_hessian(u, fit._first_rows(active))(curv)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_subset_hessian_of_a_chunk_is_one_branch_for_all_cells():
    rng = np.random.default_rng(0)
    counts = [3, 20, 8, 100]
    cells = [_sorted_cell(rng, 100, 7, c) for c in counts]
    u, active, curv = (jnp.stack(parts) for parts in zip(*cells, strict=True))

    def cell(u, active, curv):
        return fit._subset_hessian(u, fit._first_rows(active))(curv)

    chunk = jax.vmap(cell, axis_name=CHUNK)
    got = chunk(u, active, curv)
    for i in range(len(counts)):
        want = fit._kron_hessian(u[i], u[i].T, curv[i])
        np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want), rtol=1e-5, atol=1e-5)
    # The branch index is the chunk's (unbatched): a real conditional in the program. Batched
    # per cell, vmap would turn it into a select that computes all three branches.
    assert "cond[" in str(jax.make_jaxpr(chunk)(u, active, curv))
    assert "cond[" not in str(jax.make_jaxpr(jax.vmap(cell))(u, active, curv))


def test_pool_pairs_hessian_equals_the_cells_standardized_product():
    """The Hessian of a chunk whose subsets need every row, from the pool's pair products
    shared by the chunk (``_pool_pairs_hessian``): each cell's ``sum_i curv_i u_i u_i^T`` over
    its own standardized rows ``u_i = [(x_i - shift) / scale, 1]`` in its own row order, here
    against float64. Raw features of very different offsets and scales (as ``breast_cancer``'s
    areas near 650 beside its smoothness near 0.1)."""
    rng = np.random.default_rng(3)
    n, dim, cells = 90, 18, 4  # at least POOL_PAIRS_MIN_COLUMNS columns [x, 1]
    offsets = np.tile([650, 0.1, -3, 0, 20, 1e3], 3)
    scales = np.tile([350, 0.01, 1, 2, 5, 1], 3)
    x_raw = rng.normal(size=(n, dim)) * scales + offsets
    x_raw[:, 5] = 1e3  # a constant feature: scale 1 in the pool's and the cell's standardizer
    shift = offsets + rng.normal(size=(cells, dim)) * scales / 4
    scale = scales * rng.uniform(0.7, 1.4, size=(cells, dim))
    order = np.stack([rng.permutation(n) for _ in range(cells)])
    curv = rng.uniform(0.0, 0.25, size=(cells, n))

    def cell(order, shift, scale, curv):
        affine = (jnp.asarray(x_raw, jnp.float32), shift, scale)
        hessian = fit._pool_pairs_hessian(affine[0], affine, order)
        return hessian(curv[:, None, None])

    args = (order, *(jnp.asarray(a, jnp.float32) for a in (shift, scale, curv)))
    got = np.asarray(jax.vmap(cell, axis_name=CHUNK)(*args))
    for i in range(cells):
        z = (x_raw - shift[i]) / scale[i]
        u = np.concatenate([z, np.ones((n, 1))], axis=1)[order[i]]
        want = (u.T * curv[i]) @ u
        np.testing.assert_allclose(got[i], want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    # Beyond the bound on the products' bytes, and for few features, the per-cell products stay.
    assert fit._pool_pairs_hessian(jnp.zeros((10**5, 64)), None, jnp.arange(10**5)) is None
    assert fit._pool_pairs_hessian(jnp.zeros((50, 8)), None, jnp.arange(50)) is None


@pytest.mark.parametrize("spec_name", ["logreg", "logreg?C=10000"])
def test_binary_grid_cells_equal_single_fits(spec_name: str):
    """Sizes 10 and 300 of breast_cancer's pool (398) in one chunk: the grid forms every
    Hessian on 398 rows (the 300-example cells need them), a single 10-example fit on 25
    (its own count)."""
    task = tasks.load("breast_cancer")
    spec = models.get(spec_name)
    sizes, seeds = (10, 300), (0, 1)
    rows, _ = run_grid(task, spec, sizes, seeds)
    assert task.pool_size == 398 and fit._row_buckets(398) == [25, 100, 398]
    by_cell = {(r["n_train"], r["seed"]): r for r in rows}
    n_test = len(task.y_test)
    for size, seed in ((10, 1), (300, 0)):
        row = by_cell[(size, seed)]
        correct, nll, _ = _hand_fit_cell(task, spec, size, seed)
        assert round(row["accuracy"] * n_test) == correct, (size, seed)
        # The C=1e4 objective is flat near its optimum (see tests/test_engine.py): measured
        # up to 8e-5 relative on these cells.
        assert row["nll"] == pytest.approx(nll, rel=5e-4), (size, seed)


# ---------------------------------------------------------------------------------------------
# The same row choice for the validation loss of gradient-trained models (``fit.gradient``).


def _val_problem(rng, n, count):
    x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, size=n))
    w_val = np.zeros(n, np.float32)
    w_val[rng.choice(n, size=count, replace=False)] = 1.0
    return x, y, jnp.asarray(w_val)


def _losses(p, x, y):
    """Per-example losses of a linear two-class model with parameters ``p`` ``[3]``."""
    s = x @ p
    return jnp.logaddexp(0.0, s) - y * s


@pytest.mark.parametrize("count", [0, 1, 6, 7, 25, 26, 99, 100])
def test_validation_loss_on_the_validation_rows_equals_the_masked_pool(count: int):
    rng = np.random.default_rng(count)
    x, y, w_val = _val_problem(rng, 100, count)  # row counts 7, 25, 100
    p = jnp.asarray([0.3, -1.0, 2.0])
    want = float(jnp.sum(w_val * _losses(p, x, y)) / max(count, 1))
    got = float(fit._validation_loss(_losses, x, y, w_val, stochastic=False)(p))
    assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_validation_loss_of_a_chunk_is_one_branch_and_stochastic_losses_use_the_pool():
    rng = np.random.default_rng(1)
    problems = [_val_problem(rng, 100, c) for c in (2, 5, 20)]
    x, y, w_val = (jnp.stack(parts) for parts in zip(*problems, strict=True))
    p = jnp.asarray([0.3, -1.0, 2.0])

    def cell(x, y, w_val, stochastic=False):
        return fit._validation_loss(_losses, x, y, w_val, stochastic)(p)

    chunk = jax.vmap(cell, axis_name=CHUNK)
    got = chunk(x, y, w_val)
    for i in range(len(problems)):
        want = jnp.sum(w_val[i] * _losses(p, x[i], y[i])) / jnp.sum(w_val[i])
        assert float(got[i]) == pytest.approx(float(want), rel=1e-6)
    assert "cond[" in str(jax.make_jaxpr(chunk)(x, y, w_val))
    # A stochastic loss draws noise shaped like its rows: it keeps the whole pool, no branch.
    pool = jax.vmap(lambda *a: cell(*a, stochastic=True), axis_name=CHUNK)
    assert "cond[" not in str(jax.make_jaxpr(pool)(x, y, w_val))


# ---------------------------------------------------------------------------------------------
# The MLP's output layer stores its kernel transposed (``gdbench.models.discriminative.mlp``).


def test_output_layer_is_a_linear_layer_with_a_transposed_kernel():
    from flax import nnx

    from gdbench.models.discriminative.mlp import OutputLinear

    ours = OutputLinear(5, 3, rngs=nnx.Rngs(7))
    plain = nnx.Linear(5, 3, rngs=nnx.Rngs(7))
    assert ours.kernel[...].shape == (3, 5)
    np.testing.assert_array_equal(np.asarray(ours.kernel[...]), np.asarray(plain.kernel[...]).T)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
    plain.bias[...] = jnp.asarray([0.5, -1.0, 2.0])
    ours.bias[...] = plain.bias[...]
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(plain(x)), rtol=1e-6, atol=1e-6)
