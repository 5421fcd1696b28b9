"""The result rows of a grid (one per cell, in ``gdbench.results.schema``'s columns) from its
programs' outputs and measurements, and what the fit program's traces say per cell
(convergence of Newton solves, training traces).

``cell_row`` is the one row builder: the JAX engine's cells (``cell_rows``), the ``sk:``
reference cells (``gdbench.reference``) and the cells of a grid that could not be computed
(``failed_rows``) all get their rows from it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gdbench import plan
from gdbench.abilities import reports_density
from gdbench.fit import NEWTON_CONVERGED, NEWTON_STEPS
from gdbench.models.base import GenerativeModel
from gdbench.models.registry import ModelSpec, ReferenceSpec
from gdbench.quality_programs import QUALITY_COLUMNS
from gdbench.results.schema import COLUMNS, pack_correct
from gdbench.tasks.base import Task
from gdbench.timing import GridTiming


def newton_converged(fitted, count: int) -> np.ndarray | None:
    """Per cell (the first ``count``), whether every Newton stage of the fit converged
    (``gdbench.fit.NEWTON_CONVERGED`` traces); None when the model has no Newton stage."""
    flags = [
        np.asarray(value)[:count].astype(bool)
        for name, value in fitted[4].items()
        if name.startswith(NEWTON_CONVERGED)
    ]
    return np.logical_and.reduce(flags) if flags else None


def mark_convergence(row: dict[str, Any], converged: bool | None) -> None:
    """Set the row's ``converged`` column; the message of a cell whose convex solve did not
    converge says so (its status is kept: its metrics are those of the parameters reached)."""
    row["converged"] = None if converged is None else bool(converged)
    if converged is None or converged:
        return
    note = "solver did not converge (bench.fit convergence test)"
    row["message"] = "; ".join(filter(None, [row["message"], note]))


def add_cell_columns(
    rows: list[dict[str, Any]], columns: dict[str, Any], converged: np.ndarray | None
) -> None:
    """Add to each cell's row its entry of every array in ``columns`` (e.g. the robustness
    step's) and its ``converged`` flag (``newton_converged``; ``mark_convergence``)."""
    for i, row in enumerate(rows):
        row.update({k: v[i] for k, v in columns.items()})
        mark_convergence(row, None if converged is None else converged[i])


def add_step_errors(rows: list[dict[str, Any]], errors, size: int) -> None:
    """Append each non-empty message of ``errors`` (a step that failed, such as sample quality
    or robustness) to the message of the rows of training size ``size``, the cells it would
    have scored."""
    for error in errors:
        if not error:
            continue
        for row in rows:
            if row["n_train"] == size:
                row["message"] = "; ".join(filter(None, [row["message"], error]))


def grid_traces(cells: plan.Cells, fitted, size: int | None = None) -> dict[str, Any] | None:
    """The fit program's training traces (e.g. a GAN's losses) for training size ``size``
    (default: the grid's largest).

    Returns None when the model records none or no cell has that size, else ``{"n_train",
    "seeds", "arrays"}`` where ``arrays`` holds ``trace_step`` ``[T]``, every other trace as
    ``[S, T]`` over the ``seeds`` (ascending), and ``trace_samples`` ``[T, C, k, D]`` of the
    first seed in the task's original units when the model records samples.
    """
    traces = {
        k: v for k, v in fitted[4].items() if not k.startswith((NEWTON_STEPS, NEWTON_CONVERGED))
    }
    if not traces:
        return None
    n = int(cells.sizes.max() if size is None else size)
    idx = np.flatnonzero(cells.sizes == n)
    if idx.size == 0:
        return None
    idx = idx[np.argsort(cells.seeds[idx], kind="stable")]
    arrays: dict[str, np.ndarray] = {}
    for name, value in traces.items():
        value = np.asarray(value)
        if name == "trace_step":
            arrays[name] = value[idx[0]]
        elif name == "trace_samples":
            shift, scale = np.asarray(fitted[1][idx[0]]), np.asarray(fitted[2][idx[0]])
            arrays[name] = value[idx[0]] * scale + shift
        else:
            arrays[name] = value[idx]
    return {"n_train": n, "seeds": [int(s) for s in cells.seeds[idx]], "arrays": arrays}


