"""Per-group statistics of stored rows: means with 95% intervals that combine the variation
over seeds (training subsets) with the test set's sampling, and the paired tests (with Holm's
correction) that every report uses to compare two models.

Why the test set counts: every seed of a (task, model, n_train) group is evaluated on the same
n_test test examples, so averaging more seeds never removes the test set's own sampling noise;
at n_train = pool every seed trains on the same data and the seeds alone would give an interval
of width 0. The interval of a mean over S seeds therefore uses the variance estimate

    V = s_seed^2 / S + s_test^2 / n_test

where s_seed^2 is the variance (ddof=1) of the S per-seed means and s_test^2 the variance
between test examples:

- accuracy, from the stored per-example bits (`gdbench.results.schema.unpack_correct`): the two-way
  crossed random-effects (seeds x test examples) ANOVA estimate, the variance of the examples'
  correctness averaged over seeds less the seed-by-example interaction's share (`_test_term`),
  so that V is unbiased for the variance of the mean (a plain sum of the two sample variances
  would count the interaction twice and be conservative, as the two-level "pigeonhole"
  bootstrap is, Owen 2007). With one seed, or every seed the same fit, it is the test set's
  binomial variance p (1 - p).
- NLL, Brier, log p(x), bits/dim and ECE: the mean over seeds of the per-cell variance over
  test examples (the stored `<m>_sd`), an upper bound of the same quantity (it keeps the
  interaction), so these intervals are conservative.

Degrees of freedom: Welch-Satterthwaite, from S - 1 and n_test - 1.

- accuracy: the Wilson score interval with the effective sample size n_eff = p (1 - p) / V,
  scaled by (t_{n_test - 1} / t_df)^2 (Korn & Graubard 1998: the loss of degrees of freedom
  against n_test independent outcomes; seeds-only rows: (z / t_df)^2), at most S * n_test;
  it stays inside [0, 1].
  Where every outcome is equal (p = 0 or 1, V = 0), n_eff = n_test. At n = pool with
  identical seeds it is exactly the Wilson interval of the test set's n_test outcomes.
- the other metrics: mean +- t_df sqrt(V), clipped to the metric's range (NLL >= 0, Brier in
  [0, 2], ECE in [0, 1]); for ECE, which is not a mean over examples, s_test uses the spread of
  correct - confidence (the terms ECE sums per bin), an approximate bound.
- rows without per-example information (runs of gdbench before schema columns `n_test`,
  `test_correct` and `<m>_sd`; other metrics such as robustness or sample quality): over seeds
  only (accuracy: Wilson with n_eff from the seeds; others: Student t), NaN for one seed or
  where every seed is equal; the column `<m>_test` says which.

Only rows with status "ok" enter a statistic; the number of other rows in each group is kept in
the `n_not_ok` column so that failed or diverged cells are never silently averaged away.

References: Wilson, E. B. (1927), JASA 22:209-212; Korn, E. L. & Graubard, B. I. (1998),
"Confidence intervals for proportions with small expected number of positive counts estimated
from survey data", Survey Methodology 24:193-201; Owen, A. B. (2007), "The pigeonhole
bootstrap", Ann. Appl. Stat. 1:386-411; McNemar, Q. (1947), Psychometrika 12:153-157; Holm, S.
(1979), Scand. J. Statist. 6:65-70.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from gdbench.results.schema import CELL_KEY

DEFAULT_BY = ("task", "model", "paradigm", "n_train")
CONFIDENCE = 0.95
_Z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
#: Range of the metrics whose intervals are clipped (all others: unbounded).
RANGES = {
    "accuracy": (0.0, 1.0),
    "nll": (0.0, math.inf),
    "brier": (0.0, 2.0),
    "ece": (0.0, 1.0),
    "bits_per_dim": (-math.inf, math.inf),
}
#: What every table caption says about its intervals (the docs quote it).
INTERVAL_METHOD = (
    "95% interval combining the variation over seeds (training subsets) with the test set's "
    "sampling, from V = s²_seeds/S + s²_test/n_test (Welch–Satterthwaite df; s²_test: "
    "accuracy, the variance between test examples by two-way ANOVA of the per-example "
    "outcomes; other metrics, bounded by the per-cell variance over test examples); accuracy: "
    "Wilson score interval with effective sample size p(1−p)/V, inside [0, 1] (at n = pool, "
    "the test set's Wilson interval); other metrics: mean ± t·√V"
)
#: What every caption with significance marks says about the test (the docs quote it).
TEST_METHOD = (
    "paired test on the same test examples and seeds: McNemar's exact test where every seed "
    "gives both models the same outcomes (one training set, e.g. n = pool), else a two-level "
    "t-test of the mean difference with the variance V of the paired differences (accuracy "
    "from the per-example outcomes; other metrics with the bound (sd_A + sd_B)² for the "
    "per-example variance); Holm-corrected"
)
#: Said where some rows lack the per-example columns (older runs).
SEEDS_ONLY_NOTE = (
    "rows of runs without per-example test outcomes (gdbench before schema columns n_test, "
    "test_correct, <metric>_sd): interval and test over seeds only"
)


class DuplicateCellError(ValueError):
    """The same (task, model, n_train, seed) cell appears more than once (e.g. in two runs)."""


def t_half_width(std: float | np.ndarray, count: int | np.ndarray) -> np.ndarray:
    """Half-width of the two-sided 95% Student-t interval of a mean: t_{0.975, n-1} s / sqrt(n).

    `std` is the sample standard deviation (ddof=1) in the metric's units; the result is in
    the same units, NaN where fewer than two values are available. Over seeds only: for means
    over the test set use `mean_interval`.
    """
    std = np.asarray(std, dtype=float)
    count = np.asarray(count, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(count >= 2, count - 1, np.nan)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * std / np.sqrt(count)
    return np.where(count >= 2, half, np.nan)


def wilson(p: float | np.ndarray, n: float | np.ndarray, z: float = _Z) -> tuple:
    """Wilson score interval (lo, hi) of a proportion `p` observed on `n` (possibly a
    non-integer effective number of) trials, two-sided at the normal quantile `z`."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2n = z * z / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def satterthwaite(v_seed: float, s: int, v_test: float, n_test: int) -> float:
    """Welch-Satterthwaite degrees of freedom of v_seed + v_test (each a variance of the mean,
    estimated from s resp. n_test values); a term that is NaN or 0 contributes nothing."""
    parts = [(v, k) for v, k in ((v_seed, s), (v_test, n_test)) if k > 1 and v > 0]
    if not parts:
        return math.inf
    total = sum(v for v, _ in parts)
    return total**2 / sum(v * v / (k - 1) for v, k in parts)


