"""The family verdict across tasks: which paradigm wins where.

Two questions, answered from stored rows (numpy, scipy, pandas and `autorank`; no JAX):

1. **Which models win across tasks, per size regime.** Each task's tested training sizes are
   split by position into thirds; the "smallest sizes" regime is the first third, "middle
   sizes" the middle third and "full pool" the largest size alone. A model's score on a task
   in a regime is its mean test error over ok seeds, averaged over the regime's sizes. Over
   the tasks (the blocks) the models are ranked (1 = lowest error, ties share the mean rank)
   and compared with the Friedman test and the Nemenyi post-hoc test, drawn as a
   critical-difference diagram (Demšar, 2006), all computed by `autorank` (Herbold, 2020)
   with its non-parametric mode. `autorank` needs at least five tasks; with two to four the
   ranks and the Friedman test (`scipy.stats.friedmanchisquare`, three models or more) are
   reported without a post-hoc test. Only models with a score on every task enter a regime's
   test (a complete block design); the others are named.

2. **Ng & Jordan's two claims**, for each (generative, discriminative) pair the run's suite
   names, on each task with both models (Ng & Jordan, 2001):

   (a) *the generative model approaches its asymptote faster.* Evidence: for each model the
       smallest tested size whose mean error is within ε of the lowest mean error it reached
       over the tested sizes (`gdbench.reports.curves.n_to_best`; model-free, never extrapolated),
       and the ratio n_disc / n_gen with a percentile-bootstrap interval over paired seed
       columns. Supported when the interval of log(n_disc / n_gen) lies above 0, not
       supported when its upper end is at most 0 (the generative model is not faster in at
       least 97.5% of resamples), inconclusive otherwise, and always inconclusive when
       both models reach their best only at the largest size (neither has levelled off).
   (b) *the discriminative model has the lower asymptotic error.* Evidence: the paired
       difference err_gen - err_disc at the largest size both models share, with an
       interval that combines the bootstrap over seeds with the test set's sampling noise
       (a conservative normal bound: the variance of a paired difference of two error rates
       on the same n_test examples is at most (e_gen + e_disc - d^2) / n_test, with add-one
       smoothed rates e = (errors + 1) / (n_test + 2) so that two perfect models still get
       the noise of one error each), and the two
       fitted asymptotes with their reliability flags. Supported when the interval lies
       above 0 and no pair of reliable fitted asymptotes contradicts it; not supported when
       it lies below 0 and the discriminative curve has levelled off (its best error was
       already reached within ε before the largest size), or when it lies within (-ε, ε)
       and both curves have levelled off (equal within ε); inconclusive otherwise.

References: J. Demšar, "Statistical comparisons of classifiers over multiple data sets",
JMLR 7:1-30, 2006. S. Herbold, "Autorank: a Python package for automated ranking of
classifiers", JOSS 5(48):2173, 2020. A. Y. Ng and M. I. Jordan, "On discriminative vs.
generative classifiers: a comparison of logistic regression and naive Bayes", NIPS 2001.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from gdbench.reports import curves

SIZE_REGIMES = ("smallest sizes", "middle sizes", "full pool")
VERDICTS = ("supported", "not supported", "inconclusive")
#: autorank refuses fewer blocks (tasks) than this.
MIN_TASKS_AUTORANK = 5
CITATION = (
    "Ranks, Friedman and Nemenyi tests as in Demšar (2006), computed with autorank "
    "(Herbold, 2020); claims as stated by Ng & Jordan (2001)."
)


@dataclass(frozen=True)
class RankTest:
    """Average ranks and the Friedman test of the models over the tasks in one size regime.

    `scores` is the (tasks x models) table of mean test error that was ranked; `mean_ranks`
    the models' average ranks (1 = lowest error), sorted best first; `friedman_stat` and
    `friedman_p` the Friedman chi-square statistic and p-value (NaN when not computable);
    `posthoc` "nemenyi" when autorank ran its post-hoc test (then `cd` is the critical
    difference of mean ranks at `alpha` and `result` autorank's `RankResult`), else "";
    `left_out` the models without a score on every task; `note` a sentence on what was not
    computed and why ("" when everything was).
    """

    regime: str
    scores: pd.DataFrame
    mean_ranks: pd.Series
    friedman_stat: float
    friedman_p: float
    posthoc: str
    cd: float
    alpha: float
    left_out: tuple[str, ...]
    note: str
    result: object = field(default=None, repr=False, compare=False)


def size_regimes(df: pd.DataFrame) -> pd.DataFrame:
    """(task, n_train, regime) for every task's tested sizes: the sizes sorted and split by
    position into three nearly equal parts (`numpy.array_split`); the first part is
    "smallest sizes", the second "middle sizes", and the largest size alone "full pool"."""
    out = []
    for task, rows in df.groupby("task", sort=True):
        sizes = np.sort(rows["n_train"].unique())
        parts = np.array_split(sizes, 3)
        for regime, part in zip(SIZE_REGIMES[:2], parts[:2], strict=True):
            out += [(task, int(n), regime) for n in part if n != sizes[-1]]
        out.append((task, int(sizes[-1]), SIZE_REGIMES[2]))
    return pd.DataFrame(out, columns=["task", "n_train", "regime"])


def regime_scores(df: pd.DataFrame, regime: str) -> pd.DataFrame:
    """(tasks x models) mean test error in `regime`: per task and model, the mean over the
    regime's sizes of the mean error over ok seeds; NaN where a model has no ok cell at one
    of those sizes."""
    if regime not in SIZE_REGIMES:
        raise ValueError(f"unknown size regime {regime!r}: use one of {SIZE_REGIMES}")
    sizes = size_regimes(df)
    sizes = sizes[sizes["regime"] == regime]
    ok = df[df["status"] == "ok"].assign(error=lambda r: 1.0 - r["accuracy"].astype(float))
    cells = ok.groupby(["task", "model", "n_train"])["error"].mean().rename("error").reset_index()
    grid = pd.MultiIndex.from_product(
        [sorted(df["task"].unique()), sorted(df["model"].unique())], names=["task", "model"]
    )
    full = (
        sizes[["task", "n_train"]]
        .merge(pd.DataFrame(index=grid).reset_index(), on="task")
        .merge(cells, on=["task", "model", "n_train"], how="left")
    )
    present = df.groupby(["task", "model"]).size().index
    table = full.groupby(["task", "model"])["error"].agg(lambda v: v.mean(skipna=False))
    table = table[table.index.isin(present)]
    return table.unstack("model")


def rank_test(df: pd.DataFrame, regime: str, alpha: float = 0.05) -> RankTest:
    """Average ranks, the Friedman test and (five tasks or more, three models or more) the
    Nemenyi post-hoc test of the models over the tasks in `regime` (see the module doc)."""
    scores = regime_scores(df, regime).dropna(axis="index", how="all")  # tasks with sizes here
    complete = scores.dropna(axis="columns", how="any")
    left_out = tuple(sorted(set(scores.columns) - set(complete.columns)))
    n_tasks, n_models = complete.shape
    nan = math.nan
    if n_tasks < 2 or n_models < 2:
        note = (
            f"not ranked: {n_tasks} task(s) and {n_models} model(s) with a score on every "
            "task (ranks need two of each)"
        )
        return RankTest(regime, complete, pd.Series(dtype=float), nan, nan, "", nan, alpha,
                        left_out, note)  # fmt: skip
    ranks = complete.rank(axis="columns", ascending=True).mean().sort_values()
    stat = p = nan
    if n_models >= 3:
        stat, p = (float(v) for v in stats.friedmanchisquare(*complete.T.to_numpy()))
    if n_tasks < MIN_TASKS_AUTORANK or n_models < 3:
        why = (
            f"{n_tasks} tasks: the Nemenyi post-hoc test and the critical-difference diagram "
            f"need at least {MIN_TASKS_AUTORANK} (autorank)"
            if n_tasks < MIN_TASKS_AUTORANK
            else "two models: no Friedman test (it needs three)"
        )
        return RankTest(regime, complete, ranks, stat, p, "", nan, alpha, left_out, why)
    result = _autorank(complete, alpha)
    mean_ranks = result.rankdf["meanrank"].astype(float).sort_values()
    return RankTest(
        regime,
        complete,
        mean_ranks,
        stat,
        float(result.pvalue),
        str(result.posthoc),
        float(result.cd),
        alpha,
        left_out,
        "",
        result,
    )


def _autorank(scores: pd.DataFrame, alpha: float):
    """autorank's Friedman + Nemenyi analysis of `scores` (lower is better), quietly (it
    prints its tables and its choice of tests)."""
    from autorank import autorank

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return autorank(
            scores.astype(float), alpha=alpha, order="ascending", force_mode="nonparametric"
        )


def rank_tests(df: pd.DataFrame, alpha: float = 0.05) -> list[RankTest]:
    """`rank_test` for each size regime, in the order of `SIZE_REGIMES`."""
    return [rank_test(df, regime, alpha) for regime in SIZE_REGIMES]


def cd_diagram(test: RankTest):
    """The critical-difference diagram of `test` (autorank's drawing, on a figure of our own,
    never pyplot's) or None when no post-hoc test ran."""
    if test.posthoc != "nemenyi" or test.result is None:
        return None
    from autorank import plot_stats
    from matplotlib.figure import Figure

    k = len(test.mean_ranks)
    fig = Figure(figsize=(6.0, 1.1 + 0.22 * (k + 1)), dpi=150)
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.86))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot_stats(test.result, allow_insignificant=True, ax=ax)
    fig.suptitle(
        f"{test.regime}: mean ranks over {len(test.scores)} tasks (1 = lowest error); "
        f"Friedman p {_p_eq(test.friedman_p)}, Nemenyi CD = {test.cd:.2f}",
        fontsize="small",
    )
    return fig


