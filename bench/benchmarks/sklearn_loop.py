"""The scikit-learn baseline of the Ng & Jordan benchmark: a Python loop over the same cells.

For every (task, model) and every (size, seed) cell of ``gdbench.plan`` (the cell's training
subset is where its training weight is positive: exactly the examples gdbench's model fits on),
the loop standardizes as gdbench's engine does (on tasks whose ``preprocess`` is
``standardize``: mean and standard deviation of the cell's training subset, population
variance; a feature whose variance is <= 1e-12 keeps scale 1; the same transform applied to
the test set; other tasks, ``digits_bin``'s 0/1 pixels, as they are: the L2 penalty then acts
on the same coordinates on both sides, so the converged loop solves gdbench's problem), fits
the scikit-learn estimator on the subset, and scores it on the task's test set.

Estimators (the gdbench model each stands for):

- ``gnb``: ``GaussianNB(var_smoothing=1e-3)``, per-class variances, gdbench's default
  smoothing (``gnb?var_smoothing=1e-9`` would be scikit-learn's default);
- ``gnb_shared``: scikit-learn has no shared-variance naive Bayes; ``SharedVarianceNB`` is
  ``GaussianNB(var_smoothing=1e-3)`` whose per-class variances are replaced, after its fit, by
  their class-count-weighted pool (the within-class variance of each feature over all
  classes) plus the same smoothing: what gdbench's ``gnb_shared`` estimates, at
  ``GaussianNB``'s cost;
- ``bnb``: ``BernoulliNB(alpha=1.0, binarize=0.0)`` (Laplace smoothing; features binarized
  at 0, i.e. at the subset's mean after standardization, as gdbench's ``bnb``);
- ``logreg?C=10000`` and ``logreg`` (C = 1): ``LogisticRegression(C=..., solver="lbfgs",
  max_iter=max_iter)`` (scikit-learn's default tolerance; ``n_iter_`` is recorded, and cells
  that hit ``max_iter`` are counted); ``max_iter`` is 10,000 for the grid benchmark and 1,000
  (``SUITE_MAX_ITER``) for the suite's loop, as a researcher would write it;
- ``lda``: ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`` (Ledoit-Wolf);
- ``logreg-tight`` and ``logreg-tight?C=1``: the logistic regressions with ``tol=1e-10`` and
  ``max_iter=10000``, the converged references for accuracy agreement (not the timed
  baseline, which keeps the faster default tolerance).

Every cell is scored with ``predict_proba`` on the test set (accuracy: the most probable
class), as a study that reports likelihoods needs.

The whole ``ngjordan`` study (``--suite ngjordan``): the suite's tasks and models
(``gdbench.suites``), each task's sizes as ``gdbench run`` chooses them (``plan.auto_sizes``
with the suite's size count and smallest size) unless ``--sizes`` is given, the suite's seeds
unless ``--seeds`` is given; ``--tasks``/``--models`` narrow it. ``--sample K`` fits only K
cells per grid, spread evenly over its cells (their indices are recorded): for the converged
references, too slow for every cell.

BLAS/OpenMP threads: these fits are tiny, and on a 2-core machine a multi-threaded BLAS is many
times slower for them (threads waiting on each other); the loop therefore runs with one thread
(``threadpoolctl``) unless ``--threads`` says otherwise: the faster configuration of the
baseline.

Run as a script (what ``make bench`` times as a whole process, imports included)::

    python -m gdbench.benchmarks.sklearn_loop --tasks breast_cancer --models gnb \\
        --sizes 6,10,20 --seeds 100 --out sk.json
    python -m gdbench.benchmarks.sklearn_loop --suite ngjordan --out suite.json  # ~3-4 min

It writes JSON: for every task and model the accuracy of every cell (in the plan's size-major
order), the loop's wall seconds, and the solver iterations; no JAX is imported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from typing import Any

import numpy as np

from gdbench import plan

MAX_ITER = 10_000
#: ``max_iter`` of the logistic regressions in the suite's loop (``--suite``).
SUITE_MAX_ITER = 1000


def _shared_variance_nb():
    from sklearn.naive_bayes import GaussianNB

    class SharedVarianceNB(GaussianNB):
        """``GaussianNB`` with per-feature variances shared by the classes: after the fit,
        ``var_`` is the class-count-weighted mean of the per-class variances (the pooled
        within-class variance) plus ``epsilon_`` for every class."""

        def fit(self, x, y, sample_weight=None):
            super().fit(x, y, sample_weight)
            within = self.var_ - self.epsilon_
            pooled = (self.class_count_[:, None] * within).sum(0) / self.class_count_.sum()
            self.var_ = np.broadcast_to(pooled + self.epsilon_, self.var_.shape).copy()
            return self

    return SharedVarianceNB(var_smoothing=1e-3)


def estimator(model: str, max_iter: int = MAX_ITER):
    """A fresh scikit-learn estimator standing for gdbench model ``model`` (see module doc);
    ``max_iter``: the default-tolerance logistic regressions' iteration cap."""
    if model == "gnb":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=1e-3)
    if model == "gnb_shared":
        return _shared_variance_nb()
    if model == "bnb":
        from sklearn.naive_bayes import BernoulliNB

        return BernoulliNB(alpha=1.0, binarize=0.0)
    if model == "lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    if model in LOGREG_C:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=LOGREG_C[model], solver="lbfgs", max_iter=max_iter)
    if model in TIGHT_C:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=TIGHT_C[model], solver="lbfgs", tol=TIGHT_TOL, max_iter=MAX_ITER
        )
    raise ValueError(f"no scikit-learn baseline for model '{model}'; valid: {', '.join(VALID)}")