def _t_quantile(df: float) -> float:
    """The two-sided 95% Student-t quantile with `df` degrees of freedom (normal for inf)."""
    return float(special.stdtrit(df, 0.5 + CONFIDENCE / 2)) if math.isfinite(df) else _Z


def mean_interval(
    values: np.ndarray,
    metric: str,
    correct: np.ndarray | None = None,
    sd: np.ndarray | None = None,
    n_test: int = 0,
) -> dict[str, float]:
    """Mean of one group's per-seed `values` and its 95% interval (module docstring).

    Args:
      values: ``[S]`` per-seed values of `metric` (finite).
      metric: the metric's name (its range and whether the Wilson interval applies).
      correct: ``[S, n_test]`` per-example outcomes (accuracy), or None.
      sd: ``[S]`` per-cell standard deviations over test examples (other metrics), or None.
      n_test: test examples per cell (0: unknown).

    Returns:
      ``mean``, ``lo``, ``hi`` (metric units; NaN where no interval can be formed), ``se``
      (sqrt V) and ``test`` (1.0 if the test set's sampling is included, else 0.0).
    """
    x = np.asarray(values, dtype=float)
    s = x.size
    mean = float(x.mean()) if s else math.nan
    v_seed = float(x.var(ddof=1)) / s if s >= 2 else math.nan
    v_test, test = math.nan, 0.0
    if correct is not None and n_test > 0:
        v_test, test = _test_term(np.asarray(correct, dtype=float)), 1.0
    elif sd is not None and n_test > 0 and np.all(np.isfinite(sd)):
        v_test, test = float(np.mean(np.square(sd))) / n_test, 1.0
    out = {"mean": mean, "lo": math.nan, "hi": math.nan, "se": math.nan, "test": test}
    if s == 0 or (math.isnan(v_seed) and math.isnan(v_test)):
        return out
    var = np.nansum([v_seed, v_test])
    df = satterthwaite(
        0.0 if math.isnan(v_seed) else v_seed, s, 0.0 if math.isnan(v_test) else v_test, n_test
    )
    out["se"] = math.sqrt(var)
    q = _t_quantile(df)
    lo_range, hi_range = RANGES.get(metric, (-math.inf, math.inf))
    if metric == "accuracy":
        if var > 0:
            # Korn & Graubard: relative to the df of the test set alone, so that one fit on
            # n_test examples gets exactly the test set's Wilson interval
            base = _t_quantile(n_test - 1) if n_test > 1 else _Z
            n_eff = mean * (1 - mean) / var * (base / q) ** 2
            if test:  # never more than the outcomes observed
                n_eff = min(n_eff, s * n_test)
        elif test:
            n_eff = n_test  # every outcome equal: the test set's n_test outcomes
        else:
            return out  # seeds only, all equal: no interval
        lo, hi = wilson(mean, n_eff)
        out["lo"], out["hi"] = float(lo), float(hi)
        return out
    if var == 0 and not test:
        return out
    half = q * math.sqrt(var)
    out["lo"] = max(mean - half, lo_range)
    out["hi"] = min(mean + half, hi_range)
    return out


