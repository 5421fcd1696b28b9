"""How the cells of one (task, model) grid are computed: one interface for every kind of model.

The runner asks ``run_cells(task, spec, grid, options)`` for the cells of a grid's plan
(``gdbench.plan.GridPlan``: the grid's sizes and seeds and the (size, seed) cells to compute)
and gets a ``gdbench.engine.GridResult`` back, whatever the model is. Each kind of
model spec has its own ``CellRunner`` (a typed protocol), chosen here by the spec's type:

- ``ModelSpec`` (a JAX model, built in or a plug-in): ``gdbench.engine.run_cells``, one
  compiled fit program and one evaluate program over the cells;
- ``ReferenceSpec`` (``sk:<Estimator>``): ``gdbench.reference.run_cells``, scikit-learn on the
  CPU, one cell after another, outside JAX; the options of the JAX programs do not apply.

The specs live in ``gdbench.models.registry``, which may not import the engine (models never
import bench), so the choice of runner is made here rather than by a method of the spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from gdbench import engine, plan, reference
from gdbench.chunks import DEFAULT_CELL_BATCH
from gdbench.models.registry import ModelSpec, ReferenceSpec
from gdbench.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class GridOptions:
    """How a grid is computed, from the run's configuration; none of it changes a cell's
    identity, only which extra columns are filled and how the programs are laid out and timed
    (see ``gdbench.engine.run_cells`` for each)."""

    cell_batch: int = DEFAULT_CELL_BATCH
    quality: bool = True
    devices: int | None = None
    data_parallel: int = 1
    robustness: bool = False
    ood: str | None = None
    steady: bool = False


class CellRunner(Protocol):
    """Computes the cells ``grid.pairs`` of one (task, model) grid: one result row per cell
    (``gdbench.rows``), the grid's timing, samples and traces (or None); the cells of the
    grid's ``scored_size`` (its largest) get the sample-quality and robustness columns.
    Raises ``gdbench.plan.PlanError`` for cells the task cannot have; any other exception fails
    the whole grid (the runner then stores ``gdbench.rows.failed_rows``)."""

    def __call__(
        self, task: Task, spec: Any, grid: plan.GridPlan, options: GridOptions
    ) -> engine.GridResult: ...


def _jax_cells(
    task: Task, spec: ModelSpec, grid: plan.GridPlan, options: GridOptions
) -> engine.GridResult:
    return engine.run_cells(
        task,
        spec,
        grid,
        options.cell_batch,
        quality=options.quality,
        devices=options.devices,
        data=options.data_parallel,
        robustness=options.robustness,
        ood=options.ood,
        steady=options.steady,
    )


def _reference_cells(
    task: Task, spec: ReferenceSpec, grid: plan.GridPlan, options: GridOptions
) -> engine.GridResult:
    return reference.run_cells(task, spec, grid)


#: The runner of each kind of model spec (a subclass gets its base class's runner).
RUNNERS: dict[type, CellRunner] = {ModelSpec: _jax_cells, ReferenceSpec: _reference_cells}


def runner_for(spec: Any) -> CellRunner:
    """The ``CellRunner`` of ``spec``'s kind; ``TypeError`` for an object that is no model
    spec (``gdbench.models.get`` makes them)."""
    for kind in type(spec).__mro__:
        if kind in RUNNERS:
            return RUNNERS[kind]
    kinds = ", ".join(k.__name__ for k in RUNNERS)
    raise TypeError(f"no cell runner for a {type(spec).__name__}; model specs are: {kinds}")


def run_cells(
    task: Task,
    spec: Any,
    grid: plan.GridPlan | Sequence[tuple[int, int]],
    options: GridOptions | None = None,
) -> engine.GridResult:
    """Compute the cells of ``grid`` (a ``gdbench.plan.GridPlan``, or (size, seed) pairs as
    the plan of just those cells) of the grid (``task``, ``spec``) with the spec's runner."""
    return runner_for(spec)(task, spec, plan.grid_of(task, grid), options or GridOptions())
