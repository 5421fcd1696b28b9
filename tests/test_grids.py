"""One interface for a grid's cells (gdbench.grids): JAX models and sk: references are computed
through the same ``run_cells(task, spec, grid, options)``, each by its own runner."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from gdbench import engine, grids, models, plan, reference, tasks
from gdbench.models.registry import ModelSpec
from gdbench.results.schema import validate

#: Columns that are wall-clock measurements (differ between two runs of the same cells).
TIMES = ("fit_s", "predict_s", "predict_per_s")


def _untimed(rows) -> pd.DataFrame:
    return validate(pd.DataFrame(rows)).drop(columns=list(TIMES))


def test_each_kind_of_spec_has_its_runner():
    jax_spec, sk_spec = models.get("gnb"), models.get("sk:GaussianNB")
    assert grids.runner_for(jax_spec) is grids.RUNNERS[ModelSpec]
    assert grids.runner_for(sk_spec) is grids.RUNNERS[type(sk_spec)]
    assert grids.runner_for(jax_spec) is not grids.runner_for(sk_spec)

    class Special(ModelSpec):  # e.g. a plug-in's own spec type
        pass

    special = Special(**{f.name: getattr(jax_spec, f.name) for f in dataclasses.fields(jax_spec)})
    assert grids.runner_for(special) is grids.RUNNERS[ModelSpec]
    with pytest.raises(TypeError, match="no cell runner for a str"):
        grids.runner_for("gnb")


def test_a_jax_spec_runs_on_the_engine_with_every_option(monkeypatch):
    calls = []

    def recorder(task, spec, grid, cell_batch, **kwargs):
        calls.append((task, spec, grid, cell_batch, kwargs))
        return engine.GridResult([], None, None)

    monkeypatch.setattr(engine, "run_cells", recorder)
    task, spec = tasks.load("iris"), models.get("gnb")
    grid = plan.GridPlan.make(task, (12, 20), (0, 1)).only([(12, 0), (12, 1)])
    options = grids.GridOptions(
        cell_batch=7,
        quality=False,
        devices=1,
        data_parallel=1,
        robustness=True,
        ood="noise",
        steady=True,
    )
    grids.run_cells(task, spec, grid, options)
    assert calls == [
        (
            task,
            spec,
            grid,
            7,
            {
                "quality": False,
                "devices": 1,
                "data": 1,
                "robustness": True,
                "ood": "noise",
                "steady": True,
            },
        )
    ]


def test_an_sk_spec_runs_on_scikit_learn_and_gives_its_rows():
    task, spec, pairs = tasks.load("iris"), models.get("sk:GaussianNB"), [(9, 0), (15, 1)]
    through = grids.run_cells(task, spec, pairs, grids.GridOptions(robustness=True))
    direct = reference.run_cells(task, spec, plan.GridPlan.of_pairs(task, pairs))
    pd.testing.assert_frame_equal(_untimed(through.rows), _untimed(direct.rows))
    assert [(r["n_train"], r["seed"]) for r in through.rows] == pairs
    assert {r["paradigm"] for r in through.rows} == {"reference"}
    assert through.samples is None and through.timing.compile_s == 0.0
