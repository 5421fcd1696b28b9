"""Markdown tables of stored rows: headline metrics, learning curves in numbers, compute, failures.

Every interval is the 95% interval of `gdbench.reports.stats.summarize`, which combines the
variation over
seeds with the test set's sampling (`gdbench.reports.stats.INTERVAL_METHOD`): "a (lo–hi)" for
accuracy
(Wilson-type, inside [0, 1]) and wherever an interval was clipped to its metric's range, "a ± b"
otherwise; "—" marks a value that is missing or not applicable. Values of magnitude 10^4 or more
are printed with 3 significant digits in scientific notation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gdbench.reports.stats import (
    INTERVAL_METHOD,
    SEEDS_ONLY_NOTE,
    TEST_METHOD,
    check_unique_cells,
    compare_to_best,
    summarize,
)

HEADLINE = ("accuracy", "nll", "ece", "brier", "log_lik", "bits_per_dim")
DECIMALS = {"accuracy": 3, "nll": 3, "ece": 3, "brier": 3, "log_lik": 2, "bits_per_dim": 3}
HEADERS = {
    "accuracy": "accuracy ↑",
    "nll": "NLL (nats) ↓",
    "ece": "ECE ↓",
    "brier": "Brier ↓",
    "log_lik": "log p(x) (nats) ↑",
    "bits_per_dim": "bits/dim ↓",
}
#: Whether a larger value of a headline metric is better (the best mark's direction).
HIGHER_IS_BETTER = {"accuracy": True, "log_lik": True}
ALPHA = 0.05
BOUND_MARK = "†"
SIG_MARK = "\\*"  # a literal "*" in Markdown
DASH = "—"
#: Said wherever rows of scikit-learn reference models (paradigm "reference") are tabulated.
REFERENCE_NOTE = "sk: models are scikit-learn references run on CPU outside JAX"
_MESSAGE_CHARS = 200
#: Magnitude from which values are printed in scientific notation.
_SCIENTIFIC = 1e4


def fmt_number(value: float, decimals: int) -> str:
    """`value` with `decimals` decimals, or 3 significant digits in scientific notation when
    its magnitude is 10^4 or more (e.g. 4.82e+07); '—' for NaN or None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return DASH
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= _SCIENTIFIC:
        return f"{value:.3g}"
    return f"{_round(value, decimals):.{decimals}f}"


def _fmt_width(width: float, decimals: int, scientific: bool) -> str:
    """A half-width: at the mean's precision, or 1 significant digit where that would print 0."""
    if scientific:
        return f"{width:.2g}"
    if 0 < width < 0.5 * 10**-decimals:
        return f"{width:.1g}"
    return f"{_round(width, decimals):.{decimals}f}"


def fmt_mean_ci(mean: float, ci: float, decimals: int) -> str:
    """'mean ± ci' (`fmt_number` formats); the mean alone when ci is NaN; '—' when mean is."""
    if mean is None or pd.isna(mean) or not math.isfinite(mean):
        return DASH if mean is None or pd.isna(mean) else str(mean)
    text = fmt_number(mean, decimals)
    if ci is not None and not pd.isna(ci) and math.isfinite(ci):
        scientific = abs(mean) >= _SCIENTIFIC or abs(ci) >= _SCIENTIFIC
        text += f" ± {_fmt_width(float(ci), decimals, scientific)}"
    return text


def fmt_interval(mean: float, lo: float, hi: float, decimals: int, bounded: bool = False) -> str:
    """A mean and its interval: 'mean (lo–hi)' when `bounded` (accuracy) or when the interval is
    not symmetric at the printed precision (clipped to the metric's range), else 'mean ± half';
    the mean alone without an interval; '—' without a mean."""
    if mean is None or pd.isna(mean):
        return DASH
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return fmt_number(mean, decimals)
    mean, lo, hi = float(mean), float(lo), float(hi)
    scientific = max(abs(mean), abs(lo), abs(hi)) >= _SCIENTIFIC
    tol = 0.5 * 10**-decimals if not scientific else 1e-3 * max(abs(hi - lo), 1e-300)
    if bounded or abs((mean - lo) - (hi - mean)) > tol:
        return (
            f"{fmt_number(mean, decimals)} ({fmt_number(lo, decimals)}–{fmt_number(hi, decimals)})"
        )
    return f"{fmt_number(mean, decimals)} ± {_fmt_width((hi - lo) / 2, decimals, scientific)}"


