"""Does a run made again give the stored numbers? Stored and new rows compared cell by cell.

Used by ``gdbench reproduce`` (``gdbench.reproduce``): the cells of a stored run are matched
with those of its rerun on (task, model, n_train, seed), and every headline metric present in
the stored rows (accuracy, NLL, ECE, Brier, log p(x), bits/dim) is compared **to the precision
the report prints it with** (``gdbench.reports.tables``: 3 decimals, log p(x) 2; 3 significant
digits from magnitude 10^4): two values match when they differ by at most half a unit in the
last printed place (0.0005 at 3 decimals), so that a value is never flagged for float
round-off that happens to straddle a rounding boundary, and any change that can move a printed
digit by one or more is. Two missing values (NaN, e.g. log p(x) of a discriminative model)
match; a value on one side only does not. A cell whose status changed (ok, diverged, failed)
or that is missing from the rerun is a mismatch too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gdbench.reports.tables import _SCIENTIFIC, DECIMALS, HEADLINE

KEYS = ("task", "model", "n_train", "seed")
#: The metrics compared, in this order (those present in the stored rows).
METRICS = HEADLINE
PRECISION = (
    "values match when they differ by at most half a unit in the last place the report prints: "
    + ", ".join(f"{m} {d} decimals" for m, d in DECIMALS.items())
    + f"; 3 significant digits from magnitude {_SCIENTIFIC:g}"
)


def tolerance(metric: str, a: float, b: float) -> float:
    """Half a unit in the last place the report prints ``metric`` with, for values a and b."""
    scale = max(abs(a), abs(b))
    if scale >= _SCIENTIFIC:
        return 0.5 * 10 ** (math.floor(math.log10(scale)) - 2)
    return 0.5 * 10 ** -DECIMALS.get(metric, 3)


@dataclass
class Reproduction:
    """The outcome of comparing a stored run with its rerun.

    ``summary``: one row per (task, model): ``cells`` compared, ``missing`` (stored cells the
    rerun lacks), ``matching`` and ``differing`` metrics (the latter as "metric (k of n
    cells)"), ``max_abs_diff`` (largest |new - stored| over the compared metrics and cells)
    and ``match``. ``cells``: one row per (cell, metric) with ``stored``, ``new``,
    ``abs_diff``, ``tolerance`` and ``match``. ``notes``: what differs between the two runs'
    code, versions or data (said before the table). ``all_match``: every cell and metric
    matches.
    """

    summary: pd.DataFrame
    cells: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stored_run: str = ""
    new_run: str = ""

    @property
    def all_match(self) -> bool:
        return bool(len(self.summary)) and bool(self.summary["match"].all())

    def text(self) -> str:
        """The report ``gdbench reproduce`` prints: notes, a Markdown table, the verdict."""
        lines = [f"Reproducing {self.stored_run} in {self.new_run}.", ""]
        lines += [f"Note: {note}" for note in self.notes]
        if self.notes:
            lines.append("")
        lines.append(f"Metrics compared per cell: {PRECISION}.")
        lines.append("")
        header = ["task", "model", "cells", "matching", "differing", "max abs diff"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for r in self.summary.itertuples(index=False):
            cells = f"{r.cells}" + (f" ({r.missing} missing)" if r.missing else "")
            diff = "—" if np.isnan(r.max_abs_diff) else f"{r.max_abs_diff:.3g}"
            lines.append(
                f"| {r.task} | {r.model} | {cells} | {r.matching or '—'} | "
                f"{r.differing or '—'} | {diff} |"
            )
        lines.append("")
        bad = int((~self.summary["match"]).sum())
        if self.all_match:
            lines.append(f"All {len(self.summary)} (task, model) grids match.")
        else:
            lines.append(f"{bad} of {len(self.summary)} (task, model) grids do not match.")
        return "\n".join(lines) + "\n"


def compare_rows(stored: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, cells) of ``Reproduction`` for the stored rows and the rerun's rows."""
    metrics = [m for m in METRICS if m in stored.columns and stored[m].notna().any()]
    old = stored.drop_duplicates(list(KEYS), keep="last").set_index(list(KEYS))
    fresh = new.drop_duplicates(list(KEYS), keep="last").set_index(list(KEYS))
    records = []
    for key, row in old.iterrows():
        present = key in fresh.index
        other = fresh.loc[key] if present else None
        base = dict(zip(KEYS, key, strict=True))
        if not present or other["status"] != row["status"]:
            records.append(
                {
                    **base,
                    "metric": "status",
                    "stored": np.nan,
                    "new": np.nan,
                    "abs_diff": np.nan,
                    "tolerance": np.nan,
                    "match": False,
                    "missing": not present,
                }
            )
            if not present:
                continue
        for metric in metrics:
            a, b = float(row[metric]), float(other[metric])
            tol = np.nan
            if np.isnan(a) and np.isnan(b):
                diff, ok = np.nan, True
            elif np.isnan(a) or np.isnan(b):
                diff, ok = np.inf, False
            else:
                diff, tol = abs(b - a), tolerance(metric, a, b)
                ok = diff <= tol * (1 + 1e-9)
            records.append(
                {
                    **base,
                    "metric": metric,
                    "stored": a,
                    "new": b,
                    "abs_diff": diff,
                    "tolerance": tol,
                    "match": bool(ok),
                    "missing": False,
                }
            )
    cells = pd.DataFrame(
        records,
        columns=[*KEYS, "metric", "stored", "new", "abs_diff", "tolerance", "match", "missing"],
    )
    summary = []
    for (task, model), grid in cells.groupby(["task", "model"], sort=False):
        n = grid[list(KEYS)].drop_duplicates().shape[0]
        missing = grid.loc[grid["missing"], list(KEYS)].drop_duplicates().shape[0]
        matching, differing = [], []
        for metric in ["status", *metrics]:
            rows = grid[grid["metric"] == metric]
            if rows.empty or (metric != "status" and rows[["stored", "new"]].isna().all(None)):
                continue  # not a metric of this model (log p(x) of a discriminative one)
            bad = int((~rows["match"]).sum())
            if bad:
                differing.append(f"{metric} ({bad} of {n} cells)")
            elif metric != "status":
                matching.append(metric)
        diffs = grid["abs_diff"].to_numpy(dtype=float)
        diffs = diffs[~np.isnan(diffs)]
        summary.append(
            {
                "task": task,
                "model": model,
                "cells": n,
                "missing": missing,
                "matching": ", ".join(matching),
                "differing": ", ".join(differing),
                "max_abs_diff": float(diffs.max()) if diffs.size else np.nan,
                "match": not differing,
            }
        )
    columns = ["task", "model", "cells", "missing", "matching", "differing", "max_abs_diff"]
    return pd.DataFrame(summary, columns=[*columns, "match"]), cells
