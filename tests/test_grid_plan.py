"""One plan per (task, grid) (gdbench.plan.GridPlan): the grid's sizes and seeds and the cells
still to compute, checked against the task's pool."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import plan, tasks


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