def headline_marks(
    rows: pd.DataFrame, stats: pd.DataFrame, metric: str, decimals: int
) -> tuple[dict[str, bool], dict[str, bool], set[str]]:
    """({model: best}, {model: significantly different from the best}, {models not tested})
    of one headline column.

    `rows` are one (task, n_train) group's rows, `stats` its `summarize` by model (indexed by
    model). Best: the best mean (`HIGHER_IS_BETTER`) and every mean equal to it at the printed
    precision. Significant: `gdbench.reports.stats.compare_to_best` (paired test on per-example
    outcomes, Holm-corrected across the column's models), adjusted p < `ALPHA`.
    """
    means = stats[f"{metric}_mean"]
    finite = means.dropna()
    if finite.empty:
        return {}, {}, set()
    higher = HIGHER_IS_BETTER.get(metric, False)
    best_value = finite.max() if higher else finite.min()
    best = {
        m: bool(round(float(v), decimals) == round(float(best_value), decimals))
        for m, v in finite.items()
    }
    adjusted, tests = compare_to_best(rows, metric, means, higher)
    untested = {m for m, name in tests.items() if name == "none"}
    return best, {m: bool(p < ALPHA) for m, p in adjusted.items()}, untested


def markdown_summary(df: pd.DataFrame) -> str:
    """Markdown for rows of one or more runs: per task a headline table at the task's largest
    n_train, the Bayes accuracy and true log-likelihood of synthetic tasks, and test accuracy
    per model and size; then a compute table and the list of cells whose status is not ok."""
    check_unique_cells(df)
    parts = ["## Results by task", "", HEADLINE_LEGEND, ""]
    for task in sorted(df["task"].unique()):
        parts += _task_section(df[df["task"] == task], task)
    parts += ["## Compute", "", *_compute_table(df), ""]
    parts += _not_ok_section(df)
    return "\n".join(parts).rstrip() + "\n"


def _task_section(rows: pd.DataFrame, task: str) -> list[str]:
    largest = int(rows["n_train"].max())
    top_rows = rows[rows["n_train"] == largest]
    stats = summarize(top_rows, HEADLINE, by=("model",))
    top = stats.set_index("model")
    paradigm = rows.groupby("model")["paradigm"].first()
    bound = _bound_models(top_rows)
    metrics = [m for m in HEADLINE if top[f"{m}_mean"].notna().any()]
    marks = {m: headline_marks(top_rows, top, m, DECIMALS[m]) for m in metrics}
    untested = set().union(*(marks[m][2] for m in metrics)) if metrics else set()
    lines = [
        f"### {_cell(task)}",
        "",
        f"Data: `{'`, `'.join(sorted(rows['preprocess'].astype(str).unique()))}`.",
        "",
        f"At n_train = {largest}:",
        "",
    ]
    header = ["model", "paradigm", "seeds ok", *(HEADERS[m] for m in metrics)]
    body = []
    any_sig = False
    for model in sorted(paradigm.index):
        if model in top.index and top.loc[model, "n_ok"] > 0:
            g = top.loc[model]
            seeds = _seeds(int(g["n_ok"]), int(g["n_not_ok"]))
            cells = []
            for m in metrics:
                text = fmt_interval(
                    g[f"{m}_mean"], g[f"{m}_lo"], g[f"{m}_hi"], DECIMALS[m], m == "accuracy"
                )
                if text != DASH and marks[m][0].get(model, False):
                    text = f"**{text}**"
                if marks[m][1].get(model, False):
                    text += f" {SIG_MARK}"
                    any_sig = True
                if m in ("log_lik", "bits_per_dim") and model in bound and text != DASH:
                    text += f" {BOUND_MARK}"
                cells.append(text)
        else:
            n_bad = int(top.loc[model, "n_not_ok"]) if model in top.index else 0
            seeds = f"0 (+{n_bad} not ok)" if n_bad else "0 (not run)"
            cells = [DASH] * len(metrics)
        body.append([model, paradigm[model], seeds, *cells])
    lines += table(header, body)
    lines += ["", headline_legend(top_rows, stats, metrics, any_sig, untested)]
    if bound:
        lines += ["", f"{BOUND_MARK} bound on the likelihood (ELBO-like), not the exact value."]
        lines += _elbo_line(top_rows)
    if (paradigm == "reference").any():
        lines += ["", f"{REFERENCE_NOTE} (same subsets, seeds and metric definitions)."]
    reference = _synthetic_line(rows)
    if reference:
        lines += ["", reference]
    return [*lines, ""]