# --------------------------------------------------------------------------------------------
# Ng & Jordan's claims


def _paired_matrices(df: pd.DataFrame, task: str, gen: str, disc: str):
    """(sizes, gen errors, disc errors): (sizes x seeds) error matrices of the two models on
    the sizes and seeds where both have an ok cell."""
    rows = df[(df["task"] == task) & df["model"].isin([gen, disc]) & (df["status"] == "ok")]
    rows = rows.assign(error=1.0 - rows["accuracy"].astype(float))
    rows = rows[np.isfinite(rows["error"])]
    mats = [
        rows[rows["model"] == m].pivot(index="n_train", columns="seed", values="error")
        for m in (gen, disc)
    ]
    sizes = mats[0].index.intersection(mats[1].index).sort_values()
    seeds = mats[0].columns.intersection(mats[1].columns)
    g = mats[0].reindex(index=sizes, columns=seeds).to_numpy(dtype=float)
    d = mats[1].reindex(index=sizes, columns=seeds).to_numpy(dtype=float)
    both = np.isfinite(g) & np.isfinite(d)
    g, d = np.where(both, g, np.nan), np.where(both, d, np.nan)
    keep = both.any(axis=1)
    return sizes.to_numpy(dtype=float)[keep], g[keep], d[keep]


def _first_within(n: np.ndarray, means: np.ndarray, eps: float) -> np.ndarray:
    """Per row of `means` (R x S), the smallest size whose mean is within eps of the row's
    lowest mean (NaN means count as missing)."""
    filled = np.where(np.isfinite(means), means, np.inf)
    within = filled <= filled.min(axis=1, keepdims=True) + eps
    return n[np.argmax(within, axis=1)]


