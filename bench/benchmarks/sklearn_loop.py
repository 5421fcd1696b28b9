"""The scikit-learn baseline of the Ng & Jordan benchmark: a Python loop over the same cells.

For every (task, model) and every (size, seed) cell of ``bench.plan`` (the cell's training
subset is where its training weight is positive: exactly the examples gdbench's model fits on),
the loop standardizes as gdbench's engine does (mean and standard deviation of the cell's
training subset, population variance; a feature whose variance is <= 1e-12 keeps scale 1; the
same transform applied to the test set), fits the scikit-learn estimator on the subset, and
scores it on the task's test set.

Estimators (the gdbench model each stands for):

- ``gnb``: ``GaussianNB(var_smoothing=1e-3)``, per-class variances, gdbench's default
  smoothing (``gnb?var_smoothing=1e-9`` would be scikit-learn's default);
- ``gnb_shared``: scikit-learn has no shared-variance naive Bayes, so it is not offered here;
- ``logreg?C=10000``: ``LogisticRegression(C=1e4, solver="lbfgs", max_iter=10000)``
  (scikit-learn's default tolerance; ``n_iter_`` is recorded, and cells that hit ``max_iter``
  are counted);
- ``logreg-tight``: the same with ``tol=1e-10``, the converged reference for accuracy
  agreement (not the timed baseline, which keeps the faster default tolerance).

BLAS/OpenMP threads: these fits are tiny, and on a 2-core machine a multi-threaded BLAS is many
times slower for them (threads waiting on each other); the loop therefore runs with one thread
(``threadpoolctl``) unless ``--threads`` says otherwise: the faster configuration of the
baseline.

Run as a script (what ``make bench`` times as a whole process, imports included)::

    python -m bench.benchmarks.sklearn_loop --tasks breast_cancer --models gnb \\
        --sizes 6,10,20 --seeds 100 --out sk.json

It writes JSON: for every task and model the accuracy of every cell (in the plan's size-major
order), the loop's wall seconds, and the solver iterations; no JAX is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np

from bench import plan

MAX_ITER = 10_000


def estimator(model: str):
    """A fresh scikit-learn estimator standing for gdbench model ``model`` (see module doc)."""
    if model == "gnb":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=1e-3)
    if model == "logreg?C=10000":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e4, solver="lbfgs", max_iter=MAX_ITER)
    if model == TIGHT:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e4, solver="lbfgs", tol=TIGHT_TOL, max_iter=MAX_ITER)
    raise ValueError(f"no scikit-learn baseline for model '{model}'; valid: {', '.join(VALID)}")


MODELS = ("gnb", "logreg?C=10000")
#: ``logreg?C=10000`` solved to a tight tolerance: the reference for accuracy agreement (with
#: C = 1e4 on separable subsets the objective is flat, and lbfgs at its default tolerance
#: stops well short of the minimiser).
TIGHT = "logreg-tight"
TIGHT_TOL = 1e-10
VALID = (*MODELS, TIGHT)


def fit_cells(task, cells: plan.Cells, model: str, limit: int | None = None) -> dict[str, Any]:
    """Fit and score ``model``'s estimator on every cell (the first ``limit`` if given).

    Returns ``accuracy`` (list, one per cell, test-set fraction correct), ``seconds`` (wall
    seconds of the whole loop: subset, standardization, fit, predict), ``n_iter`` (solver
    iterations per cell, 0 for closed-form estimators) and ``hit_max_iter`` (cells whose
    solver stopped at ``MAX_ITER``).
    """
    count = cells.count if limit is None else min(limit, cells.count)
    x_pool = task.x_pool.astype(np.float64)
    x_test = task.x_test.astype(np.float64)
    accuracy, n_iter = [], []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is counted from n_iter_ instead
        for i in range(count):
            train = cells.w_train[i] > 0
            scaled = cells.w_train[i] + cells.w_val[i] > 0
            mean, scale = plan.standardizer(x_pool[scaled])
            est = estimator(model).fit((x_pool[train] - mean) / scale, task.y_pool[train])
            predicted = est.predict((x_test - mean) / scale)
            accuracy.append(float((predicted == task.y_test).mean()))
            n_iter.append(int(np.max(getattr(est, "n_iter_", 0))))
    seconds = time.perf_counter() - t
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "cells": count,
        "n_iter": n_iter,
        "hit_max_iter": int(sum(n >= MAX_ITER for n in n_iter)),
    }


def run(
    task_names: list[str],
    models: list[str],
    sizes: list[int],
    seeds: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Every (task, model) loop over sizes x seeds 0..seeds-1 with ``threads`` BLAS/OpenMP
    threads (0: the libraries' default). Returns ``{"results": {task: {model: fit_cells}},
    "threads": ..., "load_seconds": ...}``."""
    import tasks
    from bench.benchmarks.common import load_average

    t = time.perf_counter()
    loaded = {name: tasks.load(name) for name in task_names}
    load_s = time.perf_counter() - t
    results: dict[str, Any] = {}
    limiter = None
    if threads > 0:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    try:
        for name, task in loaded.items():
            cells = plan.make_cells(
                task.y_pool, task.num_classes, tuple(sizes), tuple(range(seeds)), validation=False
            )
            results[name] = {model: fit_cells(task, cells, model) for model in models}
    finally:
        if limiter is not None:
            limiter.unregister()
    return {
        "results": results,
        "threads": threads,
        "load_seconds": load_s,
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmarks.sklearn_loop", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", required=True, help="comma-separated task names")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--sizes", required=True, help="comma-separated training sizes")
    parser.add_argument("--seeds", type=int, required=True, help="seeds 0..N-1")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    for m in models:
        if m not in VALID:
            parser.error(f"no scikit-learn baseline for model '{m}'; valid: {', '.join(VALID)}")
    sizes = [int(v) for v in args.sizes.split(",")]
    out = run(args.tasks.split(","), models, sizes, args.seeds, args.threads)
    out["jax_imported"] = "jax" in sys.modules
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
