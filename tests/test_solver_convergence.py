"""Every convex cell reaches its optimum, and a cell that does not is marked in its row.

One table of tasks x training sizes x C: each row fits a few cells of ``logreg`` through the
engine's grid program (the same vmapped, chunked program ``gdbench run`` compiles: with ten
classes L-BFGS finished by damped Newton steps that stop per cell at the decrement test, with
two classes or ``newton_method=newton`` such steps alone) and evaluates, in float64, the
objective ``sum_i loss_i + ||W||^2 / (2C)`` of the fitted parameters on each cell's subset. The
reference optimum is scikit-learn's ``LogisticRegression`` (``solver="newton-cholesky"``,
``tol=1e-10``) fitted in float64 on the same rows in the same coordinates (the cell's
standardization when the task is standardized, its raw 0/1 features otherwise). A cell marked
converged must be within 1e-4 of it (relative), and every cell of the ten-class rows and the C
= 1 rows must be so marked (with the former fixed damping 25 steps left ten-class digits_bin n
= 20 6.5e-4 short); the ten-class rows run both solvers. The mean test accuracy over the row's
cells must be within 0.01 of the reference's (per cell, a flat objective on a separable subset
of 6 examples leaves far test points on either side: 3 of 171 points apart at 1.03e-4 of the
optimum).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from scipy.special import log_expit, logsumexp
from sklearn.linear_model import LogisticRegression

from gdbench import engine, fit, models, tasks
from gdbench.benchmarks.grid import CompiledGrid
from gdbench.rows import newton_converged

#: Relative gap to the float64 optimum every cell must reach (issue 25).
RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class Case:
    task: str
    C: float
    sizes: tuple[int, ...]
    seeds: tuple[int, ...] = (0, 1)
    #: every cell must converge (the L-BFGS path iterates until it does). The default 25
    #: Newton steps on separable subsets at C = 1e4 stop short of the tolerance (digits_2v3
    #: n = 6: 4e-3; ten-class digits_bin n = 20: 6.5e-4): those cells must then be marked.
    must_converge: bool = True
    method: str = "auto"
    #: more of the spec: ``&polish_steps=10`` finishes ten-class L-BFGS with Newton steps
    extra: str = ""


CASES = [
    Case("digits_bin", 1e4, (20, 131, 592, 1258)),
    Case("digits_bin", 1.0, (20, 131, 592, 1258)),
    Case("digits_bin", 1e4, (20, 131, 592, 1258), method="newton"),
    Case("digits_bin", 1.0, (20, 131, 592, 1258), method="newton"),
    Case("digits_bin", 1e4, (20, 592), extra="&polish_steps=10"),
    # One whole chunk of 40 cells: XLA's CPU library fusions once summed lanes >= 26 of such
    # a chunk wrongly, and L-BFGS stopped those cells early (tests/test_xla_cpu.py).
    Case("digits_bin", 1e4, (90,), seeds=tuple(range(40))),
    # Two classes, C = 1e4: separable subsets, where confidently right examples have losses
    # of 1e-7 and below. Written as softplus(s) - y s, float32 kept such a loss to about 1e-6
    # (a difference of two numbers near s), Newton's line search saw the last steps as rises,
    # and these cells stopped 1e-5 to 3e-3 short after 100 steps (14 % converged on
    # digits_0v1's grid); with softplus((1 - 2 y) s) every one converges in 15 to 18 steps.
    Case("breast_cancer", 1e4, (6, 40, 398), seeds=(0, 1, 2, 3)),
    Case("breast_cancer", 1.0, (6, 40, 398)),
    Case("digits_2v3", 1e4, (6, 24, 60, 290), seeds=(0, 1, 2, 3)),
    Case("digits_0v1", 1e4, (6, 24, 60, 287), seeds=(0, 1, 2, 3)),
]


def _objective(z, y, w, b, C, k):
    scores = z @ w + b
    if k == 2:
        s = scores[:, 0]
        loss = -np.where(y == 1, log_expit(s), log_expit(-s))
    else:
        loss = logsumexp(scores, axis=1) - scores[np.arange(len(y)), y]
    return loss.sum() + 0.5 * np.sum(w**2) / C


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.task}-C{c.C:g}-{c.method}{c.extra}")
def test_every_cell_reaches_the_float64_optimum(case: Case):
    task = tasks.load(case.task)
    spec = models.get(f"logreg?C={case.C:g}&newton_method={case.method}{case.extra}")
    grid = CompiledGrid(task, spec, [(n, s) for n in case.sizes for s in case.seeds])
    fitted = grid.fit()
    converged = newton_converged(fitted, grid.cells.count)
    assert converged is not None
    weights = np.asarray(fitted[0]["w"][...], np.float64)
    biases = np.asarray(fitted[0]["b"][...], np.float64)
    shift, scale = (np.asarray(a, np.float64) for a in fitted[1:3])
    metrics = grid.evaluate(fitted)
    gaps, accuracy = [], []
    x_pool, x_test = task.x_pool.astype(np.float64), task.x_test.astype(np.float64)
    for i in range(grid.cells.count):
        rows = grid.cells.w_train[i] > 0
        z, y = (x_pool[rows] - shift[i]) / scale[i], task.y_pool[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(
                C=case.C, solver="newton-cholesky", tol=1e-10, max_iter=1000
            ).fit(z, y)
        k = task.num_classes
        best = _objective(z, y, ref.coef_.T, ref.intercept_, case.C, k)
        ours = _objective(z, y, weights[i], biases[i], case.C, k)
        cell = f"{case.task} C={case.C:g} n={grid.cells.sizes[i]} seed={grid.cells.seeds[i]}"
        # The flag is truthful: a cell marked converged is within RTOL of the optimum.
        if converged[i]:
            assert ours - best <= RTOL * abs(best), f"{cell}: {ours} vs optimum {best}"
        elif case.must_converge:
            raise AssertionError(f"{cell} not marked converged ({ours} vs optimum {best})")
        gaps.append((ours - best) / abs(best))
        ref_acc = (ref.predict((x_test - shift[i]) / scale[i]) == task.y_test).mean()
        accuracy.append((float(metrics["accuracy"][i]), ref_acc))
    if case.must_converge:
        assert np.median(gaps) <= RTOL
    ours_acc, ref_acc = np.mean(accuracy, axis=0)
    assert abs(ours_acc - ref_acc) <= 0.01, (ours_acc, ref_acc)


def test_lbfgs_by_default_for_coupled_outputs_and_never_for_separable_outputs():
    stage = models.get("logreg").build(64, 10, None).fit_plan()[0]
    assert fit.resolve_method(stage, (64, 10)) == "lbfgs"
    assert fit.resolve_method(stage, (30, 1)) == "newton"  # two classes: one output
    newton = models.get("logreg?newton_method=newton").build(64, 10, None).fit_plan()[0]
    assert fit.resolve_method(newton, (64, 10)) == "newton"
    svm = dataclasses.replace(models.get("linsvm").build(64, 10, None).fit_plan()[0])
    svm = dataclasses.replace(svm, method="lbfgs")
    assert fit.resolve_method(svm, (64, 10)) == "newton"  # one-vs-rest: separable blocks


@pytest.mark.parametrize(
    "task_name, spec",
    [
        ("digits_bin", "logreg?C=10000&newton_method=lbfgs&lbfgs_steps=3"),
        ("breast_cancer", "logreg?newton_steps=1"),
    ],
)
def test_a_cell_that_did_not_converge_is_marked_in_its_row(task_name: str, spec: str):
    task = tasks.load(task_name)
    result = engine.run_cells(task, models.get(spec), [(200, 0), (200, 1)], quality=False)
    for row in result.rows:
        assert row["converged"] is False
        assert "did not converge" in row["message"]
    full = engine.run_cells(task, models.get("logreg"), [(200, 0)], quality=False).rows[0]
    assert full["converged"] is True and full["status"] == "ok"


def test_models_without_an_iterative_convex_solve_leave_converged_null():
    task = tasks.load("breast_cancer")
    (row,) = engine.run_cells(task, models.get("gnb"), [(40, 0)], quality=False).rows
    assert row["converged"] is None and row["status"] == "ok"
