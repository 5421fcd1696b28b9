"""Newton solves that stop at convergence (``Newton.tol``, ``gdbench.fit._iterate_newton``; the
``newton_tol`` option of ``logreg`` and ``linsvm``, off by default) and the FLOPs counted for
them (``gdbench.cost.program_cost``).

With ``tol > 0`` a cell stops after a step that moved no parameter by more than
``tol (1 + max |parameter|)``; ``tol = 0`` runs every step as a ``lax.scan``. Checked here:

- on a step with a known contraction, each vmapped cell stops at the step the rule gives for
  it alone (cells do not wait for each other's values, only for each other's time), and
  ``tol = 0`` takes all steps;
- ``run_plan`` reports the steps of each Newton stage and the engine keeps them out of the
  training traces;
- ``logreg`` and ``linsvm`` grids at ``newton_tol=1e-4`` give the test accuracies of all 25
  steps in every cell of these grids, in fewer steps;
- the fit program's FLOPs count the convergence loop by the cells' mean steps: the same as
  the 25-step program's count at 25 steps, proportional in between, and flagged as a lower
  bound (counted once) when the steps are not given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gdbench import cost as cost_module
from gdbench import engine, fit, models, plan, tasks
from gdbench.benchmarks.grid import cell_keys
from gdbench.cost import newton_step_counts, program_cost
from gdbench.models.base import Newton
from gdbench.models.registry import ModelSpecError
from gdbench.rows import grid_traces, newton_converged


def _halving(x):
    return x * 0.5


def _steps_alone(x0: float, tol: float, steps: int) -> int:
    """Steps the rule takes for one cell, counted by hand in float64."""
    x, taken = x0, 0
    while taken < steps:
        moved = x * 0.5
        taken += 1
        if abs(moved - x) / (1.0 + abs(x)) <= tol:
            break
        x = moved
    return taken


@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_each_vmapped_cell_stops_at_its_own_step(tol: float):
    starts = np.array([1e-3, 1.0, 1e3, 1e6], np.float32)
    stage = Newton(steps=60, tol=tol)
    final, taken = jax.vmap(lambda x: fit._iterate_newton(_halving, x, stage))(jnp.asarray(starts))
    want = [_steps_alone(float(x), tol, 60) for x in starts]
    assert len(set(want)) > 1  # the cells do stop at different steps
    np.testing.assert_array_equal(np.asarray(taken), want)
    np.testing.assert_allclose(np.asarray(final), starts * 0.5 ** np.asarray(want), rtol=1e-6)


def test_zero_tolerance_takes_every_step():
    final, taken = fit._iterate_newton(_halving, jnp.float32(1.0), Newton(steps=7, tol=0.0))
    assert int(taken) == 7
    assert float(final) == 0.5**7


def test_run_plan_reports_each_newton_stage_and_the_engine_keeps_it_out_of_traces():
    task = tasks.load("breast_cancer")
    cells = plan.make_cells(task.y_pool, task.num_classes, (40,), (0,), validation=True)
    model = models.get("linsvm?newton_tol=1e-4").build(task.dim, task.num_classes, nnx.Rngs(0))
    x = jnp.asarray((task.x_pool - task.x_pool.mean(0)) / task.x_pool.std(0))
    traces = fit.run_plan(
        model,
        x,
        jnp.asarray(task.y_pool),
        jnp.asarray(cells.w_train[0]),
        jnp.asarray(cells.w_val[0]),
        jax.random.key(0),
    )
    steps = {k: int(v) for k, v in traces.items() if k.startswith(fit.NEWTON_STEPS)}
    assert set(steps) == {f"{fit.NEWTON_STEPS}0", f"{fit.NEWTON_STEPS}1"}  # SVM, then Platt
    converged = {k for k in traces if k.startswith(fit.NEWTON_CONVERGED)}
    assert converged == {f"{fit.NEWTON_CONVERGED}0", f"{fit.NEWTON_CONVERGED}1"}
    assert set(traces) == set(steps) | converged
    assert 1 <= steps[f"{fit.NEWTON_STEPS}0"] < 25
    fitted = (None, None, None, None, {k: jnp.asarray([v]) for k, v in traces.items()})
    assert newton_step_counts(fitted, 1) == {
        0: steps[f"{fit.NEWTON_STEPS}0"],
        1: steps[f"{fit.NEWTON_STEPS}1"],
    }
    assert grid_traces(cells, fitted) is None
    assert newton_converged(fitted, 1).shape == (1,)


def _fit_program(task, spec, pairs):
    """The compiled fit program of a grid, its arguments and its outputs."""
    cells = plan.make_cells_for(task.y_pool, task.num_classes, pairs, validation=False)
    template = engine.build_template(task, spec)
    fit_grid, _ = engine.build_programs(task, spec, template, 16)
    args = (
        cell_keys(cells),
        jnp.asarray(cells.w_train),
        jnp.asarray(cells.w_val),
        jnp.asarray(task.x_pool),
        jnp.asarray(task.y_pool),
    )
    compiled = jax.jit(fit_grid).lower(*args).compile()
    return compiled, jax.block_until_ready(compiled(*args)), cells.count


def test_flops_count_the_convergence_loop_by_the_steps_taken():
    task = tasks.load("wine")
    pairs = [(n, s) for n in (20, 60) for s in range(3)]
    stopping, fitted, count = _fit_program(task, models.get("logreg?newton_tol=1e-4"), pairs)
    # newton_rtol=0: every cell takes all 25 steps, as a lax.scan.
    every, _, _ = _fit_program(task, models.get("logreg?newton_rtol=0"), pairs)
    steps = newton_step_counts(fitted, count)
    assert set(steps) == {0} and 1 < steps[0] < 25

    full = program_cost(every)  # a lax.scan: XLA knows its trip count
    assert full.unknown_loops == 0
    at_budget = program_cost(stopping, {0: 25.0})
    assert at_budget.unknown_loops == 0
    assert at_budget.flops == pytest.approx(full.flops, rel=0.05)  # the same 25 steps

    counted = program_cost(stopping, steps)
    once = program_cost(stopping, {0: 1.0})
    per_step = (at_budget.flops - once.flops) / 24
    assert counted.flops == pytest.approx(once.flops + (steps[0] - 1) * per_step, rel=1e-6)
    assert counted.flops < full.flops * (steps[0] + 1) / 25

    unnamed = program_cost(stopping)  # steps unknown: the body once, flagged
    assert unnamed.unknown_loops == 1
    assert unnamed.flops == pytest.approx(once.flops, rel=1e-6)

    # The parse is memoized per program (grids share programs, each with its own steps):
    # the memo gives what a fresh parse gives.
    fresh = (counted.flops, counted.bytes_accessed, counted.unknown_loops)
    cost_module._PARSED.clear()
    again = program_cost(stopping, steps)
    assert (again.flops, again.bytes_accessed, again.unknown_loops) == fresh


@pytest.mark.parametrize("spec", ["logreg?polish_steps=0", "logreg?polish_steps=10"])
def test_flops_count_the_lbfgs_loop_by_its_iterations(spec: str):
    task = tasks.load("wine")  # three classes: L-BFGS (then Newton steps, with polish_steps)
    compiled, fitted, count = _fit_program(task, models.get(spec), [(60, 0), (60, 1)])
    steps = newton_step_counts(fitted, count)
    key = f"0{fit.LBFGS}"
    assert set(steps) == {0, key} and steps[key] > 2
    assert steps[0] >= 1 if spec.endswith("10") else steps[0] == 0
    once = program_cost(compiled, {0: steps[0], key: 1.0})
    twice = program_cost(compiled, {0: steps[0], key: 2.0})
    counted = program_cost(compiled, steps)
    per_iteration = twice.flops - once.flops
    assert per_iteration > 0
    assert counted.flops == pytest.approx(once.flops + (steps[key] - 1) * per_iteration, rel=1e-6)
    assert counted.unknown_loops == 0


@pytest.mark.parametrize("name", ["logreg", "linsvm"])
def test_a_stopping_tolerance_keeps_every_cells_accuracy(name: str):
    task = tasks.load("wine")
    pairs = [(n, s) for n in (12, 40, 100) for s in range(4)]
    rows = {}
    for spec in (name, f"{name}?newton_tol=1e-4"):
        result = engine.run_cells(task, models.get(spec), pairs, quality=False)
        rows[spec] = result.rows
        assert all(r["status"] == "ok" for r in result.rows)
    for a, b in zip(rows[name], rows[f"{name}?newton_tol=1e-4"], strict=True):
        assert a["accuracy"] == b["accuracy"]
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-3)


@pytest.mark.parametrize("spec", ["logreg?newton_tol=-1", "linsvm?newton_tol=-1", "logreg?C=0"])
@pytest.mark.fast
def test_negative_tolerance_or_nonpositive_c_is_a_clear_error(spec: str):
    with pytest.raises(ModelSpecError, match="needs C > 0 and newton_tol >= 0"):
        models.get(spec)
