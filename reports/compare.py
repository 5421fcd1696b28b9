"""Compare two runs of the same (or an overlapping) grid, e.g. CPU vs GPU or two gdbench versions.

Cells are matched on (task, model, n_train, seed). A cell's training subset depends only on
(task, n_train, seed), so matched cells were trained on identical data and every comparison
is paired: per (task, model, n_train) and metric, the per-seed differences B - A over the
seeds that are ok in both runs.

A metric row counts as *changed* (beyond noise) when both hold:

- the paired test rejects "no difference" after a Benjamini-Hochberg correction across all
  tested rows of the comparison (false-discovery rate `alpha`). The default test is the paired
  Student t-test of `gdbench.reports.stats.paired_p` (the one the LaTeX tables and the crossover
  analysis use), so that the decision agrees with the reported 95% t-interval of the mean
  difference and a shift seen on every seed is detectable with 5 seeds (the exact Wilcoxon
  test cannot go below p = 2/2^5 = 0.0625 there); ``test="wilcoxon"`` uses the Wilcoxon
  signed-rank test instead. Differences that are equal and non-zero on every seed (zero
  variance) get p = 0; all-zero differences get p = 1; a single pair (or a non-finite
  difference) cannot be tested (p NaN, not counted among the tested rows, never changed).
- the mean difference exceeds the metric's tolerance, ``atol + rtol * max(|mean A|, |mean B|)``
  (`TOLERANCES`): for accuracy any change counts (atol 1e-9); for the continuous metrics the
  tolerance sits above float32 round-off, so results that differ only by summation order
  (e.g. CPU vs GPU) are not reported as changes.

Timings are compared as ratios B/A of per-grid medians rather than tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from gdbench.reports.stats import check_unique_cells, paired_p, t_half_width
from gdbench.results.schema import CELL_KEY

QUALITY_METRICS = ("accuracy", "nll", "ece", "brier", "log_lik", "bits_per_dim")
TIME_METRICS = ("fit_s", "predict_s", "compile_s")
GROUP = ("task", "model", "n_train")
GRID = ("task", "model")
# (atol, rtol) per metric: |diff| must exceed atol + rtol * max(|mean_a|, |mean_b|)
TOLERANCES: dict[str, tuple[float, float]] = {
    "accuracy": (1e-9, 0.0),
    "nll": (1e-6, 1e-5),
    "ece": (1e-6, 1e-5),
    "brier": (1e-6, 1e-5),
    "log_lik": (1e-5, 1e-5),
    "bits_per_dim": (1e-6, 1e-5),
}
DEFAULT_TOLERANCE = (1e-9, 1e-6)
TESTS = ("t", "wilcoxon")
METRIC_COLUMNS = (
    "task",
    "model",
    "n_train",
    "metric",
    "n_pairs",
    "mean_a",
    "mean_b",
    "diff",
    "ci95",
    "p_value",
    "p_adjusted",
    "tolerance",
    "changed",
)
TIMING_COLUMNS = (
    "task",
    "model",
    "cells_a",
    "cells_b",
    *(f"{m}_{s}" for m in TIME_METRICS for s in ("a", "b", "ratio")),
)


class CompareError(ValueError):
    """Bad input to a comparison (unknown metric, bad alpha or test); one-line message."""


@dataclass
class RunComparison:
    """What `compare_runs` found.

    - `metrics`: one row per (task, model, n_train, metric) with paired data (`METRIC_COLUMNS`):
      `n_pairs` seeds ok in both runs, `mean_a`/`mean_b` over those seeds, `diff` = mean of
      B - A and `ci95` its 95% t half-width (metric units), `p_value` of the paired test,
      `p_adjusted` (Benjamini-Hochberg), `tolerance` (metric units) and `changed`.
    - `timing`: per (task, model) grid in both runs, median fit_s / predict_s (seconds per
      cell) and compile_s (seconds per grid) in A and B and the ratio B/A (> 1: B slower).
    - `only_a` / `only_b`: cell keys (any status) present in one run only.
    - `status_changed`: cells in both runs whose status differs (`status_a`, `status_b`).
    - `config_changed`: cells in both runs whose `model_config` or `preprocess` differs.
    - `n_cells`: cells ok in both runs (the ones compared); `name_a`, `name_b`: run labels.
    - `differences`: the runs' configuration differences from their manifests
      (`manifest_differences`: ``(setting, value in A, value in B)``), or None when the
      comparison was made from rows alone (`compare_runs`; `gdbench.compare` fills it).
    """

    metrics: pd.DataFrame
    timing: pd.DataFrame
    only_a: pd.DataFrame
    only_b: pd.DataFrame
    status_changed: pd.DataFrame
    config_changed: pd.DataFrame
    n_cells: int
    name_a: str = "A"
    name_b: str = "B"
    alpha: float = 0.05
    test: str = "t"
    metric_names: tuple[str, ...] = field(default=QUALITY_METRICS)
    differences: tuple[tuple[str, str, str], ...] | None = None

    @property
    def changed(self) -> pd.DataFrame:
        """The metric rows changed beyond noise, largest |diff| first."""
        rows = self.metrics[self.metrics["changed"]]
        return rows.reindex(rows["diff"].abs().sort_values(ascending=False).index)


def compare_runs(
    df_a: pd.DataFrame,
    df_b: pd.DataFrame,
    metrics: Sequence[str] = QUALITY_METRICS,
    alpha: float = 0.05,
    *,
    test: str = "t",
    tolerances: Mapping[str, tuple[float, float]] | None = None,
    names: tuple[str, str] | None = None,
) -> RunComparison:
    """Paired comparison of the rows of run A and run B (frames as returned by
    `gdbench.results.load`).

    Only cells ok in both runs enter the metric statistics; cells in one run only, cells whose
    status differs and cells whose model config differs are listed, never dropped silently.
    `metrics` are quality columns of the result schema; `alpha` is the false-discovery rate of
    the Benjamini-Hochberg correction across all tested rows; `test` is "t" (paired t-test) or
    "wilcoxon"; `tolerances` overrides `TOLERANCES` per metric as (atol, rtol); `names` labels
    the runs (default: their `run` column, else "A" and "B"). Returns a `RunComparison`.
    """
    metrics = tuple(metrics)
    if not metrics:
        raise CompareError("no metrics to compare")
    bad = [m for m in metrics if m not in QUALITY_METRICS]
    if bad:
        raise CompareError(
            f"cannot compare metric {bad[0]!r}; valid: {', '.join(QUALITY_METRICS)} "
            "(timings are always compared as ratios)"
        )
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise CompareError(f"alpha must be in (0, 1), got {alpha!r}")
    if test not in TESTS:
        raise CompareError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    tol = {**TOLERANCES, **(tolerances or {})}
    needed = (*CELL_KEY, "status", *metrics)
    for label, df in (("A", df_a), ("B", df_b)):
        if not isinstance(df, pd.DataFrame):
            raise CompareError(f"run {label}: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise CompareError(f"run {label}: rows have no column {missing[0]!r}")
        check_unique_cells(df)
    name_a, name_b = names or (_run_name(df_a, "A"), _run_name(df_b, "B"))
    key = list(CELL_KEY)

    a = df_a.drop(columns=["run"], errors="ignore")
    b = df_b.drop(columns=["run"], errors="ignore")
    both = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = both.loc[both["_merge"] == "left_only", [*key, "status_a"]]
    only_b = both.loc[both["_merge"] == "right_only", [*key, "status_b"]]
    matched = both[both["_merge"] == "both"]
    status_changed = matched.loc[matched["status_a"] != matched["status_b"]]
    status_changed = status_changed[[*key, "status_a", "status_b"]]
    config_cols = [c for c in ("model_config", "preprocess") if c in a and c in b]
    differs = np.zeros(len(matched), dtype=bool)
    for c in config_cols:
        differs |= (matched[f"{c}_a"] != matched[f"{c}_b"]).to_numpy()
    config_changed = matched.loc[differs, key]
    ok = matched[(matched["status_a"] == "ok") & (matched["status_b"] == "ok")]

    table = _metric_rows(ok, metrics, test, tol)
    if not table.empty:
        tested = table["p_value"].notna()
        table["p_adjusted"] = np.nan
        if tested.any():
            adjusted = sps.false_discovery_control(table.loc[tested, "p_value"], method="bh")
            table.loc[tested, "p_adjusted"] = adjusted
        table["changed"] = (table["p_adjusted"] < alpha) & (
            table["diff"].abs() > table["tolerance"]
        )
    table = table.reindex(columns=list(METRIC_COLUMNS))
    table["changed"] = table["changed"].astype(bool)
    return RunComparison(
        metrics=table.reset_index(drop=True),
        timing=_timing(a, b),
        only_a=_sorted(only_a.rename(columns={"status_a": "status"})),
        only_b=_sorted(only_b.rename(columns={"status_b": "status"})),
        status_changed=_sorted(status_changed),
        config_changed=_sorted(config_changed),
        n_cells=len(ok),
        name_a=name_a,
        name_b=name_b,
        alpha=float(alpha),
        test=test,
        metric_names=metrics,
    )


def paired_p_value(diffs: Sequence[float], test: str = "t") -> float:
    """Two-sided p-value that the paired differences `diffs` are centred on zero.

    "t" (default): the paired t-test of `gdbench.reports.stats.paired_p`, i.e. the one-sample t-test
    of the differences (= `scipy.stats.ttest_rel`), shared with the tables and the crossover
    analysis; "wilcoxon": `scipy.stats.wilcoxon` (zero differences discarded). Edge cases of
    both tests: fewer than 2 pairs or a non-finite difference -> NaN (untestable); all
    differences zero -> 1.0. The t-test also gives 0.0 for equal non-zero differences (zero
    variance). Raises `CompareError` for an unknown `test`.
    """
    if test not in TESTS:
        raise CompareError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    d = np.asarray(diffs, dtype=float)
    if test == "t":
        if d.size >= 2 and np.all(np.isfinite(d)) and d[0] != 0 and np.all(d == d[0]):
            # two runs of the same cells: the same change on every cell is a real change
            # (`paired_p` itself calls zero variance untestable: across seeds of one run it
            # is one fit repeated)
            return 0.0
        return paired_p(d)
    if d.size < 2 or not np.all(np.isfinite(d)):
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(sps.wilcoxon(d).pvalue)


def _get(manifest: Mapping[str, Any], *path: str) -> Any:
    value: Any = manifest
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _seed_text(seeds: Any) -> Any:
    if isinstance(seeds, list) and seeds == list(range(len(seeds))):
        return f"{len(seeds)} (0..{len(seeds) - 1})"
    return seeds


def _sizes_text(manifest: Mapping[str, Any]) -> Any:
    sizes = _get(manifest, "config", "sizes")
    if sizes is not None:
        return sizes
    per_task = _get(manifest, "identity", "tasks")  # automatic sizes: per task
    if isinstance(per_task, Mapping):
        return {t: info.get("sizes") for t, info in per_task.items() if isinstance(info, Mapping)}
    return None


#: The settings `manifest_differences` compares: (label, value from a run's manifest).
CONFIG_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("code version", lambda m: _get(m, "identity", "code_version")),
    ("gdbench version", lambda m: _get(m, "provenance", "gdbench_version")),
    ("git commit", lambda m: _get(m, "provenance", "git_commit")),
    ("git dirty", lambda m: _get(m, "provenance", "git_dirty")),
    ("suite", lambda m: _get(m, "config", "suite")),
    ("tasks", lambda m: _get(m, "config", "tasks")),
    ("models", lambda m: _get(m, "config", "models")),
    ("sizes", _sizes_text),
    ("seeds", lambda m: _seed_text(_get(m, "config", "seeds"))),
    ("sample quality", lambda m: _get(m, "config", "quality")),
    ("robustness", lambda m: _get(m, "config", "robustness")),
    ("OOD sets", lambda m: _get(m, "config", "ood")),
    ("steady-state timing", lambda m: _get(m, "config", "steady_state")),
    ("devices used", lambda m: _get(m, "config", "devices")),
    ("data parallel", lambda m: _get(m, "config", "data_parallel")),
    ("device", lambda m: _get(m, "provenance", "device_kind")),
    ("device count", lambda m: _get(m, "provenance", "device_count")),
    ("process count", lambda m: _get(m, "provenance", "process_count")),
    ("host", lambda m: _get(m, "provenance", "hostname")),
    ("machine", lambda m: _get(m, "provenance", "machine")),
    ("python", lambda m: _get(m, "provenance", "python")),
    ("environment (XLA_FLAGS, JAX_*)", lambda m: _get(m, "provenance", "env")),
)


def manifest_differences(
    manifest_a: Mapping[str, Any], manifest_b: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """The configuration differences of two runs from their manifests: ``(setting, value in A,
    value in B)`` for each setting of `CONFIG_SETTINGS` and each library version
    (``provenance.versions``: jax, jaxlib, numpy, ...) that differs; ``—`` where a manifest
    records nothing."""

    def text(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, list | tuple):
            return ", ".join(text(v) for v in value) or "—"
        if isinstance(value, Mapping):
            return "; ".join(f"{k}: {text(v)}" for k, v in value.items()) or "—"
        return str(value)

    out = []
    settings = list(CONFIG_SETTINGS)
    versions_a = _get(manifest_a, "provenance", "versions") or {}
    versions_b = _get(manifest_b, "provenance", "versions") or {}
    for lib in dict.fromkeys([*versions_a, *versions_b]):
        settings.append((lib, lambda m, lib=lib: _get(m, "provenance", "versions", lib)))
    for label, value_of in settings:
        a, b = text(value_of(manifest_a)), text(value_of(manifest_b))
        if a != b:
            out.append((label, a, b))
    return out


def compare_markdown(
    result: RunComparison,
    max_rows: int = 50,
    differences: Sequence[tuple[str, str, str]] | None = None,
) -> str:
    """A Markdown report of `result`: a summary line, the runs' configuration differences
    (`differences`, from `manifest_differences`; default `result.differences`; none listed
    when both are None), the changed metric rows (largest
    |diff| first, at most `max_rows`, with a note of how many more), cells in one run only,
    status and configuration changes, then the timing ratios B/A per (task, model) grid."""
    r = result
    if differences is None:
        differences = r.differences
    changed = r.changed
    lines = [
        f"# gdbench comparison: `{r.name_a}` (A) vs `{r.name_b}` (B)",
        "",
        f"{_n(r.n_cells, 'cell')} compared (ok in both runs); {len(changed)} of "
        f"{_n(len(r.metrics), 'metric row')} changed beyond noise; "
        f"{_n(len(r.only_a), 'cell')} only in A, {len(r.only_b)} only in B; "
        f"{_n(len(r.status_changed), 'status change')}.",
        "",
        "Each row is one (task, model, n_train) and metric, paired over the seeds ok in both "
        "runs (identical training subsets). diff = mean of B - A with its 95% t-interval. "
        f"Changed: {_test_name(r.test)} p < {r.alpha:g} after Benjamini-Hochberg correction "
        f"across all {int(r.metrics['p_value'].notna().sum())} tested rows, and |diff| above "
        "the metric's tolerance (accuracy: any change; others: above float32 round-off).",
        "",
    ]
    if differences is not None:
        lines += ["## Configuration differences", ""]
        if differences:
            lines += [
                "From the runs' manifests (code and library versions, grid, devices):",
                "",
            ]
            lines += _table(["setting", "A", "B"], [list(d) for d in differences])
        else:
            lines += ["The runs' manifests record the same configuration and versions."]
        lines.append("")
    single = r.metrics[(r.metrics["n_pairs"] == 1) & (r.metrics["diff"] != 0)]
    if len(single):
        lines += [
            f"{_n(len(single), 'metric row')} differ(s) but with a single paired seed cannot "
            "be tested (not counted as changed).",
            "",
        ]
    lines += ["## Changed beyond noise", ""]
    if changed.empty:
        lines += ["Nothing changed beyond noise.", ""]
    else:
        header = [
            "task",
            "model",
            "n_train",
            "metric",
            "seeds",
            "A",
            "B",
            "B - A (95% CI)",
            "p adj",
        ]
        body = [
            [
                str(row["task"]),
                str(row["model"]),
                str(int(row["n_train"])),
                str(row["metric"]),
                str(int(row["n_pairs"])),
                _num(row["mean_a"]),
                _num(row["mean_b"]),
                _diff(row["diff"], row["ci95"]),
                _p(row["p_adjusted"]),
            ]
            for _, row in changed.head(max_rows).iterrows()
        ]
        lines += _table(header, body)
        if len(changed) > max_rows:
            lines += ["", f"... and {len(changed) - max_rows} more changed rows."]
        lines.append("")
    one_sided = r.metrics[r.metrics["n_pairs"] == 0]
    if len(one_sided):
        lines += [f"## Metric values in one run only ({_n(len(one_sided), 'row')})", ""]
        body = [
            [
                str(row["task"]),
                str(row["model"]),
                str(int(row["n_train"])),
                str(row["metric"]),
                _num(row["mean_a"]),
                _num(row["mean_b"]),
            ]
            for _, row in one_sided.head(max_rows).iterrows()
        ]
        lines += _table(["task", "model", "n_train", "metric", "A", "B"], body)
        if len(one_sided) > max_rows:
            lines += ["", f"... and {len(one_sided) - max_rows} more rows."]
        lines.append("")
    lines += _cells_section("Cells only in A", r.only_a, ["status"], max_rows)
    lines += _cells_section("Cells only in B", r.only_b, ["status"], max_rows)
    lines += _cells_section("Status changes", r.status_changed, ["status_a", "status_b"], max_rows)
    lines += _cells_section(
        "Model configuration or preprocessing changed", r.config_changed, [], max_rows
    )
    lines += ["## Timing (B / A)", ""]
    if r.timing.empty:
        lines += ["No grid is in both runs.", ""]
    else:
        lines += [
            "Medians per grid: fit and predict in seconds per cell (amortized), compile in "
            "seconds per grid. Ratio > 1: B is slower.",
            "",
        ]
        overall = []
        for m in TIME_METRICS:
            ratios = r.timing[f"{m}_ratio"]
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            if len(ratios):
                overall.append(f"{m} x{math.exp(np.log(ratios).mean()):.3g}")
        if overall:
            lines += ["Geometric mean of the ratios over grids: " + ", ".join(overall) + ".", ""]
        header = ["task", "model", "cells A/B"]
        for m in TIME_METRICS:
            header += [f"{m} A -> B", f"{m} B/A"]
        body = []
        for _, g in r.timing.iterrows():
            row = [str(g["task"]), str(g["model"]), f"{int(g['cells_a'])}/{int(g['cells_b'])}"]
            for m in TIME_METRICS:
                row += [f"{_sec(g[f'{m}_a'])} -> {_sec(g[f'{m}_b'])}", _ratio(g[f"{m}_ratio"])]
            body.append(row)
        lines += _table(header, body)
    return "\n".join(lines).rstrip() + "\n"


# --- computation --------------------------------------------------------------------------


def _metric_rows(
    ok: pd.DataFrame, metrics: Sequence[str], test: str, tol: Mapping[str, tuple[float, float]]
) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for (task, model, n_train), g in ok.groupby(list(GROUP), sort=True):
        for m in metrics:
            pair = g[[f"{m}_a", f"{m}_b"]].dropna()
            if pair.empty:
                has_a, has_b = g[f"{m}_a"].notna().any(), g[f"{m}_b"].notna().any()
                if has_a or has_b:  # the metric exists in one run only: list it, untested
                    records.append(
                        {
                            "task": task,
                            "model": model,
                            "n_train": int(n_train),
                            "metric": m,
                            "n_pairs": 0,
                            "mean_a": float(g[f"{m}_a"].mean()) if has_a else math.nan,
                            "mean_b": float(g[f"{m}_b"].mean()) if has_b else math.nan,
                            "diff": math.nan,
                            "ci95": math.nan,
                            "p_value": math.nan,
                            "tolerance": math.nan,
                        }
                    )
                continue
            va = pair[f"{m}_a"].to_numpy(dtype=float)
            vb = pair[f"{m}_b"].to_numpy(dtype=float)
            d = vb - va
            mean_a, mean_b = float(va.mean()), float(vb.mean())
            atol, rtol = tol.get(m, DEFAULT_TOLERANCE)
            std = float(d.std(ddof=1)) if d.size > 1 else math.nan
            records.append(
                {
                    "task": task,
                    "model": model,
                    "n_train": int(n_train),
                    "metric": m,
                    "n_pairs": int(d.size),
                    "mean_a": mean_a,
                    "mean_b": mean_b,
                    "diff": float(d.mean()),
                    "ci95": float(t_half_width(std, d.size)),
                    "p_value": paired_p_value(d, test),
                    "tolerance": atol + rtol * max(abs(mean_a), abs(mean_b)),
                }
            )
    columns = [c for c in METRIC_COLUMNS if c not in ("p_adjusted", "changed")]
    return pd.DataFrame.from_records(records, columns=columns)


def _timing(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per-grid medians of each timing column in A and B and their ratio B/A."""
    grids = []
    for frame, s in ((a, "a"), (b, "b")):
        present = [m for m in TIME_METRICS if m in frame]
        g = frame.groupby(list(GRID), sort=True)
        agg = pd.DataFrame({f"cells_{s}": g.size()})
        for m in present:
            if m == "compile_s":  # one value per grid, repeated on its rows: count it once
                agg[f"{m}_{s}"] = g[m].agg(lambda v: v.dropna().drop_duplicates().median())
            else:
                agg[f"{m}_{s}"] = g[m].median()
        grids.append(agg)
    timing = grids[0].join(grids[1], how="inner").reset_index()
    for m in TIME_METRICS:
        for s in ("a", "b"):
            if f"{m}_{s}" not in timing:
                timing[f"{m}_{s}"] = np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = timing[f"{m}_b"].to_numpy(float) / timing[f"{m}_a"].to_numpy(float)
        timing[f"{m}_ratio"] = np.where(timing[f"{m}_a"].to_numpy(float) > 0, ratio, np.nan)
    return timing.reindex(columns=list(TIMING_COLUMNS))