MODELS = ("gnb", "logreg?C=10000")
#: The default-tolerance logistic regressions, by gdbench spec: their C.
LOGREG_C = {"logreg?C=10000": 1e4, "logreg": 1.0}
#: ``logreg?C=10000`` solved to a tight tolerance: the reference for accuracy agreement (with
#: C = 1e4 on separable subsets the objective is flat, and lbfgs at its default tolerance
#: stops well short of the minimiser).
TIGHT = "logreg-tight"
TIGHT_TOL = 1e-10
#: The converged references by name, their C; ``TIGHT_OF`` maps a logistic regression to its.
TIGHT_C = {TIGHT: 1e4, "logreg-tight?C=1": 1.0}
TIGHT_OF = {"logreg?C=10000": TIGHT, "logreg": "logreg-tight?C=1"}
VALID = ("gnb", "gnb_shared", "bnb", *LOGREG_C, "lda", *TIGHT_C)


def sample_index(count: int, sample: int | None) -> np.ndarray:
    """Cell indices a loop fits: all ``count``, or ``sample`` of them spread evenly (the first
    and the last included), ascending and distinct."""
    if sample is None or sample >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max(1, sample)).round().astype(int))


def fit_cells(
    task,
    cells: plan.Cells,
    model: str,
    limit: int | None = None,
    max_iter: int = MAX_ITER,
    sample: int | None = None,
) -> dict[str, Any]:
    """Fit and score ``model``'s estimator on every cell (the first ``limit`` if given, or
    ``sample`` of them spread evenly: ``sample_index``).

    Returns ``accuracy`` (list, one per cell fitted, test-set fraction whose most probable
    class under ``predict_proba`` is the label), ``nll`` (mean -log of the label's
    probability, nats), ``seconds`` (wall seconds of the whole loop: subset,
    standardization, fit, ``predict_proba``), ``index`` (the cells fitted), ``n_iter``
    (solver iterations per cell, 0 for closed-form estimators) and ``hit_max_iter`` (cells
    whose solver stopped at its ``max_iter``).
    """
    count = cells.count if limit is None else min(limit, cells.count)
    index = sample_index(count, sample)
    x_pool = task.x_pool.astype(np.float64)
    x_test = task.x_test.astype(np.float64)
    accuracy, nll, n_iter, capped = [], [], [], 0
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is counted from n_iter_ instead
        for i in index:
            train = cells.w_train[i] > 0
            scaled = cells.w_train[i] + cells.w_val[i] > 0
            if task.preprocess == "standardize":
                mean, scale = plan.standardizer(x_pool[scaled])
            else:  # as the engine: raw features (digits_bin's 0/1 pixels)
                mean, scale = 0.0, 1.0
            est = estimator(model, max_iter).fit((x_pool[train] - mean) / scale, task.y_pool[train])
            proba = est.predict_proba((x_test - mean) / scale)
            # Every class is in every subset (``plan.seed_order``): columns are the labels.
            accuracy.append(float((est.classes_[proba.argmax(1)] == task.y_test).mean()))
            label_p = proba[np.arange(len(task.y_test)), task.y_test]
            nll.append(float(-np.log(np.maximum(label_p, 1e-300)).mean()))
            iters = int(np.max(getattr(est, "n_iter_", 0)))
            n_iter.append(iters)
            capped += int(iters >= getattr(est, "max_iter", math.inf))
    seconds = time.perf_counter() - t
    return {
        "accuracy": accuracy,
        "nll": nll,
        "seconds": seconds,
        "cells": len(index),
        "grid_cells": count,
        "index": index.tolist(),
        "n_iter": n_iter,
        "hit_max_iter": capped,
    }