#: The classification columns of a cell: accuracy, NLL, ECE, Brier score, the test examples
#: they are means over, the packed per-example outcomes and the per-example spreads (as
#: ``gdbench.metrics.classification_metrics`` and ``example_spread`` give them).
METRIC_COLUMNS = (
    "accuracy",
    "nll",
    "ece",
    "brier",
    "n_test",
    "test_correct",
    "nll_sd",
    "brier_sd",
    "ece_sd",
)
#: The classification columns of a cell that has no metrics (failed, or diverged).
NO_METRICS: dict[str, Any] = {
    **dict.fromkeys(("accuracy", "nll", "ece", "brier"), math.nan),
    "n_test": 0,
    "test_correct": b"",
    **dict.fromkeys(("nll_sd", "brier_sd", "ece_sd"), math.nan),
}


def cell_identity(
    task: Task, spec: ModelSpec | ReferenceSpec, n: int, seed: int, n_val: int, config: str
) -> dict[str, Any]:
    """The columns that say which cell a row is: task, model and its configuration
    (``config``: ``spec.config_json()``), training size, validation part, seed, the task's
    known Bayes accuracy and log-density (NaN when unknown) and its preprocessing."""
    return {
        "task": task.name,
        "model": spec.spec,
        "paradigm": spec.paradigm,
        "n_train": int(n),
        "n_val": int(n_val),
        "seed": int(seed),
        "bayes_accuracy": task.bayes_accuracy if task.bayes_accuracy is not None else math.nan,
        "true_log_lik": task.true_log_lik if task.true_log_lik is not None else math.nan,
        "model_config": config,
        "preprocess": task.preprocessing,
    }


def density_columns(
    task: Task,
    log_lik: float = math.nan,
    log_lik_sd: float = math.nan,
    elbo: float = math.nan,
    is_bound: bool | None = None,
) -> dict[str, Any]:
    """The likelihood columns of a cell: mean log p(x) per test example (nats, original
    units) and its spread, bits per dimension, whether it is a bound, the ELBO; by default
    those of a model that reports no likelihood of the task's data (NaN, bound null)."""
    return {
        "log_lik_sd": log_lik_sd,
        "log_lik": log_lik,
        "bits_per_dim": -log_lik / (task.dim * math.log(2.0)),
        "likelihood_is_bound": is_bound,
        "elbo": elbo,
    }


def cell_row(
    task: Task,
    spec: ModelSpec | ReferenceSpec,
    n: int,
    seed: int,
    n_val: int,
    *,
    config: str,
    metrics: dict[str, Any],
    density: dict[str, Any],
    measured: dict[str, Any],
    grid_cells: int,
    status: str,
    message: str,
    **extra: Any,
) -> dict[str, Any]:
    """One cell's result row, for JAX and ``sk:`` cells alike: ``cell_identity``, the
    classification columns (``METRIC_COLUMNS`` of ``metrics``; ``NO_METRICS`` when there are
    none), the likelihood columns (``density_columns``), the timing and cost columns
    ``measured`` and any ``extra`` columns, ``grid_cells``, ``status`` and ``message``.

    Every column must be one of ``gdbench.results.schema.COLUMNS`` (``KeyError`` otherwise);
    the store fills the columns a row leaves out with the schema's defaults."""
    row = {
        **cell_identity(task, spec, n, seed, n_val, config),
        **{k: metrics[k] for k in METRIC_COLUMNS},
        **density,
        **extra,
        **measured,
        "grid_cells": int(grid_cells),
        "status": status,
        "message": message,
    }
    unknown = [k for k in row if k not in COLUMNS]
    if unknown:
        raise KeyError(f"row column {unknown[0]!r} is not in the result schema")
    return row


