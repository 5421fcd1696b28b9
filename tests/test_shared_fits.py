"""Cells with the same training subset share one fit when the fit does not depend on the seed.

At the pool's size every seed trains on the whole pool; a model whose fit is closed-form or
Newton's from a key-independent start (``gdbench.engine.seed_free_fit``) gives every such cell
the same fit, so the engine fits it once and evaluates every cell with its own key. Checked
here: the verdict for models that use the key and models that do not (followed through the
traced initializer), that the shared rows equal the rows of fitting every cell (the engine with
sharing turned off), and that the grid's timing records how many fits ran.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdbench import engine, models, tasks
from gdbench.rows import METRIC_COLUMNS

TASK = "wine"
SEEDS = (0, 1, 2, 3)


@pytest.mark.parametrize(
    "spec_name,free",
    [("gnb", True), ("lda", True), ("logreg", True), ("mlp?steps=20", False), ("vae", False)],
)
def test_seed_free_verdict(spec_name: str, free: bool):
    task = tasks.load(TASK)
    spec = models.get(spec_name)
    template = engine.build_template(task, spec)
    assert engine.seed_free_fit(task, spec, template) is free


@pytest.mark.fast
def test_key_dependence_is_followed_through_the_program():
    def traced(fn):
        closed = jax.make_jaxpr(fn)(jax.random.key(0))
        return engine._reaches_outputs(closed.jaxpr, closed.jaxpr.invars[0])

    assert traced(lambda k: [jax.random.normal(k, (3,)), jnp.zeros(2)])
    assert traced(lambda k: [jnp.zeros(3) + jax.random.uniform(jax.random.fold_in(k, 1))])
    assert not traced(lambda k: [jnp.zeros(3), jnp.ones((2, 2)) * 3.0])


@pytest.mark.fast
def test_distinct_fits_keeps_cell_order():
    w = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=np.float32)
    first, inverse = engine.distinct_fits(w, np.zeros_like(w))
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1]
    np.testing.assert_array_equal(w[first][inverse], w)


# (spec, relative tolerance on the metrics). Fewer fits make smaller chunks, i.e. other
# programs: 1e-5 is float32 reduction order for the closed forms; a weakly penalized logreg on
# 12 examples (separable) stops where float32 sees no decrease, at a point of that flat
# optimum that differs with the program (test NLL 1.3e-4 relative here; as test_engine's 5e-4).
SHARED = [("gnb", 1e-5), ("lda", 1e-5), ("logreg?C=10000", 5e-4)]


@pytest.mark.parametrize("spec_name,rtol", SHARED)
def test_shared_fits_give_the_rows_of_separate_fits(spec_name: str, rtol: float, monkeypatch):
    task = tasks.load(TASK)
    spec = models.get(spec_name)
    pairs = [(n, s) for n in (12, task.pool_size) for s in SEEDS]
    shared = engine.run_cells(task, spec, pairs, quality=False)
    # Every seed at the pool's size is one fit: 4 + 1 fits for 8 cells.
    assert shared.timing.fitted_cells == len(SEEDS) + 1
    monkeypatch.setattr(engine, "seed_free_fit", lambda *args: False)
    separate = engine.run_cells(task, spec, pairs, quality=False)
    assert separate.timing.fitted_cells == len(pairs)
    for a, b in zip(shared.rows, separate.rows, strict=True):
        assert (a["n_train"], a["seed"]) == (b["n_train"], b["seed"])
        assert a["status"] == b["status"] == "ok"
        assert a["test_correct"] == b["test_correct"]  # the same test points right
        for col in set(METRIC_COLUMNS) - {"test_correct"}:
            np.testing.assert_allclose(a[col], b[col], rtol=rtol, atol=1e-7, err_msg=col)
    pool_rows = [r for r in shared.rows if r["n_train"] == task.pool_size]
    assert len({r["accuracy"] for r in pool_rows}) == 1


def test_models_that_use_the_key_fit_every_cell():
    task = tasks.load(TASK)
    pairs = [(task.pool_size, s) for s in SEEDS]
    result = engine.run_cells(task, models.get("mlp?steps=20"), pairs, quality=False)
    assert result.timing.fitted_cells == len(pairs)
    assert len({r["nll"] for r in result.rows}) == len(SEEDS)  # the seeds' own inits