def run(
    task_names: list[str],
    models: list[str],
    sizes: list[int] | None,
    seeds: int,
    threads: int = 1,
    max_iter: int = MAX_ITER,
    sample: int | None = None,
    suite=None,
) -> dict[str, Any]:
    """Every (task, model) loop over sizes x seeds 0..seeds-1 with ``threads`` BLAS/OpenMP
    threads (0: the libraries' default). ``sizes`` None: each task's sizes as ``gdbench run``
    chooses them for ``suite`` (a ``gdbench.suites.Suite``). Returns ``{"results": {task:
    {model: fit_cells}}, "sizes": {task: sizes}, "threads": ..., "load_seconds": ...}``."""
    from gdbench import tasks
    from gdbench.benchmarks.common import load_average

    t = time.perf_counter()
    loaded = {name: tasks.load(name) for name in task_names}
    load_s = time.perf_counter() - t
    results: dict[str, Any] = {}
    used: dict[str, list[int]] = {}
    # Every estimator's module (and through them SciPy's and NumPy's BLAS and OpenMP) loaded
    # before the thread limit: threadpoolctl limits only the libraries already loaded.
    import sklearn.discriminant_analysis
    import sklearn.linear_model
    import sklearn.naive_bayes  # noqa: F401

    limiter = None
    if threads > 0:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    from threadpoolctl import threadpool_info

    pools = [
        {k: p.get(k) for k in ("user_api", "internal_api", "num_threads")}
        for p in threadpool_info()
    ]
    try:
        for name, task in loaded.items():
            grid = sizes
            if grid is None:
                grid = plan.auto_sizes(
                    task.pool_size, task.num_classes, suite.size_count, suite.smallest
                )
            used[name] = [int(n) for n in grid]
            cells = plan.make_cells(
                task.y_pool, task.num_classes, tuple(grid), tuple(range(seeds)), validation=False
            )
            results[name] = {
                model: fit_cells(task, cells, model, max_iter=max_iter, sample=sample)
                for model in models
            }
    finally:
        if limiter is not None:
            limiter.unregister()
    return {
        "results": results,
        "sizes": used,
        "seeds": seeds,
        "threads": threads,
        "thread_pools": pools,
        "max_iter": max_iter,
        "load_seconds": load_s,
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gdbench.benchmarks.sklearn_loop", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suite", help="a suite's whole study (e.g. ngjordan); see module doc")
    parser.add_argument("--tasks", help="comma-separated task names (default: the suite's)")
    parser.add_argument("--models", help="comma-separated models (default: the suite's)")
    parser.add_argument("--sizes", help="comma-separated training sizes (default: the suite's)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the suite's)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: default)")
    parser.add_argument("--sample", type=int, help="fit only N cells per grid, spread evenly")
    parser.add_argument("--max-iter", type=int, help="max_iter of the default-tol logregs")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    suite = None
    if args.suite is not None:
        from gdbench import suites

        try:
            suite = suites.get(args.suite)
        except ValueError as e:
            parser.error(str(e))
    elif args.tasks is None or args.sizes is None or args.seeds is None:
        parser.error("--tasks, --sizes and --seeds are required without --suite")
    models = args.models.split(",") if args.models else list(suite.models if suite else MODELS)
    for m in models:
        if m not in VALID:
            parser.error(f"no scikit-learn baseline for model '{m}'; valid: {', '.join(VALID)}")
    task_names = args.tasks.split(",") if args.tasks else list(suite.tasks)
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else None
    seeds = args.seeds if args.seeds is not None else suite.seeds
    max_iter = args.max_iter or (SUITE_MAX_ITER if suite else MAX_ITER)
    out = run(task_names, models, sizes, seeds, args.threads, max_iter, args.sample, suite)
    out["suite"] = args.suite
    out["jax_imported"] = "jax" in sys.modules
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