def failed_rows(
    task: Task,
    spec: ModelSpec | ReferenceSpec,
    grid: plan.GridPlan | Sequence[tuple[int, int]],
    error: BaseException,
) -> list[dict[str, Any]]:
    """Rows recording that the cells of ``grid`` (a ``gdbench.plan.GridPlan``, or (size, seed)
    pairs, taken unchecked: this may record cells the task rejected) could not be computed
    (status ``failed``, metrics empty)."""
    pairs = grid.pairs if isinstance(grid, plan.GridPlan) else list(grid)
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    message = f"{type(error).__name__}: {first_line}"
    config = spec.config_json()
    unmeasured = dict.fromkeys(("fit_s", "predict_s", "compile_s", "flops"), math.nan)
    return [
        cell_row(
            task,
            spec,
            n,
            seed,
            0,
            config=config,
            metrics=NO_METRICS,
            density=density_columns(task),
            measured=unmeasured,
            grid_cells=len(pairs),
            status="failed",
            message=message,
        )
        for n, seed in pairs
    ]


def _status(m: dict[str, float], density: bool) -> tuple[str, str]:
    bad = [k for k in ("accuracy", "nll", "brier", "ece") if not np.isfinite(m[k])]
    if density and not np.isfinite(m["log_lik"]):
        bad.append("log_lik")
    if not m["params_finite"]:
        return "diverged", "non-finite fitted parameters" + (
            f"; non-finite {', '.join(bad)}" if bad else ""
        )
    if bad:
        return "diverged", f"non-finite {', '.join(bad)}"
    return "ok", ""


def cell_rows(task, spec, template, cells, metrics, timing) -> list[dict[str, Any]]:
    m_cells = cells.count
    density = reports_density(template, task)
    note = ""
    if isinstance(template, GenerativeModel) and not density:
        note = (
            f"log_lik n/a: {spec.name} is a density on {template.input_support} data, "
            f"task features are {task.feature_kind}"
        )
    rows = []
    n_val = cells.n_val
    config = spec.config_json()
    measured = _measurement_columns(timing, m_cells, len(task.y_test))
    correct = metrics["correct"]
    bound = bool(template.likelihood_is_bound) if density else None
    for i in range(m_cells):
        m = {k: float(v[i]) for k, v in metrics.items() if k != "correct"}
        status, message = _status(m, density)
        rows.append(
            cell_row(
                task,
                spec,
                cells.sizes[i],
                cells.seeds[i],
                n_val[i],
                config=config,
                metrics={**m, "n_test": correct.shape[1], "test_correct": pack_correct(correct[i])},
                density=density_columns(task, m["log_lik"], m["log_lik_sd"], m["elbo"], bound)
                if density
                else density_columns(task),
                measured=measured,
                grid_cells=m_cells,
                status=status,
                message="; ".join(filter(None, [message, note])),
                **{k: m.get(k, math.nan) for k in QUALITY_COLUMNS},
            )
        )
    return rows


def _measurement_columns(timing: GridTiming, cells: int, n_test: int) -> dict[str, float]:
    """The timing and cost columns of every row of a grid (results.schema says the units):
    grid seconds, FLOPs and bytes divided by the grid's cells; rates and peaks per grid."""
    return {
        "fit_s": timing.fit_s / cells,
        "fit_s_min": timing.fit_min_s / cells,
        "fit_s_max": timing.fit_max_s / cells,
        "fit_repeats": float(timing.fit_repeats),
        "predict_s": timing.predict_s / cells,
        "predict_s_min": timing.predict_min_s / cells,
        "predict_s_max": timing.predict_max_s / cells,
        "predict_repeats": float(timing.predict_repeats),
        "predict_per_s": n_test * cells / timing.predict_s if timing.predict_s > 0 else math.nan,
        "compile_s": timing.compile_s,
        "input_s": timing.input_s,
        "flops": timing.flops / cells,
        "fit_flops": timing.fit_flops / cells,
        "bytes": timing.bytes_accessed / cells,
        "peak_bytes": timing.peak_bytes,
        "flop_rate": timing.flop_rate,
        "peak_fraction": timing.peak_fraction,
    }
