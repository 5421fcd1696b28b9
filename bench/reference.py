"""scikit-learn reference models (``sk:<Estimator>``) through the same cells, metrics and store.

A reference model is fitted on exactly the examples a gdbench model of the same cell sees: the
cell's subset from ``gdbench.plan.GridPlan.cells`` (the first ``n_train`` examples of the seed's
order; a reference model holds out no validation part of its own, so it gets all ``n_train``
examples, ``n_val`` = 0), in pool order, as float64. When the task standardizes, the features
are standardized with the subset's mean and standard deviation exactly as the engine does
(``engine._standardizer``: population variance, a feature with variance <= 1e-12 keeps scale 1),
and the test set with the same transform. ``random_state`` is the cell's seed where the
estimator takes one.

Every classification metric comes from the estimator's class probabilities with the
definitions of ``gdbench.metrics.classification_metrics`` (accuracy of the most probable class,
so for a Platt-calibrated SVM the argmax of its probabilities, which can differ from its
``predict``; NLL; Brier; 15-bin top-label ECE). Log-probabilities come from
``predict_log_proba`` where scikit-learn computes it in log space (naive Bayes, QDA: exact at
any margin, as gdbench's ``log_softmax``), else from ``predict_proba`` clipped below at float64
eps as ``sklearn.metrics.log_loss`` does, so a probability of exactly 0 (a decision tree, k-NN,
an overflowing logistic regression) costs 36.04 nats instead of infinity. ``SVC`` and
``LinearSVC`` have no probabilities of their own: they are wrapped in
``CalibratedClassifierCV(method="sigmoid", ensemble=False)`` with stratified k-fold
cross-validation (shuffled with the cell's seed) on the training subset, k = min(5, smallest
class count); a cell with a class of one example cannot be calibrated and fails.
Log-likelihoods are not reported (NaN), not even for the density models among them.

Cells are fitted one after another on the CPU, outside JAX: ``fit_s`` and ``predict_s`` are
each cell's own ``time.perf_counter`` wall times (after one untimed warm-up fit of the grid's
first cell, which absorbs one-off import costs), ``compile_s`` is 0 and ``flops`` unknown. A cell
whose estimator raises is stored with status ``failed`` and the exception as its message; the
other cells go on. Warnings (e.g. a ``ConvergenceWarning``) go into the row's message.
scikit-learn keeps its default BLAS/OpenMP threads (what its users get); on a busy machine the
small fits of a benchmark can be slowed many-fold by thread contention (a LogisticRegression
fit on 100 x 30 took 2 ms idle, 150 ms on a loaded 2-core machine), so compare times from an
otherwise idle machine.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gdbench import engine, plan
from gdbench.metrics import ECE_BINS
from gdbench.models.registry import ReferenceSpec
from gdbench.results.schema import COLUMNS, pack_correct
from gdbench.rows import NO_METRICS, cell_row, density_columns
from gdbench.tasks.base import Task
from gdbench.timing import GridTiming

#: Estimators whose ``predict_log_proba`` is computed in log space (the others take the log
#: of ``predict_proba``, which can underflow to 0).
LOG_SPACE = ("GaussianNB", "BernoulliNB", "QuadraticDiscriminantAnalysis")
#: Most folds of the cross-validation that calibrates SVC / LinearSVC probabilities.
CALIBRATION_FOLDS = 5
_MESSAGE_CHARS = 300


def probability_metrics(log_proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, NLL, Brier score and ECE of class log-probabilities ``log_proba`` ``[B, C]``
    (natural log, each row normalized) against integer labels ``y`` ``[B]``, in float64.

    The definitions of ``gdbench.metrics.classification_metrics`` (which applies them to
    ``log_softmax(logits)``): ``accuracy`` (fraction whose most probable class is ``y``; ties
    go to the lower class), ``nll`` (mean ``-log p(y|x)``, nats), ``brier`` (mean of
    ``sum_c (p_c - 1[y=c])^2``, in [0, 2]) and ``ece`` (top-label expected calibration error,
    ``ECE_BINS`` equal-width confidence bins); and, as ``gdbench.metrics.example_spread``,
    ``n_test``, the packed per-example outcomes ``test_correct`` and the standard deviations
    over examples ``nll_sd``, ``brier_sd`` and ``ece_sd`` (NaN for a single example).
    """
    logp = np.asarray(log_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if logp.ndim != 2 or y.shape != (logp.shape[0],):
        raise ValueError(f"log_proba must be [B, C] and y [B], got {logp.shape} and {y.shape}")
    p = np.exp(logp)
    rows = np.arange(len(y))
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1.0
    correct = (logp.argmax(1) == y).astype(np.float64)
    conf = p.max(1)
    bins = np.clip(np.floor(conf * ECE_BINS).astype(np.int64), 0, ECE_BINS - 1)
    gap = np.bincount(bins, weights=correct - conf, minlength=ECE_BINS)
    nll = -logp[rows, y]
    brier = ((p - onehot) ** 2).sum(1)
    sd = (lambda v: float(v.std(ddof=1))) if len(y) > 1 else (lambda v: math.nan)
    return {
        "accuracy": float(correct.mean()),
        "nll": float(nll.mean()),
        "brier": float(brier.mean()),
        "ece": float(np.abs(gap).sum() / len(y)),
        "n_test": len(y),
        "test_correct": pack_correct(correct > 0),
        "nll_sd": sd(nll),
        "brier_sd": sd(brier),
        "ece_sd": sd(correct - conf),
    }


def predict_log_proba(spec: ReferenceSpec, est, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``[B, num_classes]`` natural-log class probabilities of a fitted estimator.

    From ``predict_log_proba`` where the estimator computes it in log space (``LOG_SPACE``:
    exact at any margin, like gdbench's ``log_softmax``); otherwise the log of
    ``predict_proba`` with probabilities clipped below at float64 eps, as
    ``sklearn.metrics.log_loss`` does, so that a probability of exactly 0 costs 36.04 nats
    instead of infinity. Columns follow ``est.classes_``; a class the estimator never saw has
    probability 0 (the same clipping applies).
    """
    floor = math.log(np.finfo(np.float64).eps)
    out = np.full((x.shape[0], num_classes), floor)
    if spec.estimator in LOG_SPACE:
        logp = np.asarray(est.predict_log_proba(x), dtype=np.float64)
    else:
        proba = np.asarray(est.predict_proba(x), dtype=np.float64)
        logp = np.log(np.clip(proba, np.finfo(np.float64).eps, None))
    out[:, np.asarray(est.classes_, dtype=np.int64)] = logp
    return out


def make_estimator(spec: ReferenceSpec, seed: int, y_train: np.ndarray):
    """The unfitted estimator of one cell: ``spec``'s estimator with ``random_state=seed``,
    wrapped for Platt calibration when it has no probabilities of its own."""
    est = spec.make_estimator(seed)
    if not spec.calibrated:
        return est
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y_train)
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise ValueError(
            f"{spec.estimator} probabilities need Platt calibration by cross-validation, "
            "which needs at least 2 training examples of every class; one class has 1"
        )
    folds = StratifiedKFold(min(CALIBRATION_FOLDS, smallest), shuffle=True, random_state=seed)
    return CalibratedClassifierCV(est, method="sigmoid", cv=folds, ensemble=False)


def cell_data(
    task: Task, w_train: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of a cell whose examples are the pool rows with
    nonzero weight ``w_train`` ``[N]``: float64 features, standardized with the subset's
    statistics when the task standardizes."""
    idx = np.flatnonzero(np.asarray(w_train) > 0)
    x_train = np.asarray(task.x_pool, dtype=np.float64)[idx]
    x_test = np.asarray(task.x_test, dtype=np.float64)
    if task.preprocess == "standardize":
        mean, scale = plan.standardizer(x_train)
        x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale
    return x_train, np.asarray(task.y_pool)[idx], x_test, np.asarray(task.y_test)


def run_cells(
    task: Task, spec: ReferenceSpec, grid: plan.GridPlan | Sequence[tuple[int, int]]
) -> engine.GridResult:
    """Fit and evaluate the cells of ``grid`` (a ``gdbench.plan.GridPlan``, or (size, seed)
    pairs as the plan of just those cells) of one (task, sk: model).

    Returns an ``engine.GridResult``: one row per cell (``gdbench.rows.cell_row``; ``fit_s`` and
    ``predict_s`` each cell's own wall seconds, ``predict_per_s`` the grid's test examples per
    second of prediction, ``compile_s`` 0.0, ``flops`` NaN, ``log_lik`` NaN) and a timing whose
    ``fit_s`` / ``predict_s`` are the sums over the cells (seconds, one timed pass over the
    grid) and whose ``compile_s`` is 0; no samples. Raises ``plan.PlanError`` for sizes or
    seeds the task cannot use; an estimator that raises on a cell gives that cell a ``failed``
    row.
    """
    cells = plan.grid_of(task, grid).cells(task.y_pool, validation=False)
    config = spec.config_json()
    _warm_up(task, spec, cells.w_train[0] + cells.w_val[0], int(cells.seeds[0]))
    rows = []
    for i in range(cells.count):
        n, seed = int(cells.sizes[i]), int(cells.seeds[i])
        cell = _run_cell(task, spec, cells.w_train[i] + cells.w_val[i], seed)
        rows.append(
            cell_row(
                task,
                spec,
                n,
                seed,
                0,  # no validation part of its own: all n examples are fitted
                config=config,
                metrics=cell.metrics,
                density=density_columns(task),  # log-likelihoods are not reported
                measured={
                    "fit_s": cell.fit_s,
                    "predict_s": cell.predict_s,
                    "compile_s": 0.0,
                    "flops": math.nan,
                },
                grid_cells=cells.count,
                status=cell.status,
                message=cell.message,
            )
        )
    fit_s = float(np.nansum([r["fit_s"] for r in rows]))
    predict_s = float(np.nansum([r["predict_s"] for r in rows]))
    if "predict_per_s" in COLUMNS:  # per grid, as the engine's rows: test examples per second
        timed = sum(1 for r in rows if np.isfinite(r["predict_s"]))
        rate = len(task.y_test) * timed / predict_s if predict_s > 0 else math.nan
        for row in rows:
            row["predict_per_s"] = rate
    timing = _timing(
        compile_s=0.0,
        fit_s=fit_s,
        predict_s=predict_s,
        flops=math.nan,
        cached_programs=0,
        # The grid ran once (cell after cell), after an untimed warm-up fit of its first cell.
        fit_repeats=1,
        fit_min_s=fit_s,
        fit_max_s=fit_s,
        fit_times_s=(fit_s,),
        predict_repeats=1,
        predict_min_s=predict_s,
        predict_max_s=predict_s,
        predict_times_s=(predict_s,),
    )
    return engine.GridResult(rows, timing, None)


def _warm_up(task: Task, spec: ReferenceSpec, weights: np.ndarray, seed: int) -> None:
    """Fit and predict the first cell once, untimed and discarded, so that one-off costs
    (scikit-learn's lazy imports, thread pools) do not land in the first cell's times."""
    x_train, y_train, x_test, _ = cell_data(task, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = make_estimator(spec, seed, y_train).fit(x_train, y_train)
            predict_log_proba(spec, est, x_test, task.num_classes)
        except Exception:  # noqa: BLE001 - the timed fit records any error
            pass


@dataclasses.dataclass(frozen=True)
class _Cell:
    """What one cell's fit and prediction gave: its classification columns (``NO_METRICS``
    when it failed or diverged), its wall seconds (NaN when not reached), status and message."""

    metrics: dict[str, Any]
    fit_s: float
    predict_s: float
    status: str
    message: str


def _run_cell(task: Task, spec: ReferenceSpec, weights: np.ndarray, seed: int) -> _Cell:
    x_train, y_train, x_test, y_test = cell_data(task, weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est = make_estimator(spec, seed, y_train)
            t0 = time.perf_counter()
            est.fit(x_train, y_train)
            t1 = time.perf_counter()
            log_proba = predict_log_proba(spec, est, x_test, task.num_classes)
            t2 = time.perf_counter()
        except Exception as error:  # noqa: BLE001 - this cell fails, the grid goes on
            first = (str(error).strip().splitlines() or [""])[0]
            message = f"{type(error).__name__}: {first}"[:_MESSAGE_CHARS]
            return _Cell(NO_METRICS, math.nan, math.nan, "failed", message)
    notes = _warning_notes(caught)
    if not np.isfinite(log_proba).all():
        message = "; ".join(["non-finite predicted probabilities", *notes])[:_MESSAGE_CHARS]
        return _Cell(NO_METRICS, t1 - t0, t2 - t1, "diverged", message)
    metrics = probability_metrics(log_proba, y_test)
    return _Cell(metrics, t1 - t0, t2 - t1, "ok", "; ".join(notes)[:_MESSAGE_CHARS])


def _warning_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """One note per distinct warning category: ``Category: first line of its message``."""
    notes: dict[str, str] = {}
    for w in caught:
        name = w.category.__name__
        first = (str(w.message).strip().splitlines() or [""])[0]
        notes.setdefault(name, f"{name}: {first}")
    return list(notes.values())


def _timing(**known: Any) -> GridTiming:
    """An ``GridTiming`` with the given fields; any other field it declares without a
    default (a measurement a reference grid does not make) is NaN."""
    fields = dataclasses.fields(GridTiming)
    names = {f.name for f in fields}
    values = {k: v for k, v in known.items() if k in names}
    for f in fields:
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in values and no_default:
            values[f.name] = math.nan
    return GridTiming(**values)