def summarize(
    df: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = DEFAULT_BY,
) -> pd.DataFrame:
    """Mean, std (ddof=1), count and 95% interval of each metric per group (`mean_interval`).

    Returns one row per group (every group present in `df`, including groups whose rows all
    failed) with the `by` columns, then for each metric `<m>_mean`, `<m>_std` (over seeds),
    `<m>_count` (ok rows with a non-NaN value), `<m>_lo` and `<m>_hi` (the interval, metric
    units), `<m>_ci95` (its half-width (hi - lo) / 2; the interval need not be symmetric:
    draw error bars from lo and hi) and `<m>_test` (True where the test set's sampling is
    included, False for seeds only), then `n_ok` and `n_not_ok` (rows per group by status).
    The per-example columns (`n_test`, `test_correct`, `<m>_sd`) are used where every ok row of
    a group has them.
    """
    by = list(by)
    missing = [c for c in [*by, *metrics, "status"] if c not in df.columns]
    if missing:
        raise KeyError(f"summarize: no column {missing[0]!r} in the rows")
    ok = df["status"] == "ok"
    groups = df.groupby(by, dropna=False, sort=True)
    out = pd.DataFrame(index=groups.size().index)
    ok_rows = df[ok]
    for m in metrics:
        keys, records = [], []
        valid = ok_rows[ok_rows[m].notna()]
        values = valid[m].to_numpy(dtype=float)
        n_test = (
            valid["n_test"].to_numpy(dtype=np.int64)
            if "n_test" in valid.columns
            else np.zeros(len(valid), dtype=np.int64)
        )
        sd = _per_row_sd(valid, m)
        packed = (
            valid["test_correct"].tolist() if m == "accuracy" and "test_correct" in valid else None
        )
        for key, idx in valid.groupby(by, dropna=False, sort=True).indices.items():
            keys.append(key if len(by) > 1 else (key[0] if isinstance(key, tuple) else key))
            n = (
                int(n_test[idx[0]])
                if n_test[idx[0]] > 0 and np.all(n_test[idx] == n_test[idx[0]])
                else 0
            )
            correct = (
                _unpack_rows([packed[i] for i in idx], n) if packed is not None and n else None
            )
            group_sd = sd[idx] if sd is not None and n and np.all(np.isfinite(sd[idx])) else None
            records.append(mean_interval(values[idx], m, correct=correct, sd=group_sd, n_test=n))
        if len(by) > 1:
            index = pd.MultiIndex.from_tuples(keys, names=by) if keys else out.index[:0]
        else:
            index = pd.Index(keys, name=by[0])
        frame = pd.DataFrame(
            records, index=index, columns=["mean", "lo", "hi", "se", "test"], dtype=float
        )
        ok_groups = ok_rows.groupby(by, dropna=False, sort=True)[m]
        out[f"{m}_mean"] = ok_groups.mean().reindex(out.index).astype(float)
        out[f"{m}_std"] = ok_groups.std(ddof=1).reindex(out.index).astype(float)
        out[f"{m}_count"] = ok_groups.count().reindex(out.index).fillna(0).astype("int64")
        out[f"{m}_lo"] = frame["lo"].reindex(out.index).astype(float)
        out[f"{m}_hi"] = frame["hi"].reindex(out.index).astype(float)
        out[f"{m}_ci95"] = (out[f"{m}_hi"] - out[f"{m}_lo"]) / 2
        out[f"{m}_test"] = frame["test"].reindex(out.index).fillna(0.0).astype(bool)
    n_ok = df.assign(_ok=ok).groupby(by, dropna=False, sort=True)["_ok"].sum()
    out["n_ok"] = n_ok.astype("int64")
    out["n_not_ok"] = groups.size().astype("int64") - out["n_ok"]
    return out.reset_index()


