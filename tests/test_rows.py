"""One row builder (gdbench.rows.cell_row) for JAX and sk: cells: the same identity, metric and
likelihood columns, all of them in the result schema."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gdbench import engine, models, reference, rows, tasks
from gdbench.results.schema import COLUMNS, validate

PAIRS = [(9, 0), (15, 1)]
#: The columns that say which cell a row is, but not which model made it.
CELL = ("task", "n_train", "seed", "bayes_accuracy", "true_log_lik", "preprocess")


@pytest.fixture(scope="module")
def iris():
    return tasks.load("iris")


def test_jax_and_sk_cells_have_one_row_layout(iris):
    jax_rows = engine.run_cells(iris, models.get("gnb"), PAIRS, quality=False).rows
    sk_spec = models.get("sk:GaussianNB")
    sk_rows = reference.run_cells(iris, sk_spec, PAIRS).rows
    for jax_row, sk_row in zip(jax_rows, sk_rows, strict=True):
        assert {k: jax_row[k] for k in CELL} == {k: sk_row[k] for k in CELL}
        assert set(rows.METRIC_COLUMNS) <= set(sk_row) & set(jax_row)
        # Every column an sk: row has, a JAX row has too (it adds its own measurements).
        assert set(sk_row) <= set(jax_row) <= set(COLUMNS)
        assert sk_row["paradigm"] == "reference" and sk_row["n_val"] == 0
        assert sk_row["model_config"] == sk_spec.config_json()
        assert math.isnan(sk_row["log_lik"]) and sk_row["likelihood_is_bound"] is None
        # gnb is a density of iris's real features: its likelihood columns are filled.
        assert math.isfinite(jax_row["log_lik"]) and jax_row["likelihood_is_bound"] is False
        assert jax_row["bits_per_dim"] == pytest.approx(
            -jax_row["log_lik"] / (iris.dim * math.log(2.0))
        )
    validate(pd.DataFrame(jax_rows))
    validate(pd.DataFrame(sk_rows))


def test_a_row_outside_the_schema_is_refused(iris):
    spec = models.get("gnb")
    with pytest.raises(KeyError, match="not_a_column"):
        rows.cell_row(
            iris,
            spec,
            10,
            0,
            0,
            config=spec.config_json(),
            metrics=rows.NO_METRICS,
            density=rows.density_columns(iris),
            measured={},
            grid_cells=1,
            status="failed",
            message="",
            not_a_column=1.0,
        )


@pytest.mark.parametrize("name", ["gnb", "sk:LinearSVC"])
def test_a_failed_grid_stores_like_a_failed_sk_cell(iris, name):
    """A grid that raised (runner: failed_rows) and an sk: cell whose estimator raised are
    stored with the same empty metric and likelihood columns."""
    spec = models.get(name)
    failed = validate(pd.DataFrame(rows.failed_rows(iris, spec, [(6, 1)], ValueError("x\ny"))))
    # Seed 1's first 6 iris examples hold one example of some class: LinearSVC cannot be
    # calibrated there (see tests/test_reference_models.py).
    cell = reference.run_cells(iris, models.get("sk:LinearSVC"), [(6, 1)]).rows
    cell = validate(pd.DataFrame(cell))
    assert failed.loc[0, "status"] == cell.loc[0, "status"] == "failed"
    assert failed.loc[0, "message"] == "ValueError: x"
    assert failed.loc[0, "model"] == spec.spec and failed.loc[0, "paradigm"] == spec.paradigm
    empty = [*rows.METRIC_COLUMNS, *rows.density_columns(iris)]
    pd.testing.assert_frame_equal(failed[empty], cell[empty], check_dtype=True, check_exact=True)