#: The legend of every headline table, said once above them (the docs quote it).
HEADLINE_LEGEND = (
    "Each task's table is at its largest training size: the mean over ok seeds (ok cells only) "
    f'with its {INTERVAL_METHOD}; "mean (lo–hi)" where the interval is asymmetric (accuracy, '
    'or clipped to the metric\'s range), "mean ± half-width" otherwise. **Bold**: best mean '
    "of the column (↑ highest, ↓ lowest; ties at the printed precision all bold). "
    f"{SIG_MARK}: differs from the column's best model (α = {ALPHA:g}) by a {TEST_METHOD} "
    "across the models of the column."
)


def headline_legend(
    rows: pd.DataFrame,
    stats: pd.DataFrame,
    metrics: list[str],
    any_sig: bool,
    untested: set[str] = frozenset(),
) -> str:
    """The line under a headline table: its marks (`HEADLINE_LEGEND` says what they mean) and
    which columns' intervals are over seeds only."""
    text = "Intervals, bold and marks as explained under Results by task"
    text += "." if any_sig else "; no model differs significantly from the best."
    seeds_only = [m for m in metrics if (~stats[f"{m}_test"] & stats[f"{m}_mean"].notna()).any()]
    if seeds_only:
        text += f" {', '.join(HEADERS[m] for m in seeds_only)}: {SEEDS_ONLY_NOTE}."
    if untested:
        text += (
            f" Not tested (no shared ok seed with the best to pair): {', '.join(sorted(untested))}."
        )
    return text


#: Per-grid compute columns, aggregated over a grid's rows (a grid resumed in parts has several
#: timings: seconds and rates are averaged, the spread is the widest, repeats the fewest).
_COMPUTE_AGG = {
    "compile_s": "max",
    "fit_s": "mean",
    "fit_s_min": "min",
    "fit_s_max": "max",
    "fit_repeats": "min",
    "predict_s": "mean",
    "predict_per_s": "mean",
    "flops": "mean",
    "fit_flops": "mean",
    "flop_rate": "mean",
    "peak_fraction": "mean",
    "peak_bytes": "max",
    "input_s": "max",
    "load_s": "max",
}
#: Input-pipeline columns of the compute table, shown when a run measured them.
INPUT_NOTE = (
    "Input: seconds to copy the grid's inputs (pool, test set, cell keys and weights) to the "
    "device(s), apart from compile and fit. Task load: seconds to load the task (read or "
    "generate, preprocess) in the process that ran the grid."
)
COMPUTE_NOTE = (
    "compile: lowering + compiling the grid's programs ahead of time (fit and evaluate; for "
    "models that sample, the sampling and sample-scoring programs too; robustness when asked), "
    "or loading them from the compilation cache on a warm run. fit s per cell: "
    "median wall seconds of the grid's fit over timed repeats after a warm-up run / cells "
    "(min–max of the repeats, number of repeats; 'warm-up only': the first run is the only "
    "measurement). predict: test examples x cells per second of evaluation. GFLOP per cell: "
    "XLA cost analysis of fit + evaluation, every loop body counted by its trip count. "
    "Achieved: fit FLOPs / fit seconds, and its % of the device peak (measured float32 matmul "
    "peak on CPU, published peak on GPU/TPU; see the run's provenance). Peak memory: XLA memory "
    "analysis of the larger program, MB = 10^6 bytes."
)
#: Marks FLOPs stored by gdbench versions that counted every loop body once (no fit_flops).
LOOP_ONCE_MARK = "‡"
LOOP_ONCE_NOTE = (
    f"{LOOP_ONCE_MARK} FLOPs stored by an earlier gdbench: XLA's count with every loop body "
    "counted once, an undercount for iterative fits by about their number of steps."
)


#: How the two per-cell costs of the compute tables are defined (the docs quote it).
COST_NOTE = (
    "Steady-state s per cell: fit + evaluation seconds per cell of an already compiled grid "
    "(median of timed repeats / cells). End-to-end s per cell: what a single run pays, "
    "(compile + input copy) per grid / cells + steady-state; for sk: references, which "
    "compile nothing, the two are equal."
)


