"""One plan per (task, grid) (gdbench.plan.GridPlan): made once per task by the runner from the
run's configuration, narrowed to the cells still to compute, and handed to the grid runners and
the row builder unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import engine, grids, plan, rows, runner, suites, tasks
from gdbench.results import store


@pytest.fixture(scope="module")
def iris():
    return tasks.load("iris")


@pytest.mark.fast
def test_a_plan_holds_the_grid_and_the_cells_to_compute(iris):
    grid = plan.GridPlan.make(iris, (9, 30, 60), (0, 1))
    assert grid.task == "iris" and grid.pool_size == iris.pool_size
    assert grid.pairs == tuple((n, s) for n in (9, 30, 60) for s in (0, 1))  # size-major
    assert grid.count == 6 and grid.scored_size == 60 and grid.first_cell == (60, 0)
    resumed = grid.only([(9, 1), (30, 0)])
    # A resumed grid keeps the whole grid's sizes: its largest size is still the one scored.
    assert resumed.sizes == grid.sizes and resumed.scored_size == 60 and resumed.count == 2
    cells = resumed.cells(iris.y_pool, validation=True)
    expected = plan.make_cells_for(iris.y_pool, 3, [(9, 1), (30, 0)], validation=True)
    for field in ("sizes", "seeds", "w_train", "w_val"):
        np.testing.assert_array_equal(getattr(cells, field), getattr(expected, field))


@pytest.mark.parametrize(
    ("sizes", "seeds", "match"),
    [
        ((2, 30), (0,), "smaller than the 3 classes of task 'iris'"),
        ((30, 10_000), (0,), "exceeds the training pool of task 'iris'"),
        ((), (0,), "no training sizes"),
        ((30,), (), "no seeds"),
        ((30,), (-1,), "seeds must be non-negative"),
    ],
)
def test_a_plan_the_task_cannot_have_is_refused(iris, sizes, seeds, match):
    with pytest.raises(plan.PlanError, match=match):
        plan.GridPlan.make(iris, sizes, seeds)


def test_cells_outside_the_grid_and_plans_of_other_tasks_are_refused(iris):
    grid = plan.GridPlan.make(iris, (9, 30), (0, 1))
    with pytest.raises(plan.PlanError, match=r"cell \(size 20, seed 0\) is not in the grid"):
        grid.only([(20, 0)])
    with pytest.raises(ValueError, match="a pool of"):
        grid.cells(iris.y_pool[:-1], validation=False)
    with pytest.raises(ValueError, match="a plan of task 'iris' given for task 'wine'"):
        plan.grid_of(tasks.load("wine"), grid)
    assert plan.grid_of(iris, grid) is grid
    # Pairs, as the engine's direct callers pass them: the plan of just those cells.
    pairs = plan.grid_of(iris, [(30, 1), (9, 0)])
    assert pairs.pairs == ((30, 1), (9, 0)) and pairs.sizes == (9, 30) and pairs.seeds == (0, 1)


def test_failed_rows_take_the_plans_cells(iris):
    from gdbench import models

    grid = plan.GridPlan.make(iris, (9, 30), (0, 1)).only([(30, 0), (30, 1)])
    failed = rows.failed_rows(iris, models.get("gnb"), grid, RuntimeError("boom"))
    assert [(r["n_train"], r["seed"]) for r in failed] == [(30, 0), (30, 1)]
    assert {r["grid_cells"] for r in failed} == {2}


def test_the_runner_makes_one_plan_per_task_and_narrows_it_per_grid(iris, tmp_path, monkeypatch):
    """Sizes are chosen once per task (``runner.grid_plan``), the run's identity holds the
    plan's sizes, and a resumed grid's runner gets the whole grid's sizes with only the cells
    still to compute."""
    made, seen = [], []
    real_plan, real_cells = runner.grid_plan, grids.run_cells

    def counting(config, task):
        made.append(task.name)
        return real_plan(config, task)

    def recording(task, spec, grid, options=None):
        seen.append((spec.spec, grid))
        return real_cells(task, spec, grid, options)

    monkeypatch.setattr(runner, "grid_plan", counting)
    monkeypatch.setattr(grids, "run_cells", recording)
    config = runner.make_config(
        suites.get("quick"), ["iris"], ["gnb", "gnb_shared"], [9, 30], 2, quality=False
    )
    run = runner.prepare(config, tmp_path / "run", command="test")
    assert made == ["iris"]
    grid = run.plans["iris"]
    assert grid.sizes == (9, 30) and grid.seeds == (0, 1) and grid.count == 4
    manifest = store.read_manifest(run.out)
    assert manifest["identity"]["tasks"]["iris"]["sizes"] == [9, 30]

    # The small cells of gnb first, as a run stopped after them would have stored them.
    gnb = run.specs["gnb"]
    runner._compute_missing(run, iris, gnb, grid.only([(9, 0), (9, 1)]))
    seen.clear()
    runner.execute(run)
    assert made == ["iris"]  # the grids reuse the plan prepare made
    by_model = dict(seen)
    assert by_model["gnb"].pairs == ((30, 0), (30, 1)) and by_model["gnb"].sizes == (9, 30)
    assert by_model["gnb_shared"] == grid
    stored = store.load(run.out)
    assert len(stored) == 8 and (stored["status"] == "ok").all()


def test_auto_sizes_come_from_the_plan(iris, tmp_path):
    config = runner.make_config(suites.get("quick"), ["iris"], ["gnb"], None, 2)
    run = runner.prepare(config, tmp_path / "run", command="test")
    expected = plan.auto_sizes(iris.pool_size, 3, config.size_count, config.smallest)
    assert run.plans["iris"].sizes == expected
    identity = store.read_manifest(run.out)["identity"]
    assert identity["tasks"]["iris"]["sizes"] == list(expected)
    assert identity == runner.identity(config, run.tasks, run.specs)


def test_run_grid_is_the_plan_of_its_product(iris):
    from gdbench import models

    rows_, _ = engine.run_grid(iris, models.get("gnb"), (9, 30), (0, 1))
    assert [(r["n_train"], r["seed"]) for r in rows_] == [(9, 0), (9, 1), (30, 0), (30, 1)]
