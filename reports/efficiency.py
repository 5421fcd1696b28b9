"""The report's sample-efficiency section: learning curves with bootstrap intervals, power-law
fits, and for each generative/discriminative pair the crossover size n* (Ng & Jordan, 2001).

Statistics come from `gdbench.reports.curves`; this module only chooses the pairs and lays out the
Markdown. Error is 1 - test accuracy throughout.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from gdbench.reports import curves
from gdbench.reports.stats import error_curves
from gdbench.reports.tables import DASH, table

#: Training-set error within this distance of the fitted asymptote counts as "reached".
EPS = 0.01

REGIME_TEXT = {
    "crossover": "crossover",
    "discriminative_always": "discriminative better throughout",
    "generative_always": "generative better throughout",
    "no_difference": "no significant difference",
    "mixed": "mixed",
}


@dataclasses.dataclass(frozen=True)
class Efficiency:
    """What the report shows about sample efficiency."""

    markdown: str
    #: One row per (task, pair): `gdbench.reports.curves.crossover_table` plus a `tests` column.
    crossovers: pd.DataFrame
    #: One row per (task, model): `gdbench.reports.curves.curve_summary`.
    fits: pd.DataFrame
    #: Per task, the paired difference curves in `gdbench.reports.figures.crossover_plot`'s format
    #: (without suite pairs: each generative model against one discriminative model).
    per_size: dict[str, pd.DataFrame]


def choose_pairs(
    df: pd.DataFrame, suite_pairs: Sequence[Sequence[str]] = ()
) -> list[tuple[str, str, str]]:
    """(generative, discriminative, what it tests) pairs to compare.

    The run's suite pairs (its manifest's ``config.pairs``) where both models have rows; without
    any, every generative x discriminative pair present, labelled "all pairs".
    """
    models = set(df["model"])
    chosen = [(g, d, why) for g, d, why in suite_pairs if g in models and d in models]
    if chosen:
        return chosen
    paradigm = df.groupby("model")["paradigm"].first()
    gens = sorted(paradigm.index[paradigm == "generative"])
    discs = sorted(paradigm.index[paradigm == "discriminative"])
    return [(g, d, "") for g in gens for d in discs]


def efficiency(
    df: pd.DataFrame,
    suite_pairs: Sequence[Sequence[str]] = (),
    n_boot: int = 2000,
    n_test: Mapping[str, int] | None = None,
) -> Efficiency:
    """Crossovers, learning-curve fits and per-size curves of the rows `df` (all runs).
    `n_test` ({task: test-set size}) puts the test set's noise into the asymptotes' intervals
    (`gdbench.reports.curves.curve_summary`)."""
    pairs = choose_pairs(df, suite_pairs)
    tests = {(g, d): why for g, d, why in pairs}
    per_size: dict[str, list[pd.DataFrame]] = {}
    rows = []
    for task in sorted(df["task"].unique()):
        task_rows = df[df["task"] == task]
        present = set(task_rows["model"])
        for g, d, why in pairs:
            if g not in present or d not in present:
                continue
            cx = curves.crossover(task_rows, task, g, d, n_boot=n_boot)
            rows.append(_crossover_row(cx, why))
            per_size.setdefault(task, []).append(
                cx.per_size.assign(
                    pair=f"{g} vs {d}",
                    n_star=cx.n_star,
                    n_star_lo=cx.n_star_lo,
                    n_star_hi=cx.n_star_hi,
                )
            )
    crossovers = pd.DataFrame(rows)
    if not any(why for _, _, why in pairs):
        # Every pair: plot each generative model against one discriminative model only
        # (logistic regression when present), or the figure would hold dozens of curves.
        discs = sorted({d for _, d, _ in pairs})
        keep = next(
            (d for d in ("logreg", "logreg?C=10000") if d in discs), discs[0] if discs else ""
        )
        per_size = {
            t: [f for f in frames if f["pair"].iloc[0].endswith(f" vs {keep}")]
            for t, frames in per_size.items()
        }
        per_size = {t: frames for t, frames in per_size.items() if frames}
    fits = curves.curve_summary(df, eps=EPS, n_test=n_test)
    boot = error_curves(df)
    lines = ["## Sample efficiency", ""]
    lines += _crossover_lines(crossovers, bool(suite_pairs) and bool(tests))
    lines += _fit_lines(fits)
    lines += _curve_lines(boot)
    return Efficiency(
        markdown="\n".join(lines).rstrip() + "\n",
        crossovers=crossovers,
        fits=fits,
        per_size={t: pd.concat(frames, ignore_index=True) for t, frames in per_size.items()},
    )


def _crossover_row(cx: curves.Crossover, why: str) -> dict:
    ps = cx.per_size
    tested = ps.loc[ps["n_pairs"] > 0, "n_train"]
    return {
        "task": cx.task,
        "generative": cx.generative,
        "discriminative": cx.discriminative,
        "tests": why,
        "regime": cx.regime,
        "n_star": cx.n_star,
        "n_star_lo": cx.n_star_lo,
        "n_star_hi": cx.n_star_hi,
        "boot_fraction": cx.boot_fraction,
        "n_sizes": int((ps["n_pairs"] > 0).sum()),
        "n_min": float(tested.min()) if len(tested) else math.nan,
        "n_max": float(tested.max()) if len(tested) else math.nan,
        "min_pairs": int(ps["n_pairs"].min()) if len(ps) else 0,
        "n_not_ok": int(ps["n_not_ok"].sum()),
        "description": cx.describe(),
    }


def _crossover_lines(crossovers: pd.DataFrame, from_suite: bool) -> list[str]:
    lines = [
        "### Generative vs discriminative: crossover size n*",
        "",
        "Each pair is compared on identical training subsets (same size and seed), so the "
        "differences are paired: per size, the mean of err(generative) - err(discriminative) "
        "with a bootstrap 95% CI over seeds and a paired test on the same test examples "
        "and seeds (alpha 0.05): McNemar's exact test where every seed gives both models the "
        "same outcomes (one training set, e.g. n = pool), else a two-level test whose variance "
        "combines seeds and test examples; over seeds only for runs without per-example "
        "outcomes. "
        "n* is where the mean difference curve last crosses zero upward (interpolated in "
        'log n), with a bootstrap 95% CI over seeds; "regime" says which model wins where.',
        "",
    ]
    if not from_suite:
        lines += ["The run's suite names no pairs: every generative x discriminative pair.", ""]
    if crossovers.empty:
        return [*lines, "No task has both a generative and a discriminative model.", ""]
    # the suite's "what this pair tests"; left out where no pair says (e.g. "all pairs")
    why = crossovers["tests"].fillna("").astype(str)
    show_why = bool((why != "").any())
    body = []
    for _, r in crossovers.iterrows():
        body.append(
            [
                r["task"],
                f"{r['generative']} vs {r['discriminative']}",
                *([r["tests"] or DASH] if show_why else []),
                REGIME_TEXT.get(r["regime"], r["regime"]),
                _n_star(r),
                f"{r['n_sizes']} × ≥{r['min_pairs']}",
                r["description"],
            ]
        )
    header = ["task", "pair", *(["tests"] if show_why else []), "regime", "n* (95% CI)"]
    return [*lines, *table([*header, "sizes × pairs", "finding"], body), ""]


def _n_star(r: pd.Series) -> str:
    """n* and its interval; censored values as "<n_min" / ">n_max" (see `curves.Crossover`)."""
    if math.isnan(r["n_star"]):
        return DASH
    text = curves.format_n_star(r["n_star"], r["n_min"], r["n_max"])
    if not math.isnan(r["n_star_lo"]):
        lo, hi = (
            curves.format_n_star(r[k], r["n_min"], r["n_max"]) for k in ("n_star_lo", "n_star_hi")
        )
        text += f" ({lo}–{hi})"
    return text


def _fit_lines(fits: pd.DataFrame) -> list[str]:
    lines = [
        "### Learning-curve fits",
        "",
        "err(n) = c + a·n^(−b) fitted to each mean learning curve, with c at least the Bayes "
        "error where the task knows it (else 0); intervals are bootstrap 95% over seeds, "
        "refitting each resample, and include the test set's sampling noise where the run "
        "records the test-set size. "
        f'"n to c+{EPS}" is the training size at which the fitted curve comes within {EPS} '
        f'of its asymptote c (never printed beyond the tested sizes); "n to best+{EPS}" the '
        f"smallest tested size whose mean error is within {EPS} of the lowest mean error "
        "observed (no extrapolation); AULC is the mean error over the measured sizes on a "
        "log n axis (lower: better sample efficiency).",
        "",
    ]
    body = []
    for _, r in fits.iterrows():
        body.append(
            [
                r["task"],
                r["model"],
                r["paradigm"],
                _num(r["at_largest"], 3) + (f" (n={r['largest_n']:.0f})" if r["n_sizes"] else ""),
                curves.format_asymptote(r),
                curves.format_n_within(r),
                curves.format_n_best(r),
                _interval(r["aulc"], r["aulc_lo"], r["aulc_hi"], 3),
            ]
        )
    header = ["task", "model", "paradigm", "error at largest n", "asymptote c", f"n to c+{EPS}"]
    lines += table([*header, f"n to best+{EPS}", "AULC"], body)
    flags = [f for f in curves.FLAG_LEGEND if not fits.empty and (fits["flag"] == f).any()]
    if flags:
        lines += ["", *(f"{curves.FLAG_LEGEND[f].replace('ε', str(EPS))}." for f in flags)]
    return [*lines, ""]


def _curve_lines(boot: pd.DataFrame) -> list[str]:
    lines = [
        "### Learning curves",
        "",
        "Test error by training-set size: mean over ok seeds with the 95% interval of the "
        "results tables (seeds and the test set's sampling; see Results by task).",
        "",
    ]
    for task, rows in boot.groupby("task", sort=True):
        sizes = sorted(int(n) for n in rows["n_train"].unique())
        body = []
        for model, g in rows.groupby("model", sort=True):
            by_n = g.set_index("n_train")
            cells = [
                _interval(by_n.at[n, "mean"], by_n.at[n, "lo"], by_n.at[n, "hi"], 3)
                if n in by_n.index
                else DASH
                for n in sizes
            ]
            body.append([model, *cells])
        lines += [f"#### {task}", "", *table(["model", *(f"n={n}" for n in sizes)], body), ""]
    return lines


def _num(value: float, decimals: int) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def _interval(value: float, lo: float, hi: float, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    text = _num(value, decimals)
    if lo is not None and math.isfinite(lo):
        hi_text = _num(hi, decimals) if math.isfinite(hi) else "∞"
        text += f" ({_num(lo, decimals)}–{hi_text})"
    return text