def grid_costs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, task, model) grid with its compute columns (`_COMPUTE_AGG`), its
    `cells`, `steady_s` (fit_s + predict_s, seconds per cell) and `end_to_end_s` (steady_s +
    (compile_s + input_s) / cells, seconds per cell; input_s counts 0 where not measured)."""
    grid_key = ["run", "task", "model"] if "run" in df.columns else ["task", "model"]
    df = df.assign(**{c: math.nan for c in _COMPUTE_AGG if c not in df.columns})
    if "grid_cells" not in df.columns:
        df = df.assign(grid_cells=math.nan)
    grids = (
        df.groupby(grid_key, sort=True)
        .agg(
            paradigm=("paradigm", "first"),
            cells=("grid_cells", "max"),
            **{c: (c, how) for c, how in _COMPUTE_AGG.items()},
        )
        .reset_index()
    )
    grids["steady_s"] = grids["fit_s"] + grids["predict_s"].fillna(0.0)
    fixed = grids["compile_s"].fillna(0.0) + grids["input_s"].fillna(0.0)
    per_cell = (fixed / grids["cells"]).where(fixed > 0, 0.0)
    grids["end_to_end_s"] = grids["steady_s"] + per_cell
    return grids


def _compute_table(df: pd.DataFrame) -> list[str]:
    """Two tables per (run, task, model) grid, narrow enough for a 1,000 px page: costs
    (compile seconds, steady-state and end-to-end seconds per cell, fit seconds with spread
    and repeats) and throughput (predict rate, GFLOP per cell, achieved GFLOP/s and % of peak,
    peak memory, input and task-load seconds); a dash where a value was not measured."""
    grids = grid_costs(df)
    several = "run" in grids.columns and grids["run"].nunique() > 1
    grid_key = (["run"] if several else []) + ["task", "model"]
    keys = [[str(g[k]) for k in grid_key] for _, g in grids.iterrows()]
    cost_header = [
        *grid_key,
        "paradigm",
        "cells",
        "compile s (per grid)",
        "steady-state s per cell",
        "end-to-end s per cell",
        "fit s per cell (min–max, repeats)",
    ]
    cost_body = [
        [
            *key,
            g["paradigm"],
            str(int(g["cells"])),
            _sig(g["compile_s"]),
            _sig(g["steady_s"]),
            _sig(g["end_to_end_s"]),
            _fit_cell(g),
        ]
        for key, (_, g) in zip(keys, grids.iterrows(), strict=True)
    ]
    rate_header = [
        *grid_key,
        "predict examples/s",
        "GFLOP per cell",
        "achieved GFLOP/s (% of peak)",
        "peak memory MB",
    ]
    rate_body = [
        [
            *key,
            _sig(g["predict_per_s"]),
            _sig(g["flops"] / 1e9) + (f" {LOOP_ONCE_MARK}" if _loop_once(g) else ""),
            _rate_cell(g["flop_rate"], g["peak_fraction"]),
            _sig(g["peak_bytes"] / 1e6),
        ]
        for key, (_, g) in zip(keys, grids.iterrows(), strict=True)
    ]
    inputs = bool(np.isfinite(grids[["input_s", "load_s"]].to_numpy(dtype=float)).any())
    if inputs:  # runs of earlier gdbench versions did not measure them
        rate_header += ["input s (per grid)", "task load s"]
        for row, (_, g) in zip(rate_body, grids.iterrows(), strict=True):
            row += [_sig(g["input_s"]), _sig(g["load_s"])]
    lines = [
        "### Cost per cell",
        "",
        *table(cost_header, cost_body),
        "",
        COST_NOTE,
        "",
        "### Throughput, FLOPs and memory",
        "",
        *table(rate_header, rate_body),
        "",
        COMPUTE_NOTE,
    ]
    if inputs:
        lines += ["", INPUT_NOTE]
    if any(_loop_once(g) for _, g in grids.iterrows()):
        lines += ["", LOOP_ONCE_NOTE]
    if (grids["paradigm"] == "reference").any():
        note = (
            f"{REFERENCE_NOTE}: each cell fitted and timed on its own (after one untimed warm-up "
            "fit), nothing compiled, FLOPs and memory not measured."
        )
        lines += ["", note]
    return lines


def _loop_once(g: pd.Series) -> bool:
    """Whether a grid's FLOPs come from an older gdbench's loop-once count."""
    return math.isfinite(g["flops"]) and math.isnan(g["fit_flops"])


def _fit_cell(g: pd.Series) -> str:
    """'median (min–max, k repeats)', 'time (1 repeat)', 'time (warm-up only)', or the median
    alone when the repeats were not recorded (older rows, scikit-learn references)."""
    text = _sig(g["fit_s"])
    repeats = g["fit_repeats"]
    if text == DASH or repeats is None or math.isnan(repeats):
        return text
    if repeats == 0:
        return f"{text} (warm-up only)"
    if repeats == 1:
        return f"{text} (1 repeat)"
    return f"{text} ({_sig(g['fit_s_min'])}–{_sig(g['fit_s_max'])}, {int(repeats)} repeats)"


def _rate_cell(rate: float, fraction: float) -> str:
    """'GFLOP/s (p%)' of an achieved FLOP/s and its fraction of the device peak."""
    text = _sig(rate / 1e9)
    if text != DASH and fraction is not None and math.isfinite(fraction):
        text += f" ({100 * fraction:.3g}%)"
    return text


def _not_ok_section(df: pd.DataFrame) -> list[str]:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return []
    keys = (["run"] if "run" in df.columns else []) + ["task", "model", "n_train", "seed"]
    bad = bad.sort_values(keys)
    body = [
        [*(str(r[k]) for k in keys), r["status"], str(r["message"])[:_MESSAGE_CHARS]]
        for _, r in bad.iterrows()
    ]
    title = f"## Cells not ok ({len(bad)} of {len(df)}, excluded from all statistics)"
    return [title, "", *table([*keys, "status", "message"], body), ""]


def _elbo_line(rows: pd.DataFrame) -> list[str]:
    if "elbo" not in rows:
        return []
    ok = rows[(rows["status"] == "ok") & rows["elbo"].notna()]
    if ok.empty:
        return []
    stats = summarize(ok, ["elbo"], by=("model",))
    parts = [
        f"{r['model']} {fmt_mean_ci(r['elbo_mean'], r['elbo_ci95'], 2)} nats"
        for _, r in stats.iterrows()
    ]
    return [
        "",
        "ELBO (looser bound; the log p(x) column holds the importance-weighted bound): "
        + "; ".join(parts)
        + ".",
    ]


def likelihood_table(df: pd.DataFrame) -> str:
    """One table across tasks: per model, bits/dim and accuracy at each task's largest size.

    Rows are models (generative first), columns tasks; a cell reads ``bits/dim / accuracy``
    (means over ok seeds), with the bound mark where the likelihood is a bound and a dash
    where the model has no likelihood of the task's data.
    """
    if "bits_per_dim" not in df or df["bits_per_dim"].notna().sum() == 0:
        return ""
    tasks = sorted(df["task"].unique())
    order = {"generative": 0, "hybrid": 1, "discriminative": 2}
    models = df.groupby("model")["paradigm"].first()
    models = sorted(models.index, key=lambda m: (order.get(models[m], 3), m))
    body = []
    for model in models:
        cells = []
        for task in tasks:
            rows = df[(df["task"] == task) & (df["model"] == model) & (df["status"] == "ok")]
            rows = rows[rows["n_train"] == df.loc[df["task"] == task, "n_train"].max()]
            if rows.empty:
                cells.append(DASH)
                continue
            bpd = rows["bits_per_dim"].mean()
            mark = f" {BOUND_MARK}" if model in _bound_models(rows) else ""
            bpd_text = DASH if pd.isna(bpd) else f"{bpd:.3f}{mark}"
            cells.append(f"{bpd_text} / {rows['accuracy'].mean():.3f}")
        body.append([model, str(df.loc[df["model"] == model, "paradigm"].iloc[0]), *cells])
    lines = [
        "## Likelihood and accuracy across tasks",
        "",
        "Each cell: test bits per dimension (lower is better; densities in the task's original "
        f"units, see each task's data line) / test accuracy, at the task's largest training "
        f"size, mean over seeds. {BOUND_MARK}: a bound (VAE: importance-weighted), not exact. "
        f"{DASH}: the model has no likelihood of that task's data.",
        "",
        *table(["model", "paradigm", *tasks], body),
        "",
    ]
    return "\n".join(lines)


def _bound_models(rows: pd.DataFrame) -> set[str]:
    ok = rows[rows["status"] == "ok"]
    flags = ok["likelihood_is_bound"].astype("boolean").fillna(False).astype(bool)
    return set(ok.loc[flags, "model"])


def _synthetic_line(rows: pd.DataFrame) -> str:
    bayes = rows["bayes_accuracy"].dropna()
    true_ll = rows["true_log_lik"].dropna()
    facts = []
    if not bayes.empty:
        facts.append(f"Bayes accuracy {bayes.mean():.4f} (Bayes error {1 - bayes.mean():.4f})")
    if not true_ll.empty:
        facts.append(f"true log p(x) of the test set {true_ll.mean():.3f} nats per example")
    return "Reference (synthetic task): " + "; ".join(facts) + "." if facts else ""


def _seeds(n_ok: int, n_not_ok: int) -> str:
    return f"{n_ok} (+{n_not_ok} not ok)" if n_not_ok else str(n_ok)


def _sig(value: float) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.3g}"


def _round(value: float, decimals: int) -> float:
    return round(float(value), decimals) + 0.0


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def table(header: list[str], body: list[list[str]]) -> list[str]:
    """Lines of a Markdown pipe table (cells escaped)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return lines