def _unpack_rows(packed: list, n_test: int) -> np.ndarray | None:
    """``[rows, n_test]`` booleans of packed outcomes (`gdbench.results.schema.pack_correct`), or
    None
    when a row did not store them."""
    width = (n_test + 7) // 8
    if any(not isinstance(b, bytes) or len(b) != width for b in packed):
        return None
    bits = np.frombuffer(b"".join(packed), dtype=np.uint8).reshape(len(packed), width)
    return np.unpackbits(bits, axis=1, count=n_test).astype(bool)


def _per_row_sd(g: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Per-row standard deviation over test examples of `metric`'s per-example terms (NaN
    where not recorded), or None when the rows have no such column. bits/dim is log p(x)
    rescaled per row: its sd is log_lik_sd x |bits/dim / log_lik|."""
    if metric == "bits_per_dim":
        if not {"log_lik_sd", "log_lik"} <= set(g.columns):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.abs(g["bits_per_dim"].to_numpy(float) / g["log_lik"].to_numpy(float))
        return g["log_lik_sd"].to_numpy(float) * factor
    if f"{metric}_sd" in g.columns:
        return g[f"{metric}_sd"].to_numpy(float)
    return None


def _common_n_test(g: pd.DataFrame) -> int | None:
    """The groups' common n_test when every row records one, else None."""
    if "n_test" not in g.columns:
        return None
    n = g["n_test"].to_numpy()
    if len(n) == 0 or n[0] <= 0 or not np.all(n == n[0]):
        return None
    return int(n[0])


def outcome_matrix(g: pd.DataFrame, n_test: int) -> np.ndarray | None:
    """``[rows, n_test]`` booleans of the rows' stored per-example outcomes (in row order), or
    None when a row did not store them (`gdbench.results.schema.unpack_correct`)."""
    if "test_correct" not in g.columns:
        return None
    return _unpack_rows(g["test_correct"].tolist(), n_test)