# --- formatting ---------------------------------------------------------------------------


def _cells_section(title: str, cells: pd.DataFrame, extra: list[str], max_rows: int) -> list[str]:
    """Cells grouped by (task, model, n_train, extra columns) with their seeds listed."""
    if cells.empty:
        return []
    by = [*GROUP, *extra]
    groups = cells.groupby(by, sort=True)["seed"].agg(lambda s: ", ".join(map(str, sorted(s))))
    body = [[*(str(v) for v in k), seeds] for k, seeds in groups.items()]
    lines = [f"## {title} ({_n(len(cells), 'cell')})", ""]
    lines += _table([*by, "seeds"], body[:max_rows])
    if len(body) > max_rows:
        lines += ["", f"... and {len(body) - max_rows} more groups."]
    return [*lines, ""]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _run_name(df: pd.DataFrame, default: str) -> str:
    if "run" in df.columns:
        names = sorted({str(v) for v in df["run"].dropna().unique() if str(v)})
        if names:
            return "+".join(names)
    return default


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(CELL_KEY)).reset_index(drop=True)


def _test_name(test: str) -> str:
    return "paired t-test" if test == "t" else "Wilcoxon signed-rank test"


def _num(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.6g}"


def _sec(value: float) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _diff(diff: float, ci: float) -> str:
    text = f"{diff:+.4g}"
    if ci is not None and np.isfinite(ci):
        text += f" ± {ci:.2g}"
    return text


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    return "< 1e-12" if p < 1e-12 else f"{p:.2g}"


def _ratio(r: float) -> str:
    return "—" if r is None or not np.isfinite(r) else f"{r:.3g}"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return lines
