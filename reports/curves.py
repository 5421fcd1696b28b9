"""Learning-curve statistics: bootstrap curves, power-law fits, AULC and paired crossover tests.

This module answers the Ng & Jordan (2001) question on stored rows: a generative classifier
often reaches its (higher) asymptotic error with fewer examples, and the discriminative one
overtakes it as the training set grows. Everything here works from result rows with numpy,
scipy and pandas only.

Conventions:

- A *metric* is "error" (1 - accuracy, a fraction in [0, 1]) or the name of any numeric
  column of the rows (e.g. "nll", in that column's units). Lower is taken to be better.
- Only rows with status "ok" and a finite metric value enter a statistic; rows with another
  status are counted (`n_not_ok`), never silently dropped.
- Seeds are the unit of resampling. A cell's training subset depends only on
  (task, n_train, seed), so two models' rows with the same (task, n_train, seed) were trained
  on identical subsets; comparisons between models pair them on (n_train, seed).
- Confidence intervals are percentile-bootstrap intervals, deterministic given `seed`.
- Power-law asymptotes know their limits (`curve_summary`): c is never below the task's Bayes
  error (when the rows carry `bayes_accuracy`) nor below 0; its interval includes the test
  set's sampling noise when the test-set size is given; every fit carries a flag ("no fit",
  "extrapolated", "poor fit") that tables and figures show; sizes derived from a fit are
  never printed outside the tested range (`format_n_within`), and the model-free
  `n_to_best` needs no fit at all.
- "crossover" is a regime only when the crossing n* lies inside the tested sizes.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from gdbench.reports.stats import check_unique_cells, paired_test

__all__ = [
    "Crossover",
    "PowerLawFit",
    "aulc",
    "aulc_ci",
    "bootstrap_curves",
    "crossover",
    "crossover_table",
    "curve_summary",
    "fit_flag",
    "fit_power_law",
    "format_asymptote",
    "format_n_best",
    "format_n_within",
    "metric_values",
    "n_to_best",
]

REGIMES = ("crossover", "discriminative_always", "generative_always", "no_difference", "mixed")
# Default bounds of the exponent b in err = c + a n^-b. Below b = 0.1 a power law is hard to
# tell from a slow log-linear drift over any range of n one can run, and c then runs off.
B_BOUNDS = (0.1, 5.0)
_GRID_POINTS = 64
_NEEDED = ("task", "model", "n_train", "seed", "status")


# --------------------------------------------------------------------------------------------
# metric values and small helpers


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """The per-row values of `metric` as floats: 1 - accuracy for "error", else the column.

    Raises `ValueError` for a metric that is neither "error" nor a numeric column of `df`.
    """
    if metric == "error":
        if "accuracy" not in df.columns:
            raise ValueError("metric 'error' needs an 'accuracy' column in the rows")
        return 1.0 - df["accuracy"].astype(float)
    if metric not in df.columns:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        raise ValueError(f"unknown metric {metric!r}: use 'error' or a numeric column {numeric}")
    if not pd.api.types.is_numeric_dtype(df[metric]) or pd.api.types.is_bool_dtype(df[metric]):
        raise ValueError(f"metric {metric!r} is not a numeric column")
    return df[metric].astype(float)


def _check_rows(df: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    missing = [c for c in (*_NEEDED, *extra) if c not in df.columns]
    if missing:
        raise KeyError(f"no column {missing[0]!r} in the rows (need {', '.join(_NEEDED)})")
    check_unique_cells(df)


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator that depends only on `seed` and `key` (stable across runs and groupings)."""
    digest = zlib.crc32("\x1f".join(map(str, key)).encode())
    return np.random.default_rng([int(seed), digest])


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_n_boot(n_boot: int) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")