def _sd_of(g: pd.DataFrame, metric: str) -> np.ndarray | None:
    """`_per_row_sd` where every row recorded it, else None."""
    sd = _per_row_sd(g, metric)
    return sd if sd is not None and np.all(np.isfinite(sd)) else None


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
    """Two-sided p-value of the paired Student t-test over seeds that the mean of `diff` is
    zero (seeds only: `paired_test` adds the test set's sampling where rows allow).

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
    differences equal and non-zero (zero variance) -> NaN: not testable from the seeds alone
    (at n = pool every seed is the same fit, so equal differences carry no evidence about the
    test set's sampling; `paired_test` tests such pairs on their per-example outcomes); a
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
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss near zero variance
        p = stats.ttest_1samp(d, 0.0).pvalue
    return float(p) if np.isfinite(p) else 1.0


def paired_test(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[float, str]:
    """Two-sided p-value that two models have the same mean `metric`, from their paired
    outcomes on the same test examples and seeds, and the name of the test used.

    `a` and `b` are the ok rows (with a value of `metric`) of the two models in one (task,
    n_train) group; they are paired by seed (identical training subsets) and only seeds present
    in both count. The test (module docstring for V and its degrees of freedom):

    - "mcnemar": accuracy, where every seed gives each model the same per-example outcomes (one
      training set and a deterministic fit, e.g. n = pool): McNemar's exact test on the test
      set's discordant pairs (a two-sided binomial test of b of b + c at 1/2; p = 1 when there
      is no discordant pair);
    - "two-level": the mean paired difference over seeds and test examples divided by sqrt(V),
      V = s^2_seeds / S + s^2_test / n_test of the paired differences, Student t with
      Welch-Satterthwaite df. Accuracy: s^2_test by the two-way ANOVA of the per-example
      differences (`_test_term`). Other metrics: s^2_test bounded by the mean over seeds of
      (sd_a + sd_b)^2, the largest per-example variance of a difference whose two terms have
      these spreads (any correlation), so the test is conservative;
    - "seeds": rows without per-example columns (older runs): the paired t-test over seeds of
      `paired_p`;
    - "none": nothing to test (no shared seed, or a single shared seed without per-example
      information): p is NaN.

    Every difference 0 gives p = 1. Zero variance with a non-zero difference never gives p = 0:
    McNemar's test then has every discordant pair on one side (p = 2^(1 - k) for k of them); a
    two-level V of 0 (every example of every seed differs in the same direction) falls back to
    McNemar's test on the pooled discordant pairs; for other metrics p is NaN (not testable).
    """
    x = a.dropna(subset=[metric]).drop_duplicates("seed").set_index("seed")
    y = b.dropna(subset=[metric]).drop_duplicates("seed").set_index("seed")
    seeds = x.index.intersection(y.index).sort_values()
    if len(seeds) == 0:
        return math.nan, "none"
    x, y = x.loc[seeds], y.loc[seeds]
    d = y[metric].to_numpy(float) - x[metric].to_numpy(float)
    if not np.all(np.isfinite(d)):
        return math.nan, "none"
    n_test = _common_n_test(pd.concat([x, y]))
    if n_test and metric == "accuracy":
        ca, cb = outcome_matrix(x, n_test), outcome_matrix(y, n_test)
        if ca is not None and cb is not None:
            return _paired_outcomes(ca, cb)
    sd_a = _sd_of(x, metric) if n_test else None
    sd_b = _sd_of(y, metric) if n_test else None
    if sd_a is None or sd_b is None:
        if len(d) < 2:
            return math.nan, "none"
        return paired_p(d), "seeds"
    if np.all(d == 0):
        return 1.0, "two-level"
    s = len(d)
    v_seed = float(d.var(ddof=1)) / s if s >= 2 else 0.0
    v_test = float(np.mean(np.square(sd_a + sd_b))) / n_test
    return _t_p(float(d.mean()), v_seed, s, v_test, n_test), "two-level"


def _paired_outcomes(ca: np.ndarray, cb: np.ndarray) -> tuple[float, str]:
    """The accuracy test of `paired_test` on ``[S, n_test]`` boolean outcomes of both models."""
    one_fit = bool(np.all(ca == ca[0]) and np.all(cb == cb[0]))
    if one_fit:
        return mcnemar_exact(ca[0], cb[0]), "mcnemar"
    d = cb.astype(float) - ca.astype(float)
    if np.all(d == 0):
        return 1.0, "two-level"
    s, n_test = d.shape
    v_seed = float(d.mean(axis=1).var(ddof=1)) / s
    v_test = _test_term(d)
    if v_seed + v_test == 0:
        return mcnemar_exact(ca.ravel(), cb.ravel()), "mcnemar"
    return _t_p(float(d.mean()), v_seed, s, v_test, n_test), "two-level"


def _test_term(c: np.ndarray) -> float:
    """The test set's share of the variance of the grand mean of ``[S, n_test]`` per-example
    values (outcomes or paired differences): sigma^2_examples / n_test of the two-way crossed
    random-effects model c_si = mu + a_s + b_i + e_si, estimated by ANOVA as the variance
    (ddof=0) of the example means less the interaction's share MS_e / S, floored at 0. The
    interaction's own share, sigma^2_e / (S n_test), is already in the seeds' term
    s^2_seeds / S, so the sum of the two terms is unbiased for the variance of the mean. With
    one seed (or identical seeds) MS_e is 0: the test set's binomial variance p (1 - p) / n."""
    s, n = c.shape
    col = c.mean(axis=0)
    if s < 2 or n < 2:
        return float(col.var(ddof=0)) / n
    resid = c - c.mean(axis=1, keepdims=True) - col[None, :] + c.mean()
    ms_e = float(np.square(resid).sum()) / ((s - 1) * (n - 1))
    return max(float(col.var(ddof=0)) - ms_e / s, 0.0) / n


