"""Per-group statistics over seeds: mean, standard deviation, 95% Student-t intervals, and the
paired significance test (with Holm's correction) that every report uses to compare two models
or two runs on the same seeds.

Only rows with status "ok" enter a statistic; the number of other rows in each group is kept in
the `n_not_ok` column so that failed or diverged cells are never silently averaged away.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from results.schema import CELL_KEY

DEFAULT_BY = ("task", "model", "paradigm", "n_train")
CONFIDENCE = 0.95


class DuplicateCellError(ValueError):
    """The same (task, model, n_train, seed) cell appears more than once (e.g. in two runs)."""


def t_half_width(std: float | np.ndarray, count: int | np.ndarray) -> np.ndarray:
    """Half-width of the two-sided 95% Student-t interval of a mean: t_{0.975, n-1} s / sqrt(n).

    `std` is the sample standard deviation (ddof=1) in the metric's units; the result is in
    the same units, NaN where fewer than two values are available.
    """
    std = np.asarray(std, dtype=float)
    count = np.asarray(count, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(count >= 2, count - 1, np.nan)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * std / np.sqrt(count)
    return np.where(count >= 2, half, np.nan)


def summarize(
    df: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = DEFAULT_BY,
) -> pd.DataFrame:
    """Mean, std (ddof=1), count and 95% t-interval half-width of each metric per group.

    Returns one row per group (every group present in `df`, including groups whose rows all
    failed) with the `by` columns, then for each metric `<m>_mean`, `<m>_std`, `<m>_count`
    (ok rows with a non-NaN value) and `<m>_ci95` (half-width, metric units; NaN for
    count < 2), then `n_ok` and `n_not_ok` (rows per group by status).
    """
    by = list(by)
    missing = [c for c in [*by, *metrics, "status"] if c not in df.columns]
    if missing:
        raise KeyError(f"summarize: no column {missing[0]!r} in the rows")
    ok = df["status"] == "ok"
    groups = df.groupby(by, dropna=False, sort=True)
    out = pd.DataFrame(index=groups.size().index)
    ok_groups = df[ok].groupby(by, dropna=False, sort=True)
    for m in metrics:
        values = ok_groups[m]
        mean = values.mean().reindex(out.index)
        std = values.std(ddof=1).reindex(out.index)
        count = values.count().reindex(out.index).fillna(0).astype("int64")
        out[f"{m}_mean"] = mean.astype(float)
        out[f"{m}_std"] = std.astype(float)
        out[f"{m}_count"] = count
        out[f"{m}_ci95"] = t_half_width(out[f"{m}_std"].to_numpy(), count.to_numpy())
    n_ok = df.assign(_ok=ok).groupby(by, dropna=False, sort=True)["_ok"].sum()
    out["n_ok"] = n_ok.astype("int64")
    out["n_not_ok"] = groups.size().astype("int64") - out["n_ok"]
    return out.reset_index()


def check_unique_cells(df: pd.DataFrame) -> None:
    """Raise `DuplicateCellError` if a (task, model, n_train, seed) cell occurs twice, which
    would pool one seed as two independent samples (e.g. the same seeds loaded from two runs)."""
    dup = df.duplicated(subset=list(CELL_KEY))
    if dup.any():
        row = df.loc[dup.idxmax()]
        key = ", ".join(f"{k}={row[k]!r}" for k in CELL_KEY)
        runs = ""
        if "run" in df.columns:
            same = (df[list(CELL_KEY)] == row[list(CELL_KEY)]).all(axis=1)
            runs = f" (runs: {', '.join(sorted(df.loc[same, 'run'].astype(str)))})"
        raise DuplicateCellError(f"cell {key} appears more than once{runs}")


def paired_p(diff: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the paired Student t-test that the mean of `diff` is zero.

    `diff` holds per-seed paired differences (e.g. metric of model B - metric of model A on
    the same (task, n_train, seed), which were trained on identical subsets): this is the
    one-sample t-test of the differences, `scipy.stats.ttest_1samp(diff, 0)`, equal to
    `scipy.stats.ttest_rel(b, a)`. Returns a probability in [0, 1], or NaN when there is no
    test.

    Why a t-test rather than the Wilcoxon signed-rank test: it tests the mean difference, the
    quantity the reports show (with its 95% t-interval) and on which the learning-curve
    crossover is defined, so the mark and the interval agree; and with few seeds Wilcoxon
    cannot reject at all: its exact two-sided p is at least 2 / 2^k for k non-zero
    differences, 0.0625 with the 5 seeds of the quick suite, whereas a model worse on every
    seed gets a small t-test p. The price is the assumption of roughly normal differences.

    Edge cases: fewer than 2 differences -> NaN (cannot be tested); any non-finite difference
    -> NaN (cannot be tested); every difference 0 -> 1.0 (no evidence of a difference); all
    differences equal and non-zero (zero variance) -> 0.0 (the same shift on every seed); a
    t statistic that is still undefined (overflow) -> 1.0. Raises `ValueError` for input
    that is not one-dimensional.
    """
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"paired_p: expected a 1-D sequence of differences, got shape {d.shape}")
    if d.size < 2 or not np.all(np.isfinite(d)):
        return math.nan
    if np.all(d == 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss near zero variance
        p = stats.ttest_1samp(d, 0.0).pvalue
    return float(p) if np.isfinite(p) else 1.0


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as `pvalues`, each in [0, 1]).

    Reject hypothesis i at family-wise level alpha when its adjusted p-value is < alpha. NaN
    entries are not tests: they stay NaN and do not count in the number of hypotheses.
    Returns a float array of the same shape as `pvalues` (1-D).
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm: expected a 1-D sequence of p-values, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