def _quantile(x: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile of the finite-or-+inf values of `x` (NaNs ignored); a
    quantile falling next to +inf is +inf. NaN when no value is left."""
    x = np.sort(np.asarray(x, dtype=float)[~np.isnan(x)])
    if x.size == 0:
        return math.nan
    h = q * (x.size - 1)
    lo, hi = int(math.floor(h)), int(math.ceil(h))
    if np.isinf(x[hi]) or np.isinf(x[lo]):
        return float(x[hi]) if h > lo else float(x[lo])
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


def _interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    return _quantile(x, tail), _quantile(x, 1.0 - tail)


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` means of resamples (with replacement) of the 1-D `values`: one draw."""
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    return values[idx].mean(axis=1)


def _seed_matrix(rows: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """(n_train x seed) table of `values` for `rows` (one model), NaN where a cell is absent."""
    frame = pd.DataFrame({"n_train": rows["n_train"], "seed": rows["seed"], "v": values})
    return frame.pivot(index="n_train", columns="seed", values="v").sort_index()


def _fmt_n(n: float) -> str:
    if not math.isfinite(n):
        return str(n)
    return f"{n:.0f}" if abs(n) >= 10 else f"{n:.3g}"


def format_n_star(n: float, n_min: float, n_max: float) -> str:
    """A crossing size as text: "<n_min" for the below-range code 0, ">n_max" for inf."""
    if n is None or math.isnan(n):
        return "—"
    if n == 0:
        return f"<{_fmt_n(n_min)}"
    if math.isinf(n):
        return f">{_fmt_n(n_max)}"
    return _fmt_n(n)


# --------------------------------------------------------------------------------------------
# 1. bootstrap learning curves


def bootstrap_curves(
    df: pd.DataFrame,
    metric: str = "error",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean learning curves with percentile-bootstrap intervals over seeds.

    Returns one row per (task, model, n_train) present in `df` (groups whose rows all failed
    included), sorted, with columns task, model, paradigm, n_train, n_seeds (ok rows with a
    finite metric), n_not_ok (rows whose status is not "ok"), n_missing (ok rows whose metric
    is NaN), mean (metric units; 1 - accuracy for "error"), lo, hi (the `confidence`
    percentile-bootstrap interval of the mean over seeds; NaN when n_seeds < 2). Each group's
    resamples come from one numpy draw seeded by (`seed`, task, model, n_train).
    """
    _check_rows(df, ("paradigm",))
    _check_confidence(confidence)
    _check_n_boot(n_boot)
    values = metric_values(df, metric)
    ok = (df["status"] == "ok").to_numpy()
    usable = ok & np.isfinite(values.to_numpy())
    work = df[["task", "model", "paradigm", "n_train"]].assign(
        _v=values.to_numpy(), _usable=usable, _bad=~ok, _missing=ok & ~usable
    )
    out = []
    for (task, model, n), g in work.groupby(["task", "model", "n_train"], sort=True):
        v = g.loc[g["_usable"], "_v"].to_numpy()
        mean = float(v.mean()) if v.size else math.nan
        lo = hi = math.nan
        if v.size >= 2:
            boot = _boot_means(v, int(n_boot), _rng(seed, task, model, n))
            lo, hi = _interval(boot, confidence)
        out.append(
            {
                "task": task,
                "model": model,
                "paradigm": g["paradigm"].iloc[0],
                "n_train": int(n),
                "n_seeds": int(v.size),
                "n_not_ok": int(g["_bad"].sum()),
                "n_missing": int(g["_missing"].sum()),
                "mean": mean,
                "lo": lo,
                "hi": hi,
            }
        )
    columns = [
        "task", "model", "paradigm", "n_train", "n_seeds", "n_not_ok", "n_missing",
        "mean", "lo", "hi",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# 2. power-law fits


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares fit of err(n) = c + a * n^(-b) to a mean learning curve.

    `c` (the asymptote) and `a` are in the metric's units, `b` is dimensionless; `c_lo`/`c_hi`
    (and `a_lo`.., `b_lo`..) bound the `confidence` percentile-bootstrap interval over seeds
    (NaN with fewer than two seeds). `rmse` is the root mean squared residual of the fit to the
    mean curve (metric units), `n_sizes` the training sizes with data, `n_seeds` the seeds with
    data, `n_boot_ok` the bootstrap refits that converged. Fewer than three sizes gives NaNs
    and `converged` False.
    """

    c: float
    a: float
    b: float
    c_lo: float
    c_hi: float
    rmse: float
    n_sizes: int
    converged: bool
    a_lo: float = math.nan
    a_hi: float = math.nan
    b_lo: float = math.nan
    b_hi: float = math.nan
    n_seeds: int = 0
    n_boot_ok: int = 0
    confidence: float = 0.95
    boot: np.ndarray = field(
        default_factory=lambda: np.empty((0, 3)), repr=False, compare=False
    )  # (n_boot_ok, 3) bootstrap refits: columns c, a, b

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted curve c + a n^-b at training size(s) `n` (metric units)."""
        n = np.asarray(n, dtype=float)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            out = self.c + _power(self.a, self.b, n)
        return float(out) if out.ndim == 0 else out

    def n_within(self, eps: float) -> float:
        """Training size at which the fitted curve comes within `eps` (metric units) of its
        asymptote c: (a / eps)^(1/b); inf when b is about 0, below 1 when already within eps
        at n = 1, NaN for a failed fit."""
        return float(_n_within(self.a, self.b, _check_eps(eps)))

    def n_within_ci(self, eps: float) -> tuple[float, float]:
        """(lo, hi) `confidence` percentile-bootstrap interval of `n_within(eps)` (training
        examples; hi may be inf); NaNs without bootstrap refits."""
        eps = _check_eps(eps)
        if len(self.boot) == 0:
            return math.nan, math.nan
        return _interval(_n_within(self.boot[:, 1], self.boot[:, 2], eps), self.confidence)


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    return eps


def _power(a, b, n):
    """a * n^-b computed through logs (a >= 0), so that a large a with a large b stays finite."""
    a = np.asarray(a, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(a > 0, np.exp(np.log(np.where(a > 0, a, 1.0)) - b * np.log(n)), 0.0 * a)


def _n_within(a, b, eps):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = np.exp((np.log(a) - math.log(eps)) / b)
    out = np.where(a <= 0, 0.0, out)
    out = np.where((b < 1e-9) & (a > eps), np.inf, out)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out)


def _nan_fit(n_sizes: int, n_seeds: int, confidence: float) -> PowerLawFit:
    nan = math.nan
    return PowerLawFit(
        nan, nan, nan, nan, nan, nan, n_sizes, False, n_seeds=n_seeds, confidence=confidence
    )


def _grid_init(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, c_lo: float, c_hi: float, b_grid: np.ndarray
) -> np.ndarray:
    """Global initial values (c, a_scaled, b) for each row of `y` (R x S, weights `w` in {0,1}).

    For each b on a log grid the model is linear in (c, a_scaled); the bounded linear least
    squares problem is solved exactly (interior optimum or the best point on an edge of the
    box), and the b with the smallest residual sum of squares wins.
    """
    y = np.where(w > 0, y, 0.0)
    u = t[None, :] ** -b_grid[:, None]  # (B, S)
    sw = w.sum(1)[:, None]
    sy = (w * y).sum(1)[:, None]
    syy = (w * y * y).sum(1)[:, None]
    su = w @ u.T
    suu = w @ (u * u).T
    suy = (w * y) @ u.T

    def rss(c, a):
        return syy - 2 * c * sy - 2 * a * suy + c * c * sw + 2 * a * c * su + a * a * suu

    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * suu - su * su
        a1 = (sw * suy - su * sy) / det
        c1 = (sy - a1 * su) / sw
        ok1 = (det > 1e-12 * sw * suu) & (a1 >= 0) & (c1 >= c_lo) & (c1 <= c_hi)
        cands = [(np.where(ok1, c1, 0.0), np.where(ok1, a1, 0.0), ok1)]
        c2 = np.clip(sy / sw, c_lo, c_hi) + 0.0 * su
        cands.append((c2, 0.0 * su, np.ones_like(su, dtype=bool)))
        for bound in (c_lo, c_hi):
            if math.isfinite(bound):
                a3 = np.maximum(0.0, (suy - bound * su) / suu)
                cands.append((bound + 0.0 * su, a3, np.ones_like(su, dtype=bool)))
        best = np.full(su.shape, np.inf)
        c_best = np.zeros(su.shape)
        a_best = np.zeros(su.shape)
        for c, a, ok in cands:
            r = np.where(ok, rss(c, a), np.inf)
            take = r < best
            best = np.where(take, r, best)
            c_best = np.where(take, c, c_best)
            a_best = np.where(take, a, a_best)
    j = np.argmin(best, axis=1)
    rows = np.arange(y.shape[0])
    return np.stack([c_best[rows, j], a_best[rows, j], b_grid[j]], axis=1)


def _refine(t: np.ndarray, y: np.ndarray, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """Bounded least squares from `x0` = (c, a_scaled, b); returns (x, rmse, success)."""
    logt = np.log(t)

    def resid(x):
        return x[0] + x[1] * np.exp(-x[2] * logt) - y

    def jac(x):
        p = np.exp(-x[2] * logt)
        return np.stack([np.ones_like(t), p, -x[1] * p * logt], axis=1)

    x0 = np.clip(x0, lower, upper)
    res = least_squares(resid, x0, jac=jac, bounds=(lower, upper), method="trf", max_nfev=200)
    x = res.x
    rmse = float(np.sqrt(np.mean(resid(x) ** 2)))
    return x, rmse, bool(res.success and np.all(np.isfinite(x)))


def fit_power_law(
    n: Sequence[float] | np.ndarray,
    err_by_seed: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    c_bounds: tuple[float, float] = (0.0, 1.0),
    b_bounds: tuple[float, float] = B_BOUNDS,
    n_test: int | None = None,
) -> PowerLawFit:
    """Fit err(n) = c + a n^-b (a >= 0, b within `b_bounds`, c within `c_bounds`) to the mean
    over seeds of a learning curve, by bounded least squares.

    `n` holds the training sizes (positive, distinct); `err_by_seed` is a (sizes x seeds)
    array of the metric (NaN where a cell failed; a 1-D array is one seed). The initial value
    solves the problem exactly on a grid of b (the model is linear in c and a for fixed b),
    then `scipy.optimize.least_squares` refines it. The intervals come from `n_boot` bootstrap
    resamples of the seed columns, each refitted the same way. `c_bounds` = (0, 1) suits
    errors; use (0, inf) or (-inf, inf) for other metrics; with a known Bayes error, its
    lower bound is the Bayes error (no classifier's asymptotic error is lower).

    `n_test` (for error rates only): the size of the test set every value was measured on.
    Resampling seeds captures the variation over training subsets and the instability of the
    fit, not the test set's own sampling: at n = pool every seed trains on the same data and
    the seed bootstrap alone has zero width. With `n_test`, each bootstrap refit's c is shifted
    by an independent normal draw of the binomial test-set noise of an error rate c,
    sqrt(r (1 - r) / n_test) with the add-one smoothed rate r = (c n_test + 1) / (n_test + 2)
    (so that c = 0 still gets the noise of one error in n_test), and clipped to `c_bounds`,
    so the interval of c combines both sources. Returns a `PowerLawFit` (NaNs and converged
    False when fewer than three sizes have data).
    """
    _check_confidence(confidence)
    _check_n_boot(n_boot)
    n = np.asarray(n, dtype=float)
    y = np.asarray(err_by_seed, dtype=float)
    if n.ndim != 1:
        raise ValueError(f"n must be 1-D, got shape {n.shape}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n.size:
        raise ValueError(f"err_by_seed must be (sizes x seeds) with {n.size} rows, got {y.shape}")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError("training sizes n must be positive and finite")
    if np.unique(n).size != n.size:
        raise ValueError("training sizes n must be distinct")
    c_lo, c_hi = float(c_bounds[0]), float(c_bounds[1])
    if not c_lo < c_hi:
        raise ValueError(f"c_bounds must satisfy lower < upper, got {c_bounds!r}")
    b_lo, b_hi = float(b_bounds[0]), float(b_bounds[1])
    if not 0 < b_lo < b_hi < math.inf:
        raise ValueError(f"b_bounds must satisfy 0 < lower < upper < inf, got {b_bounds!r}")
    b_grid = np.geomspace(b_lo, b_hi, _GRID_POINTS)
    lower, upper = np.array([c_lo, 0.0, b_lo]), np.array([c_hi, np.inf, b_hi])
    order = np.argsort(n)
    n, y = n[order], y[order]
    y = y[:, np.isfinite(y).any(axis=0)]  # seeds with data
    n_seeds = y.shape[1]
    mean = _nanmean(y, axis=1) if n_seeds else np.full(n.size, np.nan)
    have = np.isfinite(mean)
    n_sizes = int(have.sum())
    if n_sizes < 3:
        return _nan_fit(n_sizes, n_seeds, confidence)
    n0 = float(n[have][0])
    t = n / n0
    x0 = _grid_init(t[have], mean[have][None, :], np.ones((1, n_sizes)), c_lo, c_hi, b_grid)[0]
    x, rmse, success = _refine(t[have], mean[have], x0, lower, upper)
    c, a, b = x[0], _scale_a(x[1], x[2], n0), x[2]

    boot = np.empty((0, 3))
    if n_seeds >= 2:
        rng = _rng(seed, "fit_power_law")
        idx = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds))
        reps = _nanmean(y[:, idx], axis=2).T  # (R, S)
        w = np.isfinite(reps).astype(float)
        inits = _grid_init(t, np.nan_to_num(reps), w, c_lo, c_hi, b_grid)
        fits = []
        for r in range(reps.shape[0]):
            m = w[r] > 0
            if m.sum() < 3:
                continue
            xr, _, ok = _refine(t[m], reps[r, m], inits[r], lower, upper)
            if ok:
                fits.append((xr[0], _scale_a(xr[1], xr[2], n0), xr[2]))
        boot = np.asarray(fits, dtype=float).reshape(-1, 3)
    if n_test is not None and len(boot):
        if int(n_test) < 1:
            raise ValueError(f"n_test must be a positive integer, got {n_test!r}")
        noise_rng = _rng(seed, "fit_power_law", "test set")
        # add-one smoothed rate, so that an error of 0 (or 1) on the test set still has noise
        rate = (np.clip(boot[:, 0], 0.0, 1.0) * int(n_test) + 1.0) / (int(n_test) + 2.0)
        shift = noise_rng.standard_normal(len(boot)) * np.sqrt(rate * (1.0 - rate) / int(n_test))
        boot = boot.copy()
        boot[:, 0] = np.clip(boot[:, 0] + shift, c_lo, c_hi)
    ci = [_interval(boot[:, k], confidence) if len(boot) else (math.nan,) * 2 for k in range(3)]
    return PowerLawFit(
        c=float(c),
        a=float(a),
        b=float(b),
        c_lo=ci[0][0],
        c_hi=ci[0][1],
        rmse=rmse,
        n_sizes=n_sizes,
        converged=success,
        a_lo=ci[1][0],
        a_hi=ci[1][1],
        b_lo=ci[2][0],
        b_hi=ci[2][1],
        n_seeds=n_seeds,
        n_boot_ok=len(boot),
        confidence=confidence,
        boot=boot,
    )


def _scale_a(a_scaled: float, b: float, n0: float) -> float:
    """a in units of n from the fit's a_scaled in units of n / n0: a = a_scaled n0^b."""
    return float(_power(a_scaled, -b, n0))


# --------------------------------------------------------------------------------------------
# 3. area under the learning curve


def _aulc_weights(n: np.ndarray) -> np.ndarray:
    """Trapezoid weights on log2(n) (sorted, distinct n), normalised to sum to 1."""
    x = np.log2(n)
    if x.size == 1:
        return np.ones(1)
    gaps = np.diff(x)
    w = np.zeros_like(x)
    w[:-1] += gaps / 2
    w[1:] += gaps / 2
    return w / (x[-1] - x[0])


def aulc(n: Sequence[float] | np.ndarray, mean_err: Sequence[float] | np.ndarray) -> float:
    """Area under the learning curve on a log2(n) axis (trapezoid rule) divided by the log2
    range of n: the mean of the metric over the range, in the metric's units.

    Sizes whose value is NaN are left out; one size gives its value, none gives NaN.
    """
    n = np.asarray(n, dtype=float)
    v = np.asarray(mean_err, dtype=float)
    if n.shape != v.shape or n.ndim != 1:
        raise ValueError(f"n and mean_err must be 1-D of equal length, got {n.shape}, {v.shape}")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError("training sizes n must be positive and finite")
    if np.unique(n).size != n.size:
        raise ValueError("training sizes n must be distinct")
    keep = np.isfinite(v)
    if not keep.any():
        return math.nan
    order = np.argsort(n[keep])
    n, v = n[keep][order], v[keep][order]
    return float(_aulc_weights(n) @ v)


def aulc_ci(
    n: Sequence[float] | np.ndarray,
    err_by_seed: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(aulc, lo, hi): `aulc` of the mean curve over seeds of the (sizes x seeds) array
    `err_by_seed` and its `confidence` percentile-bootstrap interval, resampling seed columns
    (one draw); metric units. lo/hi are NaN with fewer than two seeds."""
    _check_confidence(confidence)
    _check_n_boot(n_boot)
    n = np.asarray(n, dtype=float)
    y = np.asarray(err_by_seed, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if n.ndim != 1 or y.ndim != 2 or y.shape[0] != n.size:
        raise ValueError(f"err_by_seed must be (sizes x seeds) with {n.size} rows, got {y.shape}")
    y = y[:, np.isfinite(y).any(axis=0)]
    if y.shape[1] == 0:
        return math.nan, math.nan, math.nan
    mean = _nanmean(y, axis=1)
    point = aulc(n, mean)
    keep = np.isfinite(mean)
    if y.shape[1] < 2:
        return point, math.nan, math.nan
    order = np.argsort(n[keep])
    nk, yk = n[keep][order], y[keep][order]
    idx = _rng(seed, "aulc").integers(0, yk.shape[1], size=(int(n_boot), yk.shape[1]))
    reps = _nanmean(yk[:, idx], axis=2)  # (S, R); NaN where a resample lost a size
    boot = _aulc_weights(nk) @ reps
    lo, hi = _interval(boot, confidence)
    return point, lo, hi


# --------------------------------------------------------------------------------------------
# 4. paired crossover


@dataclass(frozen=True)
class Crossover:
    """Paired comparison of a generative and a discriminative model's learning curves.

    d(n) = metric(generative) - metric(discriminative) on the same (n_train, seed) subsets, so
    d > 0 means the discriminative model is better (lower error). `n_significant` is the
    smallest size at which the discriminative model is significantly better and not
    significantly worse at any larger size (NaN if none). `n_star` (training examples, a real
    number; set only in the "crossover" regime) is where the mean difference curve crosses
    zero from below for the last time (d <= 0 at one size, > 0 at the next and at every larger
    size), interpolated linearly in log(n) between the two sizes. Values outside the measured
    range are censored: 0.0 means "below the smallest size" (the mean curve is > 0 at every
    size) and inf "above the largest" (it is <= 0 at the largest size); `format_n_star`
    writes them as "<n_min" and ">n_max". `n_star_lo`/`n_star_hi` is the percentile-bootstrap
    interval of the same statistic over resampled seed columns (order statistics, so censored
    resamples keep the interval's end censored) and `boot_fraction` the fraction of resamples
    whose mean difference curve crosses inside the measured range.

    `regime`: "crossover" (generative better or tied at small n, discriminative significantly
    better from n*), "discriminative_always" (discriminative significantly better already at
    the smallest size and never significantly worse), "generative_always" (generative never
    significantly worse and significantly better somewhere), "no_difference" (no size
    significant either way) or "mixed" (the discriminative model is significantly better at
    some size and significantly worse at a larger one: the four above do not apply).
    "crossover" requires n* inside the tested sizes: when the discriminative model is
    significantly better from some size on but the mean difference curve favours it at every
    size the regime is "discriminative_always", and when the curve does not favour it at the
    largest size (no crossing inside the tested range) it is "mixed".
    `per_size` has one row per training size: n_train, n_pairs, n_not_ok (cells of either
    model not ok), mean_diff, lo, hi (bootstrap interval), p_value
    (`gdbench.reports.stats.paired_test`),
    better ("generative", "discriminative", or "tie" = not significant or not testable).
    """

    task: str
    generative: str
    discriminative: str
    n_star: float
    n_star_lo: float
    n_star_hi: float
    boot_fraction: float
    regime: str
    per_size: pd.DataFrame = field(repr=False, compare=False)
    n_significant: float = math.nan
    metric: str = "error"
    alpha: float = 0.05
    confidence: float = 0.95

    def describe(self) -> str:
        """One English sentence summarising the comparison (sizes in training examples)."""
        gen, disc = self.generative, self.discriminative
        ps = self.per_size[self.per_size["n_pairs"] > 0]
        if ps.empty:
            return f"no paired {gen}/{disc} cells with status ok"
        sizes = ps["n_train"].to_numpy(dtype=float)
        better = ps["better"].to_numpy()
        rng_text = f"({_fmt_n(sizes[0])}–{_fmt_n(sizes[-1])})"
        every = {"discriminative": disc, "generative": gen}
        if self.regime == "no_difference":
            return f"no significant difference between {gen} and {disc} at any size {rng_text}"
        if self.regime in ("discriminative_always", "generative_always"):
            side = "discriminative" if self.regime == "discriminative_always" else "generative"
            if np.all(better == side):
                return f"no crossover in range {rng_text}: {every[side]} better at every size"
            at = ", ".join(_fmt_n(s) for s in sizes[better == side])
            return f"no crossover in range {rng_text}: {every[side]} better at n={at}, never worse"
        if self.regime == "mixed":
            g = ", ".join(_fmt_n(s) for s in sizes[better == "generative"])
            d = ", ".join(_fmt_n(s) for s in sizes[better == "discriminative"])
            if not g:  # significant for the discriminative model only, not at the largest size
                return (
                    f"no crossover in range {rng_text}: {disc} better at n={d}, but the mean "
                    f"difference does not favour it at the largest size"
                )
            return (
                f"no consistent winner in range {rng_text}: {disc} better at n={d}, {gen} at n={g}"
            )
        before = sizes < self.n_significant
        gen_sig = sizes[before & (better == "generative")]
        head = f"{gen} better up to n={_fmt_n(gen_sig[-1])}; " if gen_sig.size else ""
        pct = f"{self.confidence:.0%}".replace("%", "% CI")
        lo_hi = (self.n_star_lo, self.n_star_hi)
        if all(math.isnan(v) for v in lo_hi):
            ci = " (no bootstrap CI)"
        else:
            lo, hi = (format_n_star(v, sizes[0], sizes[-1]) for v in lo_hi)
            ci = f" ({pct} {lo}–{hi})"
        n_star = format_n_star(self.n_star, sizes[0], sizes[-1])
        text = (
            f"{head}{disc} better from n*={n_star}{ci}, significantly from "
            f"n={_fmt_n(self.n_significant)}"
        )
        if self.boot_fraction < 0.9:
            text += f"; crossing in {self.boot_fraction:.0%} of bootstrap resamples"
        return text


def _crossings(logn: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Where each row of `d` (R x S mean difference curves over sizes exp(logn), NaN = size
    missing) last crosses zero from below: log-interpolated between the last size with d <= 0
    and the next size with data, the curve staying > 0 from there on. Returns training sizes
    (R,), with two censored codes: 0.0 when d > 0 at every size (the crossing lies below the
    smallest size) and inf when d <= 0 at the largest size (above the largest, if anywhere);
    NaN for rows without data."""
    r, s = d.shape
    valid = np.isfinite(d)
    nonpos = valid & (d <= 0)
    has_j = nonpos.any(axis=1)
    j = s - 1 - np.argmax(nonpos[:, ::-1], axis=1)  # last index with d <= 0
    after = valid & (np.arange(s)[None, :] > j[:, None])
    has_k = after.any(axis=1)
    k = np.argmax(after, axis=1)  # first size with data after j (d > 0 there by definition)
    ok = has_j & has_k
    rows = np.arange(r)
    dj, dk = d[rows, j], d[rows, np.where(ok, k, j)]
    xj, xk = logn[j], logn[np.where(ok, k, j)]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = xj + (0.0 - dj) / (dk - dj) * (xk - xj)
    out = np.where(ok, np.exp(x), np.nan)
    out = np.where(valid.any(axis=1) & ~has_j, 0.0, out)  # positive throughout: below range
    return np.where(has_j & ~has_k, np.inf, out)  # non-positive at the end: above range


def _censored_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of values that may be 0 (below range) or inf (above range): order
    statistics (no interpolation), so a censored end stays censored."""
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(x, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def _pairs(df: pd.DataFrame, task: str, gen: str, disc: str, metric: str):
    """(matrix of paired differences sizes x seeds, per-size not-ok counts, all sizes)."""
    rows = df[(df["task"] == task) & df["model"].isin([gen, disc])]
    sizes = pd.Index(np.sort(rows["n_train"].unique()), name="n_train")
    values = metric_values(rows, metric).to_numpy()
    usable = (rows["status"] == "ok").to_numpy() & np.isfinite(values)
    bad = rows.loc[(rows["status"] != "ok").to_numpy()].groupby("n_train").size()
    n_not_ok = bad.reindex(sizes, fill_value=0).to_numpy()
    mats = []
    for model in (gen, disc):
        m = (rows["model"] == model).to_numpy() & usable
        mats.append(_seed_matrix(rows[m], pd.Series(values[m], index=rows.index[m])))
    seeds = mats[0].columns.union(mats[1].columns)
    g = mats[0].reindex(index=sizes, columns=seeds).to_numpy(dtype=float)
    dmat = mats[1].reindex(index=sizes, columns=seeds).to_numpy(dtype=float)
    return g - dmat, n_not_ok, sizes.to_numpy(dtype=float)


def crossover(
    df: pd.DataFrame,
    task: str,
    generative: str,
    discriminative: str,
    metric: str = "error",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> Crossover:
    """Paired crossover analysis of `generative` vs `discriminative` on `task`.

    The two models' ok rows are joined on (n_train, seed) (identical training subsets). Per
    size: mean paired difference d = metric(generative) - metric(discriminative) (metric
    units), its `confidence` percentile-bootstrap interval (resampling the pairs, one draw per
    size) and the p-value of `gdbench.reports.stats.paired_test` on the same test examples and seeds
    (McNemar's exact test at one training set, else the two-level test; over seeds only for
    rows without per-example outcomes; NaN when nothing can be tested). A size counts as
    significant when p < `alpha`. The crossing n* and its interval come from the mean
    difference curve and `n_boot` resamples of the paired seed columns (see `Crossover`).
    Returns a `Crossover`; raises `ValueError` if either model has no rows for the task.
    """
    _check_rows(df)
    _check_confidence(confidence)
    _check_n_boot(n_boot)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    in_task = df[df["task"] == task]
    if in_task.empty:
        raise ValueError(f"no rows for task {task!r}: tasks are {sorted(df['task'].unique())}")
    for name in (generative, discriminative):
        if not (in_task["model"] == name).any():
            valid = sorted(in_task["model"].unique())
            raise ValueError(f"no rows for model {name!r} on task {task!r}: models are {valid}")
    diff, n_not_ok, sizes = _pairs(df, task, generative, discriminative, metric)
    rng = _rng(seed, task, generative, discriminative)
    ok = in_task[in_task["status"] == "ok"] if "status" in in_task else in_task
    rows_g, rows_d = (ok[ok["model"] == m] for m in (generative, discriminative))
    test_metric = "accuracy" if metric == "error" else metric
    per = []
    for i, n in enumerate(sizes):
        d = diff[i][np.isfinite(diff[i])]
        mean = float(d.mean()) if d.size else math.nan
        lo = hi = math.nan
        if d.size >= 2:
            lo, hi = _interval(_boot_means(d, int(n_boot), rng), confidence)
        # The paired test on the same test examples and seeds (reports.stats.paired_test:
        # McNemar at one training set, else two-level; seeds only for rows without
        # per-example outcomes).
        p = math.nan
        if d.size:
            p, _ = paired_test(
                rows_g[rows_g["n_train"] == n], rows_d[rows_d["n_train"] == n], test_metric
            )
        better = "tie"
        if d.size and p < alpha and mean != 0:
            better = "discriminative" if mean > 0 else "generative"
        per.append((int(n), int(d.size), int(n_not_ok[i]), mean, lo, hi, p, better))
    per_size = pd.DataFrame(
        per,
        columns=["n_train", "n_pairs", "n_not_ok", "mean_diff", "lo", "hi", "p_value", "better"],
    )

    tested = per_size["n_pairs"].to_numpy() > 0
    better = per_size["better"].to_numpy()[tested]
    tsizes = sizes[tested]
    sig_d, sig_g = better == "discriminative", better == "generative"
    first_sig = math.nan
    last_d = int(np.flatnonzero(sig_d)[-1]) if sig_d.any() else -1
    last_g = int(np.flatnonzero(sig_g)[-1]) if sig_g.any() else -1
    if last_d > last_g:  # discriminative significantly better at the largest significant size
        i_star = int(np.flatnonzero(sig_d & (np.arange(better.size) > last_g))[0])
        first_sig = float(tsizes[i_star])
        regime = "discriminative_always" if i_star == 0 else "crossover"
    elif sig_g.any():
        regime = "mixed" if sig_d.any() else "generative_always"
    else:
        regime = "no_difference"

    # crossing of the mean difference curve, point estimate and bootstrap over seed columns
    logn = np.log(tsizes)
    dt = diff[tested]
    cols = np.isfinite(dt).any(axis=0)
    dt = dt[:, cols]
    mean_curve = _nanmean(dt, axis=1)
    point = float(_crossings(logn, mean_curve[None, :])[0]) if dt.size else math.nan
    boot_fraction, lo, hi = math.nan, math.nan, math.nan
    if dt.shape[1] >= 2 and dt.shape[0] >= 2:
        idx = rng.integers(0, dt.shape[1], size=(int(n_boot), dt.shape[1]))
        reps = _nanmean(dt[:, idx], axis=2).T  # (R, S)
        cross = _crossings(logn, reps)
        boot_fraction = float((np.isfinite(cross) & (cross > 0)).mean())
        if regime == "crossover":
            lo, hi = _censored_interval(cross, confidence)
    if regime == "crossover" and not 0 < point < math.inf:
        # "crossover" only where n* lies inside the tested sizes: a mean difference curve
        # favouring the discriminative model at every size is "discriminative_always"; one
        # that does not favour it at the largest size has no crossing in range ("mixed").
        regime = "discriminative_always" if point == 0 else "mixed"
        lo = hi = math.nan
    n_star = point if regime == "crossover" else math.nan
    return Crossover(
        task=task,
        generative=generative,
        discriminative=discriminative,
        n_star=n_star,
        n_star_lo=lo,
        n_star_hi=hi,
        boot_fraction=boot_fraction,
        regime=regime,
        per_size=per_size,
        n_significant=first_sig,
        metric=metric,
        alpha=alpha,
        confidence=confidence,
    )


def crossover_table(
    df: pd.DataFrame,
    pairs: Iterable[tuple[str, str]] | None = None,
    metric: str = "error",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """`crossover` for each (generative, discriminative) pair on each task.

    `pairs` lists (generative, discriminative) model names; a pair is analysed on every task
    where both models have rows. By default every generative x discriminative pair present in
    a task (by the `paradigm` column). Returns one row per (task, pair), sorted, with columns
    task, generative, discriminative, n_star, n_star_lo, n_star_hi (training examples),
    boot_fraction, n_significant, regime, n_sizes (sizes with pairs), n_pairs (paired cells),
    n_not_ok (cells of either model not ok) and description (`Crossover.describe`).
    """
    _check_rows(df, () if pairs is not None else ("paradigm",))
    if pairs is not None:
        pairs = [tuple(p) for p in pairs]
        for p in pairs:
            if len(p) != 2:
                raise ValueError(f"pairs must be (generative, discriminative) tuples, got {p!r}")
    out = []
    for task in sorted(df["task"].unique()):
        rows = df[df["task"] == task]
        present = set(rows["model"])
        if pairs is None:
            by = rows.groupby("model")["paradigm"].first()
            todo = [
                (g, d)
                for g in sorted(by.index[by == "generative"])
                for d in sorted(by.index[by == "discriminative"])
            ]
        else:
            todo = [(g, d) for g, d in pairs if g in present and d in present]
        for g, d in todo:
            cx = crossover(rows, task, g, d, metric, n_boot, seed, alpha, confidence)
            ps = cx.per_size
            out.append(
                {
                    "task": task,
                    "generative": g,
                    "discriminative": d,
                    "n_star": cx.n_star,
                    "n_star_lo": cx.n_star_lo,
                    "n_star_hi": cx.n_star_hi,
                    "boot_fraction": cx.boot_fraction,
                    "n_significant": cx.n_significant,
                    "regime": cx.regime,
                    "n_sizes": int((ps["n_pairs"] > 0).sum()),
                    "n_pairs": int(ps["n_pairs"].sum()),
                    "n_not_ok": int(ps["n_not_ok"].sum()),
                    "description": cx.describe(),
                }
            )
    columns = [
        "task", "generative", "discriminative", "n_star", "n_star_lo", "n_star_hi",
        "boot_fraction", "n_significant", "regime", "n_sizes", "n_pairs", "n_not_ok",
        "description",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# 6. per-model curve summary


def curve_summary(
    df: pd.DataFrame,
    metric: str = "error",
    eps: float = 0.01,
    n_boot: int = 200,
    n_boot_aulc: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    n_test: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Per (task, model): power-law fit with reliability flags, AULC, the robust "n to within
    `eps` of the best observed value" and the metric at the largest size.

    Returns one row per (task, model), sorted, with columns task, model, paradigm, c, c_lo,
    c_hi (asymptote of err = c + a n^-b and its bootstrap interval, metric units), c_floor
    (the lower bound c was fitted under: the Bayes error 1 - bayes_accuracy for "error" on a
    task whose rows carry it, else 0 or -inf), a, b, converged, rmse, n_within, n_within_lo,
    n_within_hi (training examples at which the fit comes within `eps` metric units of c, see
    `PowerLawFit.n_within`), flag and reliable (see below), best, n_best, n_best_lo, n_best_hi
    (`n_to_best`: the lowest mean over the sizes and the smallest size whose mean is within
    `eps` of it, with a bootstrap interval over seeds; no extrapolation), aulc, aulc_lo,
    aulc_hi (`aulc_ci`, metric units), smallest_n and largest_n (the smallest and largest
    sizes with data, NaN if none),
    at_largest (the mean metric over its ok seeds), n_sizes, n_seeds (seeds with data) and
    n_not_ok (rows not ok). Fits use `n_boot` resamples, the AULC interval `n_boot_aulc`; c
    is bounded to [Bayes error or 0, 1] for "error", to [0, inf) for a metric without
    negative values, else unbounded. `n_test` maps a task to its test-set size: for "error"
    the interval of c then includes the test set's sampling noise (`fit_power_law`).

    `flag` says why the fitted asymptote is not a measurement ("" when it is reliable):

    - "no fit": fewer than three sizes with data, or the fit did not converge;
    - "extrapolated": the fitted curve is still more than `eps` above c at the largest size
      tested (n_within > largest_n), so c lies beyond the tested range and rests on the
      power-law form alone;
    - "poor fit": at one of the larger half of the sizes the fitted curve misses the mean by
      more than max(`eps` / 2, 3 standard errors over seeds): the curve is not a power law
      there (e.g. it rises again), so c does not describe it.

    `reliable` is True when `flag` is "".
    """
    _check_rows(df, ("paradigm",))
    eps = _check_eps(eps)
    values = metric_values(df, metric)
    ok = (df["status"] == "ok").to_numpy() & np.isfinite(values.to_numpy())
    finite = values[np.isfinite(values.to_numpy())]
    if metric == "error":
        c_bounds = (0.0, 1.0)
    elif finite.empty or finite.min() >= 0:
        c_bounds = (0.0, math.inf)
    else:
        c_bounds = (-math.inf, math.inf)
    out = []
    for (task, model), g in df.groupby(["task", "model"], sort=True):
        m = ok[df.index.get_indexer(g.index)]
        sizes = np.sort(g["n_train"].unique())
        mat = _seed_matrix(g[m], values.loc[g.index[m]]).reindex(sizes)
        n = mat.index.to_numpy(dtype=float)
        y = mat.to_numpy(dtype=float)
        bounds = c_bounds
        tests = None
        if metric == "error":
            bounds = (_bayes_error(g), 1.0)
            tests = None if n_test is None else n_test.get(task)
        fit = fit_power_law(n, y, n_boot, _mix(seed, task, model), confidence, bounds, n_test=tests)
        a_point, a_lo, a_hi = aulc_ci(n, y, n_boot_aulc, _mix(seed, task, model), confidence)
        best = n_to_best(n, y, eps, n_boot_aulc, _mix(seed, task, model), confidence)
        means = _nanmean(y, axis=1) if y.shape[1] else np.full(n.size, np.nan)
        have = np.flatnonzero(np.isfinite(means))
        largest = float(n[have[-1]]) if have.size else math.nan
        nw_lo, nw_hi = fit.n_within_ci(eps)
        flag = fit_flag(fit, n, y, eps)
        out.append(
            {
                "task": task,
                "model": model,
                "paradigm": g["paradigm"].iloc[0],
                "c": fit.c,
                "c_lo": fit.c_lo,
                "c_hi": fit.c_hi,
                "c_floor": bounds[0],
                "a": fit.a,
                "b": fit.b,
                "converged": fit.converged,
                "rmse": fit.rmse,
                "n_within": fit.n_within(eps),
                "n_within_lo": nw_lo,
                "n_within_hi": nw_hi,
                "flag": flag,
                "reliable": flag == "",
                "best": best[0],
                "n_best": best[1],
                "n_best_lo": best[2],
                "n_best_hi": best[3],
                "aulc": a_point,
                "aulc_lo": a_lo,
                "aulc_hi": a_hi,
                "smallest_n": float(n[have[0]]) if have.size else math.nan,
                "largest_n": largest,
                "at_largest": float(means[have[-1]]) if have.size else math.nan,
                "n_sizes": int(have.size),
                "n_seeds": int(y.shape[1]),
                "n_not_ok": int((g["status"] != "ok").sum()),
            }
        )
    columns = [
        "task", "model", "paradigm", "c", "c_lo", "c_hi", "c_floor", "a", "b", "converged",
        "rmse", "n_within", "n_within_lo", "n_within_hi", "flag", "reliable", "best", "n_best",
        "n_best_lo", "n_best_hi", "aulc", "aulc_lo", "aulc_hi", "smallest_n", "largest_n",
        "at_largest",
        "n_sizes", "n_seeds", "n_not_ok",
    ]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def _bayes_error(rows: pd.DataFrame) -> float:
    """1 - bayes_accuracy of a task's rows when they carry it (synthetic tasks), else 0."""
    if "bayes_accuracy" not in rows.columns:
        return 0.0
    bayes = pd.to_numeric(rows["bayes_accuracy"], errors="coerce").dropna()
    if bayes.empty:
        return 0.0
    return float(min(max(1.0 - bayes.mean(), 0.0), 1.0 - 1e-9))


def fit_flag(fit: PowerLawFit, n: np.ndarray, err_by_seed: np.ndarray, eps: float) -> str:
    """Why `fit` (of the (sizes x seeds) curve `err_by_seed` at sizes `n`) is not a reliable
    asymptote: "no fit", "extrapolated", "poor fit" (see `curve_summary`), or "" if it is."""
    if not fit.converged or not math.isfinite(fit.c):
        return "no fit"
    y = np.asarray(err_by_seed, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    n = np.asarray(n, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(y, axis=1)
        count = np.isfinite(y).sum(axis=1)
        sd = np.nanstd(y, axis=1, ddof=1)
    have = np.isfinite(mean)
    if not have.any():
        return "no fit"
    n, mean, count, sd = n[have], mean[have], count[have], sd[have]
    order = np.argsort(n)
    n, mean, count, sd = n[order], mean[order], count[order], sd[order]
    if fit.n_within(eps) > n[-1]:
        return "extrapolated"
    se = np.where(count >= 2, np.nan_to_num(sd) / np.sqrt(np.maximum(count, 1)), 0.0)
    upper = n >= np.median(n)
    miss = np.abs(mean - fit.predict(n)) > np.maximum(eps / 2.0, 3.0 * se)
    return "poor fit" if bool((miss & upper).any()) else ""


def n_to_best(
    n: Sequence[float] | np.ndarray,
    err_by_seed: np.ndarray,
    eps: float = 0.01,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """(best, n_best, lo, hi): the lowest mean over seeds of the (sizes x seeds) curve
    `err_by_seed` across the tested sizes `n` (metric units), the smallest tested size whose
    mean is within `eps` of it (training examples), and the `confidence` percentile-bootstrap
    interval of that size over resampled seed columns (lo/hi NaN with fewer than two seeds).

    A model-free summary of how fast a curve approaches the best it reached: unlike the
    power-law asymptote it never extrapolates, so it is always one of the tested sizes.
    """
    eps = _check_eps(eps)
    n = np.asarray(n, dtype=float)
    y = np.asarray(err_by_seed, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    order = np.argsort(n)
    n, y = n[order], y[order]
    y = y[:, np.isfinite(y).any(axis=0)]
    nan = math.nan
    if y.shape[1] == 0:
        return nan, nan, nan, nan
    mean = _nanmean(y, axis=1)
    if not np.isfinite(mean).any():
        return nan, nan, nan, nan
    best = float(np.nanmin(mean))
    point = float(n[np.flatnonzero(mean <= best + eps)[0]])
    if y.shape[1] < 2:
        return best, point, nan, nan
    idx = _rng(seed, "n_to_best").integers(0, y.shape[1], size=(int(n_boot), y.shape[1]))
    reps = _nanmean(y[:, idx], axis=2).T  # (R, S)
    filled = np.where(np.isfinite(reps), reps, np.inf)
    within = filled <= np.min(filled, axis=1, keepdims=True) + eps
    lo, hi = np.quantile(
        n[np.argmax(within, axis=1)],
        [(1 - confidence) / 2, (1 + confidence) / 2],
        method="inverted_cdf",
    )
    return best, point, float(lo), float(hi)


def format_asymptote(row: Mapping | pd.Series, decimals: int = 3) -> str:
    """The asymptote column of a `curve_summary` row as text: "c (lo–hi)", then the flag's
    mark ("† extrapolated", "‡ poor fit") or "no fit" alone; "≥" notes c at the Bayes-error
    bound."""
    if row["flag"] == "no fit" or not math.isfinite(row["c"]):
        return "no fit"
    text = f"{row['c']:.{decimals}f}"
    if math.isfinite(row["c_lo"]):
        text += f" ({row['c_lo']:.{decimals}f}–{row['c_hi']:.{decimals}f})"
    if row["c_floor"] > 0 and row["c"] <= row["c_floor"] + 0.5 * 10**-decimals:
        text += " = Bayes bound"
    return text + FLAG_MARKS.get(row["flag"], "")


def format_n_within(row: Mapping | pd.Series) -> str:
    """The "n to c+eps" column of a `curve_summary` row: the size and its interval where they
    lie within the tested sizes; "> largest_n (beyond tested sizes)" when the fit puts it
    beyond the largest size, "< smallest_n (below tested sizes)" below the smallest; an
    interval end outside the tested sizes as ">largest_n" / "<smallest_n"; "—" without a
    fit. Never a number the data do not bracket."""
    largest, smallest = row["largest_n"], row.get("smallest_n", math.nan)
    n = row["n_within"]
    if row["flag"] == "no fit" or math.isnan(n) or not math.isfinite(largest):
        return "—"
    if n > largest:
        return f"> {_fmt_n(largest)} (beyond tested sizes)"
    if math.isfinite(smallest) and n < smallest:
        return f"< {_fmt_n(smallest)} (below tested sizes)"

    def end(v: float) -> str:
        if v > largest:
            return f">{_fmt_n(largest)}"
        if math.isfinite(smallest) and v < smallest:
            return f"<{_fmt_n(smallest)}"
        return _fmt_n(v)

    text = _fmt_n(n)
    lo, hi = row["n_within_lo"], row["n_within_hi"]
    if not (math.isnan(lo) or math.isnan(hi)):
        text += f" ({end(lo)}–{end(hi)})"
    return text


def format_n_best(row: Mapping | pd.Series) -> str:
    """The "n to best+eps" column of a `curve_summary` row: a tested size and its interval."""
    if not math.isfinite(row["n_best"]):
        return "—"
    text = _fmt_n(row["n_best"])
    if math.isfinite(row["n_best_lo"]):
        text += f" ({_fmt_n(row['n_best_lo'])}–{_fmt_n(row['n_best_hi'])})"
    return text


#: The marks `format_asymptote` appends to a flagged fit, and what each means.
FLAG_MARKS = {"extrapolated": " †", "poor fit": " ‡"}
FLAG_LEGEND = {
    "extrapolated": (
        "† extrapolated: the fitted curve is still more than ε above c at the largest size "
        "tested, so c lies beyond the data and rests on the power-law form alone; not a "
        "measured asymptote"
    ),
    "poor fit": (
        "‡ poor fit: at a larger size the fitted curve misses the mean error by more than "
        "max(ε/2, 3 standard errors over seeds); c does not describe this curve"
    ),
    "no fit": "no fit: fewer than three sizes with data, or the fit did not converge",
}


def _mix(seed: int, *key: object) -> int:
    """A per-group integer seed derived from `seed` and `key` (stable across runs)."""
    return int(_rng(seed, *key).integers(0, 2**31 - 1))