def claim_faster(
    n: np.ndarray,
    gen: np.ndarray,
    disc: np.ndarray,
    eps: float = 0.01,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Claim (a) on paired (sizes x seeds) error matrices: see the module doc.

    Returns {verdict, n_gen, n_disc (training examples), ratio (n_disc / n_gen), ratio_lo,
    ratio_hi, evidence (one sentence)}.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.stack([np.nanmean(gen, axis=1), np.nanmean(disc, axis=1)])
    n_gen, n_disc = _first_within(n, means, eps)
    k = gen.shape[1]
    lo = hi = math.nan
    if k >= 2 and n.size >= 2:
        idx = np.random.default_rng([seed, 1]).integers(0, k, size=(n_boot, k))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g_rep = np.nanmean(gen[:, idx], axis=2).T
            d_rep = np.nanmean(disc[:, idx], axis=2).T
        log_ratio = np.log(_first_within(n, d_rep, eps) / _first_within(n, g_rep, eps))
        tail = (1 - confidence) / 2
        lo, hi = np.quantile(log_ratio, [tail, 1 - tail], method="inverted_cdf")
    neither = n_gen == n_disc == n[-1]  # both still at their best only at the largest size
    if not math.isfinite(lo) or neither:
        verdict = "inconclusive"
    elif lo > 0:
        verdict = "supported"
    elif hi <= 0:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    ratio = n_disc / n_gen
    ci = (
        f" (95% CI {math.exp(lo):.2g}–{math.exp(hi):.2g})"
        if math.isfinite(lo)
        else " (no interval: fewer than two seeds or sizes)"
    )
    evidence = (
        f"n to within {eps:g} of its best error: generative {n_gen:.0f}, discriminative "
        f"{n_disc:.0f}; ratio {ratio:.2g}{ci}"
    )
    if neither:
        evidence += "; neither curve levels off before the largest size"
    elif n_disc == n[-1]:
        evidence += "; the discriminative curve reaches its best only at the largest size"
    return {
        "verdict": verdict,
        "n_gen": float(n_gen),
        "n_disc": float(n_disc),
        "ratio": float(ratio),
        "ratio_lo": math.exp(lo) if math.isfinite(lo) else math.nan,
        "ratio_hi": math.exp(hi) if math.isfinite(hi) else math.nan,
        "evidence": evidence,
    }


def claim_lower_asymptote(
    n: np.ndarray,
    gen: np.ndarray,
    disc: np.ndarray,
    eps: float = 0.01,
    n_test: int | None = None,
    fits: tuple[Mapping, Mapping] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Claim (b) on paired (sizes x seeds) error matrices: see the module doc. `fits` holds
    the two models' `curves.curve_summary` rows (generative, discriminative) or None.

    Returns {verdict, n (the largest shared size), diff (err_gen - err_disc there), lo, hi,
    evidence (one sentence)}.
    """
    g, d = gen[-1][np.isfinite(gen[-1])], disc[-1][np.isfinite(disc[-1])]
    diff = g - d
    mean = float(diff.mean())
    z = stats.norm.ppf(0.5 + confidence / 2)
    seed_sd = 0.0
    if diff.size >= 2:
        rng = np.random.default_rng([seed, 2])
        boot = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
        seed_sd = float(boot.std(ddof=1))
    test_sd = 0.0
    if n_test:
        e_g, e_d = ((float(e.mean()) * int(n_test) + 1.0) / (int(n_test) + 2.0) for e in (g, d))
        bound = max(e_g + e_d - mean**2, 0.0)
        test_sd = math.sqrt(bound / int(n_test))
    half = z * math.hypot(seed_sd, test_sd)
    lo, hi = mean - half, mean + half
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        levelled = [
            _first_within(n, np.nanmean(m, axis=1)[None, :], eps)[0] < n[-1] for m in (gen, disc)
        ]
    contradiction = False
    fit_text = ""
    if fits is not None:
        fg, fd = fits
        marks = [curves.format_asymptote(f) for f in (fg, fd)]
        fit_text = f"; fitted asymptotes: generative {marks[0]}, discriminative {marks[1]}"
        if fg["reliable"] and fd["reliable"] and fd["c_lo"] > fg["c_hi"]:
            contradiction = True
    if lo > 0 and not contradiction:
        verdict = "supported"
    elif hi < 0 and levelled[1]:
        verdict = "not supported"
    elif -eps < lo and hi < eps and all(levelled):
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    sources = "seeds and test set" if n_test else "seeds only: test-set size unknown"
    evidence = (
        f"at n={n[-1]:.0f}, error generative − discriminative = {mean:+.3f} "
        f"(95% interval {lo:+.3f} to {hi:+.3f}, {sources})" + fit_text
    )
    if verdict == "inconclusive" and hi < 0 and not levelled[1]:
        evidence += "; the discriminative curve is still falling at the largest size"
    if contradiction:
        evidence += "; the reliable fitted asymptotes disagree"
    return {"verdict": verdict, "n": float(n[-1]), "diff": mean, "lo": lo, "hi": hi,
            "evidence": evidence}  # fmt: skip


def claims_table(
    df: pd.DataFrame,
    pairs: Sequence[Sequence[str]],
    fits: pd.DataFrame | None = None,
    n_test: Mapping[str, int] | None = None,
    eps: float = 0.01,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Claims (a) and (b) for each (generative, discriminative[, description]) pair of `pairs`
    on each task where both models have paired ok cells at two sizes or more.

    Returns one row per (task, pair), in the order of `pairs` then task, with columns task,
    generative, discriminative, tests (the pair's description), faster (claim a's verdict),
    faster_evidence, lower (claim b's verdict), lower_evidence, and the numbers behind them
    (n_gen, n_disc, ratio, ratio_lo, ratio_hi, n_largest, diff, diff_lo, diff_hi).
    """
    fit_rows = {} if fits is None else {(r["task"], r["model"]): r for _, r in fits.iterrows()}
    out = []
    for pair in pairs:
        gen, disc = str(pair[0]), str(pair[1])
        why = str(pair[2]) if len(pair) > 2 else ""
        for task in sorted(df["task"].unique()):
            n, g, d = _paired_matrices(df, task, gen, disc)
            if n.size < 2:
                continue
            a = claim_faster(n, g, d, eps, n_boot, seed)
            pair_fits = None
            if (task, gen) in fit_rows and (task, disc) in fit_rows:
                pair_fits = (fit_rows[(task, gen)], fit_rows[(task, disc)])
            tests = None if n_test is None else n_test.get(task)
            b = claim_lower_asymptote(n, g, d, eps, tests, pair_fits, n_boot, seed)
            out.append(
                {
                    "task": task,
                    "generative": gen,
                    "discriminative": disc,
                    "tests": why,
                    "faster": a["verdict"],
                    "faster_evidence": a["evidence"],
                    "lower": b["verdict"],
                    "lower_evidence": b["evidence"],
                    "n_gen": a["n_gen"],
                    "n_disc": a["n_disc"],
                    "ratio": a["ratio"],
                    "ratio_lo": a["ratio_lo"],
                    "ratio_hi": a["ratio_hi"],
                    "n_largest": b["n"],
                    "diff": b["diff"],
                    "diff_lo": b["lo"],
                    "diff_hi": b["hi"],
                }
            )
    columns = [
        "task", "generative", "discriminative", "tests", "faster", "faster_evidence", "lower",
        "lower_evidence", "n_gen", "n_disc", "ratio", "ratio_lo", "ratio_hi", "n_largest",
        "diff", "diff_lo", "diff_hi",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# Markdown


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def rank_lines(tests: Sequence[RankTest]) -> list[str]:
    """Markdown: one table of average ranks per size regime (models as rows), the Friedman
    p-values and critical differences, and what was not computed."""
    ranked = [t for t in tests if len(t.mean_ranks)]
    if not ranked:
        return [f"- {t.regime}: {t.note}." for t in tests]
    models = sorted({m for t in ranked for m in t.mean_ranks.index},
                    key=lambda m: ranked[-1].mean_ranks.get(m, math.inf))  # fmt: skip
    header = "| model | " + " | ".join(t.regime for t in ranked) + " |"
    lines = [header, "|---|" + "---:|" * len(ranked)]
    for m in models:
        cells = [f"{t.mean_ranks[m]:.2f}" if m in t.mean_ranks.index else "—" for t in ranked]
        lines.append(f"| {_cell(m)} | " + " | ".join(cells) + " |")
    lines.append("| *Friedman p* | " + " | ".join(_p(t.friedman_p) for t in ranked) + " |")
    lines.append(
        "| *Nemenyi CD* | "
        + " | ".join(f"{t.cd:.2f}" if math.isfinite(t.cd) else "—" for t in ranked)
        + " |"
    )
    lines.append("| *tasks* | " + " | ".join(str(len(t.scores)) for t in ranked) + " |")
    lines.append("")
    for t in tests:
        notes = [t.note] if t.note else []
        if t.left_out:
            notes.append("left out (no score on every task): " + ", ".join(t.left_out))
        if notes:
            lines.append(f"- {t.regime}: " + "; ".join(notes) + ".")
    return lines


def _p_eq(p: float) -> str:
    """A p-value after "p": "= 0.012", "< 0.001" or "= —"."""
    text = _p(p)
    return text if text.startswith("<") else f"= {text}"


def headline_lines(tests: Sequence[RankTest], paradigms: Mapping[str, str]) -> list[str]:
    """Markdown bullets, one per ranked size regime: the best-ranked model(s) and paradigm,
    the best model of each other paradigm, and whether Nemenyi separates them (rank
    difference above CD) or only the Friedman test was possible."""
    lines = []
    for t in tests:
        if not len(t.mean_ranks):
            continue
        top = t.mean_ranks.iloc[0]
        best = [m for m, r in t.mean_ranks.items() if r == top]
        fams = sorted({paradigms.get(m, "?") for m in best})
        names = " and ".join(f"**{m}** ({paradigms.get(m, '?')})" for m in best)
        text = f"- **{t.regime}** ({len(t.scores)} tasks): best average rank {names}, {top:.2f}"
        others = []
        for other in sorted({paradigms.get(m, "?") for m in t.mean_ranks.index} - set(fams)):
            rival = next(m for m in t.mean_ranks.index if paradigms.get(m, "?") == other)
            gap = t.mean_ranks[rival] - top
            item = f"best {other}: {rival}, {t.mean_ranks[rival]:.2f}"
            if math.isfinite(t.cd):
                item += (
                    " (significantly worse by Nemenyi)"
                    if gap > t.cd
                    else " (not significantly different by Nemenyi)"
                )
            others.append(item)
        if others:
            text += "; " + "; ".join(others)
        text += f"; Friedman p {_p_eq(t.friedman_p)}."
        lines.append(text)
    return lines


def claims_lines(claims: pd.DataFrame) -> list[str]:
    """Markdown: the tally of each claim's verdicts, then one row per (task, pair)."""
    if claims.empty:
        return ["The run's suite names no generative/discriminative pairs with paired cells."]
    lines = []
    for key, text in (
        ("faster", "(a) the generative model approaches its asymptote faster"),
        ("lower", "(b) the discriminative model has the lower asymptotic error"),
    ):
        counts = claims[key].value_counts()
        tally = ", ".join(f"{v} on {int(counts.get(v, 0))}" for v in VERDICTS)
        lines.append(f"- **{text}**: {tally} of {len(claims)} (task, pair) comparisons.")
    lines += [
        "",
        "| task | pair | (a) faster | evidence | (b) lower asymptote | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in claims.iterrows():
        pair = f"{r['generative']} vs {r['discriminative']}"
        cells = [r["task"], pair, f"**{r['faster']}**", r["faster_evidence"],
                 f"**{r['lower']}**", r["lower_evidence"]]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


@dataclass(frozen=True)
class Verdict:
    """The report's summary section: Markdown lines and the figures they embed."""

    markdown: list[str]
    figures: list  # paths written (png, svg, pdf)
    rank_tests: list[RankTest]
    claims: pd.DataFrame


def verdict_section(
    df: pd.DataFrame,
    out_dir,
    pairs: Sequence[Sequence[str]] = (),
    fits: pd.DataFrame | None = None,
    n_test: Mapping[str, int] | None = None,
    eps: float = 0.01,
    n_boot: int = 2000,
) -> Verdict:
    """The summary that opens a report: the headline figure (`figures.paradigm_curves`), the
    rank tests per size regime with critical-difference diagrams (runs with two tasks or
    more) and Ng & Jordan's two claims for each suite pair (`claims_table`). Figures go to
    out_dir/figures/ (paradigms.*, cd_<regime>.*)."""
    from gdbench.reports import figures

    lines: list[str] = []
    tests = rank_tests(df) if df["task"].nunique() >= 2 else []
    paradigms = {str(m): str(p) for m, p in df.groupby("model")["paradigm"].first().items()}
    if any(len(t.mean_ranks) for t in tests):
        lines += [
            "Which models win where, across the tasks (average rank, 1 = lowest test error; "
            "details under *Ranks across tasks*):",
            "",
            *headline_lines(tests, paradigms),
            "",
        ]
    written = list(figures.paradigm_curves(df, out_dir, fits))
    out = Path(out_dir)
    if written:
        png = next(p for p in written if p.suffix == ".png")
        lines += [
            f"![test error by paradigm]({png.relative_to(out).as_posix()})",
            "",
            "Test error against training size, one panel per task: blues are discriminative "
            "models, oranges generative, greens hybrid, greys scikit-learn references; within "
            "a family each model has its own shade, dash pattern and marker. Lines are means "
            "over seeds with 95% bands that combine seeds and the test set's sampling; "
            "the dotted line is the Bayes error of a "
            "synthetic task. A mark after a name (†, ‡) flags that model's fitted asymptote "
            "as unreliable on some task (see the learning-curve fits).",
            "",
        ]
    claims = claims_table(df, pairs, fits, n_test, eps, n_boot)
    if pairs:
        lines += [
            "### Ng & Jordan's claims, per task",
            "",
            "For each pair the run's suite names: (a) the generative model approaches its "
            "asymptote faster — compared by the smallest tested size whose mean error is "
            f"within {eps:g} of the lowest mean error the model reached (ratio "
            "discriminative / generative with a bootstrap 95% CI over paired seeds; supported "
            "when the CI lies above 1); (b) the discriminative model has the lower asymptotic "
            "error — the paired error difference at the largest size both share, with a 95% "
            "interval over seeds and the test set (supported when it lies above 0 and no two "
            "reliable fitted asymptotes say otherwise; not supported when it lies below 0 "
            "with the discriminative curve levelled off, or within "
            f"±{eps:g} with both levelled off; otherwise inconclusive).",
            "",
            *claims_lines(claims),
            "",
        ]
    if tests:
        lines += [
            "### Ranks across tasks",
            "",
            "Average rank of each model over the tasks (1 = lowest mean test error) in three "
            "size regimes: the smallest third of each task's tested sizes, the middle third, "
            "and the full pool (the largest size). The Friedman test asks whether the models "
            "differ at all; the Nemenyi post-hoc test compares every pair: two models whose "
            "mean ranks differ by less than the critical difference CD are not significantly "
            "different (a bar joins them in the diagrams). " + CITATION,
            "",
            *rank_lines(tests),
            "",
        ]
        for test in tests:
            fig = cd_diagram(test)
            if fig is None:
                continue
            stem = "cd_" + test.regime.replace(" ", "_")
            paths = figures.save_figure(fig, out_dir, stem)
            written += paths
            png = paths[0].relative_to(out).as_posix()
            lines += [f"![critical-difference diagram, {test.regime}]({png})", ""]
    return Verdict(lines, written, tests, claims)
