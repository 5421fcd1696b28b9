"""Report section on robustness where the paradigms differ: out-of-distribution (OOD) detection
and classification with missing features (the columns of `gdbench.robustness`).

Works from stored rows only (numpy, pandas, matplotlib; no JAX), like the rest of `reports`:

- **OOD detection**: per (task, OOD set), at the largest training size with values, the AUROC
  of the model's log p(x) (generative models; Nalisnick et al. 2019, "Do deep generative models
  know what they don't know?") beside the AUROC of its maximum softmax probability (every
  model; Hendrycks & Gimpel 2017), mean ± 95% Student-t interval over seeds; a table per pair
  (Markdown and tables/ood_<task>__<ood>.tex) and one figure of both AUROCs per model
  (figures/ood_auroc.*). 0.5 is chance; below 0.5 the score ranks OOD inputs as more
  in-distribution than the test set.
- **Missing features**: per task, test accuracy against the fraction of features hidden
  completely at random (0 is the ordinary test accuracy), at the largest training size, one
  line per model: dashed where the model marginalizes the missing features exactly (generative
  models), solid where it imputes the training mean (discriminative ones); a table per task
  and figures/missing_features_<task>.*.

Every "a ± b" is the mean over ok seeds ± the half-width of its 95% Student-t interval
(`gdbench.reports.stats`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gdbench.reports import latex
from gdbench.reports.figures import (
    facet_axes,
    figure_markdown,
    literal_text,
    model_colors,
    save_figure,
)
from gdbench.reports.stats import check_unique_cells, summarize
from gdbench.reports.tables import DASH, fmt_mean_ci, table
from gdbench.results.store import safe_name

SECTION_TITLE = "Robustness: out-of-distribution detection and missing features"
OOD_METRICS = ("ood_auroc_logpx", "ood_auroc_msp")
OOD_HEADERS = {"ood_auroc_logpx": "AUROC log p(x)", "ood_auroc_msp": "AUROC max-softmax"}
OOD_TEX_HEADERS = {
    "ood_auroc_logpx": r"AUROC $\log p(x)$",
    "ood_auroc_msp": r"AUROC max-softmax",
}
DECIMALS = 3
MISSING_PATTERN = re.compile(r"acc_miss(\d+)")
METHOD_DASHES = {"marginalize": "--", "impute-mean": "-"}


def missing_columns(df: pd.DataFrame) -> list[tuple[float, str]]:
    """``(fraction, column)`` of every ``acc_miss<percent>`` column of `df`, by fraction."""
    found = [
        (int(m.group(1)) / 100.0, c) for c in df.columns if (m := MISSING_PATTERN.fullmatch(c))
    ]
    return sorted(found)


def _at_largest(rows: pd.DataFrame, keys: list[str], has: np.ndarray) -> pd.DataFrame:
    """The rows at the largest n_train, per `keys` group, among the rows where `has`."""
    sizes = rows[has].groupby(keys)["n_train"].max()
    key = pd.MultiIndex.from_frame(rows[keys])
    return rows[rows["n_train"].to_numpy() == sizes.reindex(key).to_numpy()]


def ood_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, ood_task, model): statistics of `OOD_METRICS` at the largest n_train with an
    OOD value. Columns: task, ood_task, model, paradigm, n_train, then ``<m>_mean``,
    ``<m>_std``, ``<m>_count``, ``<m>_ci95`` per metric, n_ok, n_not_ok. Empty when no row
    has an OOD value."""
    if df.empty or "ood_task" not in df.columns:
        return pd.DataFrame()
    frame = df.assign(**{m: np.nan for m in OOD_METRICS if m not in df.columns})
    frame = frame[frame["ood_task"].fillna("").astype(str) != ""]
    if frame.empty:
        return pd.DataFrame()
    check_unique_cells(frame)
    values = frame[list(OOD_METRICS)].apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame.assign(**{m: values[m] for m in OOD_METRICS})
    has = np.isfinite(values.to_numpy()).any(axis=1) & (frame["status"] == "ok").to_numpy()
    if not has.any():
        return pd.DataFrame()
    rows = _at_largest(frame, ["task", "ood_task", "model"], has)
    by = ("task", "ood_task", "model", "paradigm", "n_train")
    return summarize(rows, OOD_METRICS, by=by)


