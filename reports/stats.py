"""Per-group statistics over seeds: mean, standard deviation and 95% Student-t intervals.

Only rows with status "ok" enter a statistic; the number of other rows in each group is kept in
the `n_not_ok` column so that failed or diverged cells are never silently averaged away.
"""

from __future__ import annotations

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