def _t_p(mean: float, v_seed: float, s: int, v_test: float, n_test: int) -> float:
    var = v_seed + v_test
    if var <= 0:
        return 1.0 if mean == 0 else math.nan
    df = satterthwaite(v_seed, s, v_test, n_test)
    t = abs(mean) / math.sqrt(var)
    p = 2 * (stats.t.sf(t, df) if math.isfinite(df) else stats.norm.sf(t))
    return float(min(1.0, p))


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of McNemar's exact test of paired boolean outcomes `a` and `b` (the
    same examples): a binomial test of the b-only successes among the discordant pairs at 1/2
    (`scipy.stats.binomtest`); 1.0 when there is no discordant pair."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_b = int(np.sum(b & ~a))
    only_a = int(np.sum(a & ~b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)


def compare_to_best(
    rows: pd.DataFrame, metric: str, means: pd.Series, higher: bool
) -> tuple[dict[str, float], dict[str, str]]:
    """Holm-adjusted p-values of every model against the best one, for a table's marks.

    `rows` are one (task, n_train) group's rows of all models; `means` the models' means of
    `metric` (the best is the largest if `higher`, else the smallest unrounded mean; exact ties
    go to the first model in `means`' order). Every other model is compared with the best by
    `paired_test` and the p-values are Holm-corrected across these comparisons (`holm`).
    Returns ({model: adjusted p}, {model: test name}); a model with no test has p NaN.
    """
    finite = means.dropna()
    if finite.empty:
        return {}, {}
    best = finite.idxmax() if higher else finite.idxmin()
    ok = rows[rows["status"] == "ok"]
    others = [m for m in finite.index if m != best]
    tests = [paired_test(ok[ok["model"] == best], ok[ok["model"] == m], metric) for m in others]
    adjusted = holm([p for p, _ in tests])
    return (
        {m: float(p) for m, p in zip(others, adjusted, strict=True)},
        {m: name for m, (_, name) in zip(others, tests, strict=True)},
    )


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


def error_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Mean test error (1 - accuracy) per (task, model, paradigm, n_train) with the 95%
    interval of `summarize` turned over (seeds and the test set's sampling, inside [0, 1]).

    Columns: task, model, paradigm, n_train, n_seeds (ok rows with an accuracy), mean, lo, hi
    (NaN where there is no interval) and `test` (True where the test set's sampling is in it).
    """
    stats = summarize(df, ["accuracy"], by=("task", "model", "paradigm", "n_train"))
    return pd.DataFrame(
        {
            "task": stats["task"],
            "model": stats["model"],
            "paradigm": stats["paradigm"],
            "n_train": stats["n_train"].astype(int),
            "n_seeds": stats["accuracy_count"].astype(int),
            "mean": 1.0 - stats["accuracy_mean"],
            "lo": 1.0 - stats["accuracy_hi"],
            "hi": 1.0 - stats["accuracy_lo"],
            "test": stats["accuracy_test"],
        }
    ).reset_index(drop=True)