def missing_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model): statistics of ``accuracy`` and every ``acc_miss<p>`` column at the
    largest n_train with a missing-feature value, with the model's ``missing_method``.
    Columns: task, model, paradigm, missing_method, n_train, then per metric ``<m>_mean``,
    ``<m>_std``, ``<m>_count``, ``<m>_ci95``, n_ok, n_not_ok. Empty when there is none."""
    cols = [c for _, c in missing_columns(df)]
    if df.empty or not cols:
        return pd.DataFrame()
    frame = df.assign(
        missing_method=df["missing_method"].fillna("").astype(str)
        if "missing_method" in df.columns
        else ""
    )
    values = frame[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame.assign(**{c: values[c] for c in cols})
    has = np.isfinite(values.to_numpy()).any(axis=1) & (frame["status"] == "ok").to_numpy()
    if not has.any():
        return pd.DataFrame()
    check_unique_cells(frame)
    rows = _at_largest(frame, ["task", "model"], has)
    # A failed cell has no method: group it with its model's ok cells.
    method = rows.groupby(["task", "model"])["missing_method"].transform(
        lambda s: next((v for v in s if v), "")
    )
    rows = rows.assign(missing_method=method)
    by = ("task", "model", "paradigm", "missing_method", "n_train")
    return summarize(rows, ["accuracy", *cols], by=by)


def robustness_section(df: pd.DataFrame, out: str | Path) -> list[str]:
    """The report section as Markdown lines (image and table links relative to `out`), writing
    figures under out/figures and booktabs tables under out/tables. Empty list (and nothing
    written) when the rows hold no robustness values."""
    out = Path(out)
    ood = ood_lines(df, out)
    missing = missing_lines(df, out)
    if not ood and not missing:
        return []
    intro = [
        f"## {SECTION_TITLE}",
        "",
        "Two questions where generative and discriminative models differ: can the model tell "
        "its own kind of data from other data, and can it classify when some features are "
        "missing. Intervals: mean ± 95% t-interval over seeds, at the largest training size "
        "with values.",
        "",
    ]
    return [*intro, *ood, *missing]


def ood_lines(df: pd.DataFrame, out: Path) -> list[str]:
    """The "Out-of-distribution detection" part (Markdown lines); [] without OOD values."""
    stats = ood_stats(df)
    if stats.empty:
        return []
    lines = [
        "### Out-of-distribution detection",
        "",
        "AUROC of two scores at telling the task's test set (positive) from an "
        "out-of-distribution set: the model's log p(x) (generative models; the IWAE bound for "
        "the VAE) and its maximum softmax probability p(y|x) (every model; Bayes' rule for the "
        "generative ones; Hendrycks & Gimpel 2017). 0.5 is chance; below 0.5 the score calls "
        "the OOD inputs more typical than the test set, the failure Nalisnick et al. (2019) "
        "found for likelihood models on simpler inputs (Serrà et al. 2020). OOD sets named "
        "<task>:<transform> are transformed copies of the task's own test set (tasks.ood: "
        "contrast<a> pulls each example towards the average one, noise draws features "
        "uniformly over their range, permute scrambles the features).",
        "",
    ]
    table_dir = out / "tables"
    for (task, ood_task), rows in stats.groupby(["task", "ood_task"], sort=True):
        rows = rows.sort_values(["paradigm", "model"])
        body = []
        for _, r in rows.iterrows():
            cells = [fmt_mean_ci(r[f"{m}_mean"], r[f"{m}_ci95"], DECIMALS) for m in OOD_METRICS]
            body.append([r["model"], r["paradigm"], str(int(r["n_train"])), _seeds(r), *cells])
        header = ["model", "paradigm", "n_train", "seeds", *OOD_HEADERS.values()]
        lines += [f"#### {task} against {ood_task}", "", *table(header, body), ""]
        table_dir.mkdir(parents=True, exist_ok=True)
        path = table_dir / f"ood_{safe_name(f'{task}__{ood_task}')}.tex"
        path.write_text(_ood_tex(rows, str(task), str(ood_task)))
        lines += [f"Table: [{path.name}]({path.relative_to(out).as_posix()})", ""]
    paths = save_figure(_ood_figure(stats), out, "ood_auroc")
    return [*lines, *figure_markdown(paths, out)]


def _seeds(r: pd.Series) -> str:
    return str(int(r["n_ok"])) + (f" (+{int(r['n_not_ok'])} not ok)" if r["n_not_ok"] else "")


def _ood_tex(rows: pd.DataFrame, task: str, ood_task: str) -> str:
    frame = pd.DataFrame(
        {
            "Model": [latex.model_tex(m) for m in rows["model"]],
            "Paradigm": [latex.paradigm_tex(p) for p in rows["paradigm"]],
            r"$n_{\mathrm{train}}$": [str(int(n)) for n in rows["n_train"]],
            "Seeds": [str(int(n)) for n in rows["n_ok"]],
        }
    )
    for m in OOD_METRICS:
        frame[OOD_TEX_HEADERS[m]] = [
            _tex_mean_ci(mean, ci)
            for mean, ci in zip(rows[f"{m}_mean"], rows[f"{m}_ci95"], strict=True)
        ]
    caption = (
        f"Out-of-distribution detection: {latex.task_tex(task)} test set "
        f"against \\texttt{{{latex.escape_latex(ood_task)}}}. AUROC of $\\log p(x)$ "
        "(generative models) and of the maximum softmax probability; 0.5 is chance. Mean "
        r"$\pm$ half-width of the 95\% Student-$t$ interval over seeds (gdbench)."
    )
    return latex.dataframe_to_booktabs(
        frame,
        caption,
        latex.label(f"ood-{safe_name(f'{task}-{ood_task}')}"),
        escape=False,
        index=False,
        column_format="llrrrr",
        repeat=4,
    )


def _tex_mean_ci(mean: float, ci: float) -> str:
    text = fmt_mean_ci(mean, ci, DECIMALS)
    return latex.NA if text == DASH else text.replace(" ± ", r" $\pm$ ")


def _ood_figure(stats: pd.DataFrame) -> Figure:
    """Per (task, OOD set) a panel: each model's two AUROCs with their intervals."""
    pairs = sorted(stats.groupby(["task", "ood_task"]).groups)
    fig, axes = facet_axes(len(pairs), width=4.6, height=0.9 + 0.32 * stats["model"].nunique())
    markers = {"ood_auroc_logpx": ("o", "#DE8F05"), "ood_auroc_msp": ("s", "#0173B2")}
    for ax, (task, ood_task) in zip(axes, pairs, strict=False):
        rows = stats[(stats["task"] == task) & (stats["ood_task"] == ood_task)]
        rows = rows.sort_values(["paradigm", "model"])
        y = np.arange(len(rows))
        for k, metric in enumerate(OOD_METRICS):
            mean = rows[f"{metric}_mean"].to_numpy(dtype=float)
            half = np.nan_to_num(rows[f"{metric}_ci95"].to_numpy(dtype=float), nan=0.0)
            marker, color = markers[metric]
            ax.errorbar(
                mean,
                y + (k - 0.5) * 0.25,
                xerr=half,
                fmt=marker,
                color=color,
                markersize=4,
                capsize=2,
                linewidth=1,
                label=OOD_HEADERS[metric],
            )
        ax.axvline(0.5, color="black", linestyle=":", linewidth=1.0)
        ax.set_yticks(y, [literal_text(m) for m in rows["model"]])
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("AUROC (0.5 = chance)")
        ax.set_title(literal_text(f"{task} vs {ood_task}"), fontsize="medium")
        ax.grid(True, axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle("OOD detection: log p(x) against max-softmax (largest n_train, 95% t-interval)")
    return fig


def missing_lines(df: pd.DataFrame, out: Path) -> list[str]:
    """The "Missing features" part (Markdown lines); [] without missing-feature values."""
    stats = missing_stats(df)
    if stats.empty:
        return []
    fractions = missing_columns(df)
    lines = [
        "### Missing features",
        "",
        "Test accuracy with a fraction of each test example's features hidden completely at "
        "random (the same masks for every model and seed; 0 % is the ordinary accuracy). "
        "Generative models with an exact marginal (naive Bayes, LDA/QDA, the Gaussian "
        "mixture, the blended Gaussian hybrid) marginalize: they classify by log p(x_obs, y), "
        "the missing features integrated out; every other model imputes the training "
        "subset's mean (0 in the engine's standardized units).",
        "",
    ]
    header = ["model", "paradigm", "method", "n_train", "seeds", "0 %"]
    header += [f"{round(100 * f)} % missing" for f, _ in fractions]
    metrics = ["accuracy", *(c for _, c in fractions)]
    for task, rows in stats.groupby("task", sort=True):
        rows = rows.sort_values(["paradigm", "model"])
        body = []
        for _, r in rows.iterrows():
            cells = [fmt_mean_ci(r[f"{m}_mean"], r[f"{m}_ci95"], DECIMALS) for m in metrics]
            method = r["missing_method"] or DASH
            body.append(
                [r["model"], r["paradigm"], method, str(int(r["n_train"])), _seeds(r), *cells]
            )
        lines += [f"#### {task}", "", *table(header, body), ""]
        fig = _missing_figure(rows, str(task), fractions)
        lines += figure_markdown(
            save_figure(fig, out, f"missing_features_{safe_name(str(task))}"), out
        )
    return lines


def _missing_figure(rows: pd.DataFrame, task: str, fractions: list[tuple[float, str]]) -> Figure:
    xs = np.array([0.0, *(f for f, _ in fractions)])
    metrics = ["accuracy", *(c for _, c in fractions)]
    colors = model_colors(rows["model"])
    fig = Figure(figsize=(6.4, 4.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    for _, r in rows.iterrows():
        mean = np.array([r[f"{m}_mean"] for m in metrics], dtype=float)
        half = np.nan_to_num(np.array([r[f"{m}_ci95"] for m in metrics], dtype=float), nan=0.0)
        method = r["missing_method"]
        ax.errorbar(
            xs,
            mean,
            yerr=half,
            color=colors[r["model"]],
            linestyle=METHOD_DASHES.get(method, ":"),
            marker="o",
            markersize=3.5,
            capsize=2,
            linewidth=1.3,
            label=literal_text(f"{r['model']} ({method or 'n/a'})"),
        )
    ax.set_xticks(xs, [f"{round(100 * x)}%" for x in xs])
    ax.set_xlabel("features hidden per test example (completely at random)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    n = ", ".join(str(int(v)) for v in sorted(rows["n_train"].unique()))
    ax.set_title(
        literal_text(
            f"{task}: accuracy with missing features (n_train = {n}); dashed: marginalize"
        ),
        fontsize="medium",
    )
    return fig
