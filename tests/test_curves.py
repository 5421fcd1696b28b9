"""Learning-curve statistics against simulated curves of known truth and scipy references."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.optimize import brentq

from gdbench.reports import curves
from gdbench.reports.stats import DuplicateCellError

SIZES = np.array([10, 20, 40, 80, 160, 320, 640, 1280])


def power(c: float, a: float, b: float):
    return lambda n: c + a * np.asarray(n, dtype=float) ** -b


def frame(models: dict, sizes, task: str = "t") -> pd.DataFrame:
    """Rows (task, model, paradigm, n_train, seed, accuracy, status) from
    {model: (paradigm, errors of shape sizes x seeds)}; every row ok."""
    sizes = np.asarray(sizes)
    parts = []
    for model, (paradigm, err) in models.items():
        err = np.asarray(err, dtype=float)
        k = err.shape[1]
        parts.append(
            pd.DataFrame(
                {
                    "task": task,
                    "model": model,
                    "paradigm": paradigm,
                    "n_train": np.repeat(sizes, k),
                    "seed": np.tile(np.arange(k), sizes.size),
                    "accuracy": 1.0 - err.ravel(),
                    "status": "ok",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def noisy(curve, sizes, seeds: int, sd: float, rng) -> np.ndarray:
    """curve(n) + N(0, sd^2) noise per (size, seed) cell: shape sizes x seeds."""
    return curve(sizes)[:, None] + rng.normal(0.0, sd, (len(sizes), seeds))


# ------------------------------------------------------------------ bootstrap curves


def test_bootstrap_ci_of_a_mean_matches_t_interval_for_normal_data():
    rng = np.random.default_rng(0)
    err = rng.normal(0.3, 0.05, (1, 200))
    df = frame({"m": ("discriminative", err)}, [50])
    row = curves.bootstrap_curves(df, n_boot=4000, seed=1).iloc[0]
    x = err[0]
    t_lo, t_hi = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    half = (t_hi - t_lo) / 2
    assert row["mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert row["n_seeds"] == 200 and row["n_not_ok"] == 0
    assert abs(row["lo"] - t_lo) < 0.1 * half
    assert abs(row["hi"] - t_hi) < 0.1 * half


def test_bootstrap_curves_metric_columns_determinism_and_small_groups():
    rng = np.random.default_rng(1)
    df = frame({"m": ("generative", rng.uniform(0.1, 0.4, (3, 30)))}, [10, 20, 40])
    df["nll"] = rng.uniform(0.5, 1.0, len(df))
    df = df.drop(index=df.index[(df["n_train"] == 40) & (df["seed"] > 0)])  # one seed left
    a = curves.bootstrap_curves(df, seed=3)
    b = curves.bootstrap_curves(df, seed=3)
    c = curves.bootstrap_curves(df, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["lo"].iloc[:2], c["lo"].iloc[:2])
    ref = df.groupby("n_train")["accuracy"].mean()
    np.testing.assert_allclose(a["mean"], 1.0 - ref.to_numpy())
    assert a["n_seeds"].tolist() == [30, 30, 1]
    assert np.isnan(a["lo"].iloc[2]) and np.isnan(a["hi"].iloc[2])
    assert (a["lo"].iloc[:2] <= a["mean"].iloc[:2]).all()
    assert (a["hi"].iloc[:2] >= a["mean"].iloc[:2]).all()
    nll = curves.bootstrap_curves(df, metric="nll")
    np.testing.assert_allclose(nll["mean"], df.groupby("n_train")["nll"].mean().to_numpy())
    with pytest.raises(ValueError, match="unknown metric 'bogus'"):
        curves.bootstrap_curves(df, metric="bogus")


def test_failed_rows_are_excluded_and_counted():
    rng = np.random.default_rng(2)
    err = rng.uniform(0.1, 0.3, (len(SIZES), 6))
    df = frame({"g": ("generative", err), "d": ("discriminative", err - 0.05)}, SIZES)
    bad = (df["model"] == "g") & (df["n_train"] == 40) & (df["seed"] < 2)
    df.loc[bad, "status"] = "failed"
    df.loc[bad, "accuracy"] = 0.0  # garbage that must not enter any statistic
    bc = curves.bootstrap_curves(df)
    g40 = bc[(bc["model"] == "g") & (bc["n_train"] == 40)].iloc[0]
    assert g40["n_seeds"] == 4 and g40["n_not_ok"] == 2
    assert g40["mean"] == pytest.approx(err[2, 2:].mean())
    cx = curves.crossover(df, "t", "g", "d")
    at40 = cx.per_size.set_index("n_train").loc[40]
    assert at40["n_pairs"] == 4 and at40["n_not_ok"] == 2
    assert at40["mean_diff"] == pytest.approx(0.05)
    summary = curves.curve_summary(df, n_boot=20, n_boot_aulc=200).set_index("model")
    assert summary.loc["g", "n_not_ok"] == 2 and summary.loc["d", "n_not_ok"] == 0
    table = curves.crossover_table(df, n_boot=200)
    assert table["n_not_ok"].tolist() == [2]
    assert table["n_pairs"].tolist() == [len(SIZES) * 6 - 2]


# ------------------------------------------------------------------ power-law fits


@pytest.mark.fast
def test_power_law_fit_recovers_known_asymptote():
    truth = power(0.1, 0.5, 0.5)
    err = noisy(truth, SIZES, 40, 0.02, np.random.default_rng(3))
    fit = curves.fit_power_law(SIZES, err, n_boot=200, seed=0)
    assert fit.converged and fit.n_sizes == len(SIZES) and fit.n_seeds == 40
    assert fit.c_lo <= 0.1 <= fit.c_hi
    assert abs(fit.c - 0.1) < 0.01
    assert fit.b_lo <= 0.5 <= fit.b_hi
    assert fit.a_lo <= 0.5 <= fit.a_hi
    np.testing.assert_allclose(fit.predict(SIZES), truth(SIZES), atol=0.006)
    # rmse is that of the mean curve around the fitted curve
    resid = err.mean(axis=1) - fit.predict(SIZES)
    assert fit.rmse == pytest.approx(np.sqrt(np.mean(resid**2)))


def test_power_law_asymptote_ci_covers_truth_in_most_repetitions():
    truth = power(0.05, 1.0, 0.6)
    covered = 0
    for rep in range(6):
        err = noisy(truth, SIZES, 25, 0.03, np.random.default_rng(100 + rep))
        fit = curves.fit_power_law(SIZES, err, n_boot=100, seed=rep)
        covered += fit.c_lo <= 0.05 <= fit.c_hi
    assert covered >= 4


def test_power_law_exact_fit_with_four_sizes_and_nan_cells():
    truth = power(0.08, 0.9, 0.7)
    sizes = np.array([10, 30, 90, 270])
    err = np.repeat(truth(sizes)[:, None], 3, axis=1)
    err[1, 0] = np.nan  # a failed cell: the other seeds carry the size
    fit = curves.fit_power_law(sizes, err, n_boot=50)
    assert fit.converged and fit.n_sizes == 4
    assert fit.c == pytest.approx(0.08, abs=1e-5)
    assert fit.a == pytest.approx(0.9, rel=1e-3)
    assert fit.b == pytest.approx(0.7, rel=1e-3)
    # n_within: closed form (a/eps)^(1/b) and the fitted curve is eps above c there
    eps = 0.01
    n_eps = fit.n_within(eps)
    assert n_eps == pytest.approx((0.9 / eps) ** (1 / 0.7), rel=1e-3)
    assert fit.predict(n_eps) - fit.c == pytest.approx(eps, rel=1e-6)
    lo, hi = fit.n_within_ci(eps)
    assert lo == pytest.approx(n_eps, rel=1e-3) and hi == pytest.approx(n_eps, rel=1e-3)


def test_power_law_n_within_ci_covers_truth():
    truth = power(0.1, 0.5, 0.5)
    err = noisy(truth, SIZES, 40, 0.01, np.random.default_rng(4))
    fit = curves.fit_power_law(SIZES, err, n_boot=200)
    lo, hi = fit.n_within_ci(0.02)
    assert lo <= (0.5 / 0.02) ** 2 <= hi


def test_flat_curve_fit_is_robust():
    err = 0.2 + np.random.default_rng(5).normal(0, 0.01, (len(SIZES), 30))
    fit = curves.fit_power_law(SIZES, err, n_boot=100)
    assert fit.converged
    assert abs(fit.c - 0.2) < 0.01
    assert fit.c_lo > 0.17 and fit.c_hi < 0.21
    np.testing.assert_allclose(fit.predict(SIZES[2:]), 0.2, atol=0.005)


def test_fewer_than_three_sizes_gives_nan_fit_without_raising():
    fit = curves.fit_power_law([10, 20], np.full((2, 4), 0.3))
    assert not fit.converged and fit.n_sizes == 2
    assert all(math.isnan(v) for v in (fit.c, fit.a, fit.b, fit.c_lo, fit.c_hi, fit.rmse))
    assert math.isnan(fit.n_within(0.01)) and all(map(math.isnan, fit.n_within_ci(0.01)))
    err = np.full((5, 3), 0.3)
    err[[0, 2, 4]] = np.nan  # three sizes whose cells all failed
    fit = curves.fit_power_law(SIZES[:5], err)
    assert not fit.converged and fit.n_sizes == 2
    with pytest.raises(ValueError, match="rows"):
        curves.fit_power_law(SIZES, np.zeros((3, 2)))


# ------------------------------------------------------------------ AULC


def test_aulc_matches_hand_trapezoid_on_log2_axis():
    # log2 gaps: 10 -> 20 is 1, 20 -> 80 is 2; area 1*(0.3+0.2)/2 + 2*(0.2+0.1)/2 = 0.55
    assert curves.aulc([10, 20, 80], [0.3, 0.2, 0.1]) == pytest.approx(0.55 / 3)
    assert curves.aulc([80, 10, 20], [0.1, 0.3, 0.2]) == pytest.approx(0.55 / 3)
    assert curves.aulc([10, 20, 40, 80], [0.3, 0.2, np.nan, 0.1]) == pytest.approx(0.55 / 3)
    assert curves.aulc([10, 40], [0.25, 0.25]) == pytest.approx(0.25)
    assert curves.aulc([10], [0.4]) == pytest.approx(0.4)


def test_aulc_bootstrap_ci_matches_t_interval_of_per_seed_aulc():
    rng = np.random.default_rng(6)
    err = noisy(power(0.1, 0.5, 0.5), SIZES, 150, 0.03, rng)
    point, lo, hi = curves.aulc_ci(SIZES, err, n_boot=4000, seed=2)
    per_seed = np.array([curves.aulc(SIZES, err[:, s]) for s in range(err.shape[1])])
    assert point == pytest.approx(per_seed.mean())  # AULC is linear in the curve
    t_lo, t_hi = sps.t.interval(0.95, per_seed.size - 1, per_seed.mean(), sps.sem(per_seed))
    half = (t_hi - t_lo) / 2
    assert abs(lo - t_lo) < 0.12 * half and abs(hi - t_hi) < 0.12 * half


# ------------------------------------------------------------------ crossover


def crossing_rows(seeds: int = 100, sd: float = 0.01, seed: int = 7):
    sizes = np.geomspace(10, 5000, 10).round().astype(int)
    gen, disc = power(0.10, 0.5, 1.0), power(0.02, 2.0, 0.5)
    rng = np.random.default_rng(seed)
    df = frame(
        {
            "gnb": ("generative", noisy(gen, sizes, seeds, sd, rng)),
            "logreg": ("discriminative", noisy(disc, sizes, seeds, sd, rng)),
        },
        sizes,
    )
    truth = brentq(lambda n: gen(n) - disc(n), 10, 5000)
    return df, sizes, truth


def test_crossover_recovers_known_crossing_point():
    df, sizes, truth = crossing_rows()
    cx = curves.crossover(df.sample(frac=1.0, random_state=0), "t", "gnb", "logreg")
    assert cx.regime == "crossover"
    assert cx.n_star_lo <= truth <= cx.n_star_hi
    assert abs(math.log(cx.n_star / truth)) < 0.15
    assert cx.boot_fraction > 0.95
    ps = cx.per_size
    assert ps["n_train"].tolist() == sizes.tolist() and (ps["n_pairs"] == 100).all()
    assert ps["better"].iloc[0] == "generative" and ps["better"].iloc[-1] == "discriminative"
    assert cx.n_significant >= cx.n_star
    # mean difference and p-value per size against direct computation and scipy
    g = df[df.model == "gnb"].pivot(index="n_train", columns="seed", values="accuracy")
    d = df[df.model == "logreg"].pivot(index="n_train", columns="seed", values="accuracy")
    diff = (d - g).to_numpy()  # error_gen - error_disc
    np.testing.assert_allclose(ps["mean_diff"], diff.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(ps["p_value"], [sps.ttest_1samp(x, 0.0).pvalue for x in diff])
    assert ((ps["lo"] <= ps["mean_diff"]) & (ps["mean_diff"] <= ps["hi"])).all()
    text = cx.describe()
    assert text.startswith("gnb better up to n=") and "; logreg better from n*=" in text
    assert ";;" not in text.replace(" ", "") and ", significantly from n=" in text
    assert "95% CI" in text
    again = curves.crossover(df, "t", "gnb", "logreg")
    assert (again.n_star, again.n_star_lo, again.n_star_hi) == (
        cx.n_star,
        cx.n_star_lo,
        cx.n_star_hi,
    )


def test_paired_test_uses_the_pairing():
    rng = np.random.default_rng(8)
    k = 30
    offset = rng.normal(0.0, 0.05, k)  # per-seed subset difficulty, shared by both models
    disc = 0.2 + offset + rng.normal(0, 0.002, k)
    gen = disc + 0.01 + rng.normal(0, 0.002, k)
    df = frame({"g": ("generative", gen[None, :]), "d": ("discriminative", disc[None, :])}, [50])
    df = df.sample(frac=1.0, random_state=1)  # pairing must follow seeds, not row order
    assert sps.mannwhitneyu(gen, disc).pvalue > 0.05  # an unpaired test sees nothing
    assert sps.ttest_ind(gen, disc).pvalue > 0.05
    cx = curves.crossover(df, "t", "g", "d")
    row = cx.per_size.iloc[0]
    assert row["p_value"] == pytest.approx(sps.ttest_1samp(gen - disc, 0.0).pvalue)
    assert row["p_value"] < 1e-4 and row["better"] == "discriminative"
    assert row["mean_diff"] == pytest.approx(np.mean(gen - disc))
    assert cx.regime == "discriminative_always" and math.isnan(cx.n_star)


def regime_rows(delta):
    """Paired rows with error_gen - error_disc = delta(n) + N(0, 0.005^2) per seed."""
    rng = np.random.default_rng(9)
    base = 0.2 + rng.normal(0, 0.03, (len(SIZES), 40))
    gen = base + np.asarray([delta(n) for n in SIZES])[:, None] + rng.normal(0, 0.005, base.shape)
    return frame({"g": ("generative", gen), "d": ("discriminative", base)}, SIZES)


def test_regime_discriminative_always():
    cx = curves.crossover(regime_rows(lambda n: 0.05), "t", "g", "d")
    assert cx.regime == "discriminative_always"
    assert (cx.per_size["better"] == "discriminative").all()
    assert math.isnan(cx.n_star) and cx.n_significant == SIZES[0]
    assert cx.describe() == "no crossover in range (10–1280): d better at every size"


def test_regime_generative_always():
    cx = curves.crossover(regime_rows(lambda n: -0.05 if n < 300 else 0.0), "t", "g", "d")
    assert cx.regime == "generative_always"
    assert math.isnan(cx.n_star) and math.isnan(cx.n_significant)
    assert cx.describe().startswith("no crossover in range (10–1280): g better at n=10, ")


def test_regime_no_difference_with_identical_and_symmetric_differences():
    rng = np.random.default_rng(10)
    err = rng.integers(8, 20, (len(SIZES), 20)) / 64  # dyadic: differences below are exact
    cx = curves.crossover(
        frame({"g": ("generative", err), "d": ("discriminative", err)}, SIZES), "t", "g", "d"
    )
    assert cx.regime == "no_difference" and (cx.per_size["p_value"] == 1.0).all()
    assert (cx.per_size["better"] == "tie").all() and math.isnan(cx.n_star)
    sym = np.tile([1 / 64, -1 / 64], 10)  # differences symmetric about zero at every size
    df = frame({"g": ("generative", err + sym), "d": ("discriminative", err)}, SIZES)
    cx = curves.crossover(df, "t", "g", "d")
    assert cx.regime == "no_difference"
    np.testing.assert_allclose(cx.per_size["p_value"], sps.ttest_1samp(sym, 0.0).pvalue)
    assert cx.describe().startswith("no significant difference between g and d")


def test_regime_mixed_when_generative_overtakes():
    cx = curves.crossover(regime_rows(lambda n: 0.05 if n < 100 else -0.05), "t", "g", "d")
    assert cx.regime == "mixed" and math.isnan(cx.n_star)


def test_crossover_rejects_unknown_model_and_duplicate_cells():
    df, _, _ = crossing_rows(seeds=5)
    with pytest.raises(ValueError, match="'nope'"):
        curves.crossover(df, "t", "nope", "logreg")
    with pytest.raises(DuplicateCellError):
        curves.crossover(pd.concat([df, df.iloc[:1]]), "t", "gnb", "logreg")


# ------------------------------------------------------------------ tables


def test_crossover_table_default_pairs_by_paradigm_and_explicit_pairs():
    df, _, _ = crossing_rows(seeds=20)
    other = df.assign(task="u")
    hybrid = df[df.model == "gnb"].assign(model="jem", paradigm="hybrid")
    extra = df[df.model == "gnb"].assign(model="lda", accuracy=lambda x: x.accuracy - 0.01)
    rows = pd.concat([df, other, hybrid, extra[extra.task == "t"]], ignore_index=True)
    table = curves.crossover_table(rows, n_boot=300)
    assert list(zip(table.task, table.generative, table.discriminative, strict=True)) == [
        ("t", "gnb", "logreg"),
        ("t", "lda", "logreg"),
        ("u", "gnb", "logreg"),
    ]
    single = curves.crossover(rows, "t", "lda", "logreg", n_boot=300)
    got = table.iloc[1]
    assert got["n_star"] == single.n_star and got["regime"] == single.regime
    assert got["description"] == single.describe()
    explicit = curves.crossover_table(rows, pairs=[("lda", "logreg")], n_boot=300)
    assert explicit["task"].tolist() == ["t"]  # lda has no rows on task u


def test_crossover_table_is_fast_enough():
    rng = np.random.default_rng(11)
    sizes = np.geomspace(10, 2000, 10).round().astype(int)
    models = {f"gen{i}": ("generative", power(0.1 + 0.01 * i, 0.5, 1.0)) for i in range(4)}
    models |= {f"disc{i}": ("discriminative", power(0.02, 2.0 + i, 0.5)) for i in range(2)}
    tasks = []
    for t in range(5):
        errors = {m: (p, noisy(f, sizes, 100, 0.01, rng)) for m, (p, f) in models.items()}
        tasks.append(frame(errors, sizes, task=f"task{t}"))
    df = pd.concat(tasks, ignore_index=True)
    start = time.perf_counter()
    table = curves.crossover_table(df)
    elapsed = time.perf_counter() - start
    assert len(table) == 5 * 8
    assert elapsed < 10.0


def test_curve_summary_recovers_asymptotes_and_aulc():
    rng = np.random.default_rng(12)
    gen, disc = power(0.10, 0.5, 1.0), power(0.03, 1.5, 0.5)
    df = frame(
        {
            "gnb": ("generative", noisy(gen, SIZES, 30, 0.01, rng)),
            "logreg": ("discriminative", noisy(disc, SIZES, 30, 0.01, rng)),
        },
        SIZES,
    )
    s = curves.curve_summary(df, eps=0.02, n_boot=100, n_boot_aulc=500).set_index("model")
    for model, c in (("gnb", 0.10), ("logreg", 0.03)):
        assert s.loc[model, "c_lo"] <= c <= s.loc[model, "c_hi"]
        assert s.loc[model, "converged"]
        assert s.loc[model, "aulc_lo"] <= s.loc[model, "aulc"] <= s.loc[model, "aulc_hi"]
    assert s.loc["logreg", "n_within_lo"] <= (1.5 / 0.02) ** 2 <= s.loc["logreg", "n_within_hi"]
    mean = curves.bootstrap_curves(df).set_index(["model", "n_train"])["mean"]
    assert s.loc["gnb", "aulc"] == pytest.approx(curves.aulc(SIZES, mean.loc["gnb"].to_numpy()))
    assert s.loc["gnb", "at_largest"] == pytest.approx(mean.loc[("gnb", SIZES[-1])])
    assert s.loc["gnb", "largest_n"] == SIZES[-1]
    assert (s["n_sizes"] == len(SIZES)).all() and (s["n_seeds"] == 30).all()


def test_crossing_below_the_smallest_size_is_not_called_a_crossover():
    """Discriminative better in the mean at every size but significant only at large n: the
    mean curve never crosses zero in range, so there is no crossover to report (issue 20:
    "crossover" only where n* lies in the tested range)."""
    rng = np.random.default_rng(11)
    base = 0.2 + rng.normal(0, 0.03, (len(SIZES), 40))
    delta = np.where(np.asarray(SIZES) < 300, 0.0005, 0.05)[:, None]
    noise = rng.normal(0, 0.02, base.shape) * (np.asarray(SIZES) < 300)[:, None]
    gen = base + delta + noise - noise.mean(axis=1, keepdims=True)  # mean diff exactly delta
    cx = curves.crossover(
        frame({"g": ("generative", gen), "d": ("discriminative", base)}, SIZES), "t", "g", "d"
    )
    assert cx.regime == "discriminative_always" and cx.n_significant >= 300
    assert math.isnan(cx.n_star) and math.isnan(cx.n_star_lo)
    assert "no crossover in range" in cx.describe()


def test_crossing_above_the_largest_size_is_not_called_a_crossover():
    """Discriminative significantly better in the middle, tied (mean difference 0) at the
    largest size: the curve does not cross inside the range, so no n* is printed."""
    rng = np.random.default_rng(12)
    base = 0.2 + rng.normal(0, 0.03, (len(SIZES), 40))
    delta = np.where(SIZES < 100, -0.0005, np.where(SIZES < 1000, 0.05, 0.0))[:, None]
    noise = rng.normal(0, 0.01, base.shape)
    gen = base + delta + noise - noise.mean(axis=1, keepdims=True)
    cx = curves.crossover(
        frame({"g": ("generative", gen), "d": ("discriminative", base)}, SIZES), "t", "g", "d"
    )
    assert cx.per_size["better"].iloc[-2] == "discriminative"
    assert cx.regime == "mixed" and math.isnan(cx.n_star)
    text = cx.describe()
    assert "n*" not in text and text.startswith("no crossover in range (10–1280): d better at n=")
    assert text.endswith("does not favour it at the largest size")


def test_point_estimate_lies_in_its_interval_for_noisy_crossings():
    checked = 0
    for seed in range(8):
        df, _, _ = crossing_rows(seeds=8, sd=0.05, seed=seed)
        cx = curves.crossover(df, "t", "gnb", "logreg", n_boot=500)
        if cx.regime == "crossover":
            checked += 1
            assert cx.n_star_lo <= cx.n_star <= cx.n_star_hi
    assert checked >= 4


@pytest.mark.parametrize(
    ("n", "text"), [(0.0, "<10"), (math.inf, ">1280"), (87.4, "87"), (math.nan, "—")]
)
def test_format_n_star(n, text):
    assert curves.format_n_star(n, 10, 1280) == text


# ------------------------------------------------------------------ fits that know their limits


def pool_curves(c, a, b, seeds, sd, n_test, rng, sizes=SIZES):
    """Error curves c + a n^-b measured the way a run measures them: seed noise that shrinks
    with n and vanishes at the largest size (every seed trains on the whole pool), and one
    test-set offset shared by every cell (binomial noise of the fixed test set)."""
    sizes = np.asarray(sizes, dtype=float)
    offset = rng.normal(0.0, math.sqrt(c * (1 - c) / n_test))
    scale = np.where(sizes < sizes[-1], sd * (sizes / sizes[0]) ** -0.5, 0.0)
    return (
        power(c, a, b)(sizes)[:, None]
        + offset
        + rng.normal(0, 1, (sizes.size, seeds)) * scale[:, None]
    )


def test_asymptote_interval_covers_truth_on_simulated_pool_curves():
    """Known asymptote plus seed and test-set noise, a curve that flattens inside the tested
    range: the interval with the test-set term covers the truth in at least 90% of the
    repetitions (or the fit is flagged); the seed bootstrap alone, which has zero width at
    n = pool, misses it far more often."""
    c_true, n_test = 0.16, 5000
    honest = naive = 0
    reps = 30
    for rep in range(reps):
        rng = np.random.default_rng(500 + rep)
        err = pool_curves(c_true, 0.9, 1.0, seeds=10, sd=0.03, n_test=n_test, rng=rng)
        df = frame({"m": ("discriminative", err)}, SIZES)
        row = curves.curve_summary(df, n_boot=100, n_boot_aulc=100, n_test={"t": n_test}).iloc[0]
        honest += (row["c_lo"] <= c_true <= row["c_hi"]) or not row["reliable"]
        fit = curves.fit_power_law(SIZES, err, n_boot=100, seed=rep)
        naive += fit.c_lo <= c_true <= fit.c_hi
    assert honest >= 0.9 * reps
    assert naive <= 0.8 * reps


def test_bayes_error_bounds_the_asymptote_from_below():
    """A curve still falling steeply at the largest size would extrapolate below the Bayes
    error; the fit stops at the bound, says so, and the extrapolation is flagged."""
    rng = np.random.default_rng(8)
    err = noisy(power(0.05, 1.0, 0.3), SIZES, 10, 0.005, rng)
    df = frame({"m": ("discriminative", err)}, SIZES).assign(bayes_accuracy=0.85)
    row = curves.curve_summary(df, n_boot=50, n_boot_aulc=50).iloc[0]
    assert row["c_floor"] == pytest.approx(0.15)
    assert row["c"] >= 0.15 - 1e-12 and row["c_lo"] >= 0.15 - 1e-12
    without = curves.curve_summary(df.drop(columns="bayes_accuracy"), n_boot=50, n_boot_aulc=50)
    assert without.iloc[0]["c_floor"] == 0.0 and without.iloc[0]["c"] < 0.15


def test_extrapolated_fits_say_so_instead_of_printing_a_number():
    """Still far from flat at the largest size: "n to c+eps" lies beyond the tested sizes."""
    rng = np.random.default_rng(9)
    err = noisy(power(0.0, 0.5, 0.15), SIZES, 10, 0.005, rng)
    row = curves.curve_summary(frame({"m": ("discriminative", err)}, SIZES), n_boot=50).iloc[0]
    assert row["flag"] == "extrapolated" and not row["reliable"]
    assert row["n_within"] > SIZES[-1]
    text = curves.format_n_within(row)
    assert text == "> 1280 (beyond tested sizes)"
    assert curves.format_asymptote(row).endswith(" †")
    # a flat curve is reliable and its numbers lie in the tested range
    flat = noisy(power(0.1, 0.8, 1.5), SIZES, 10, 0.002, rng)
    ok = curves.curve_summary(frame({"m": ("generative", flat)}, SIZES), n_boot=50).iloc[0]
    assert ok["flag"] == "" and ok["n_within"] <= SIZES[-1]
    assert "beyond" not in curves.format_n_within(ok)


def test_curve_that_rises_again_is_a_poor_fit():
    """Falls, then rises by 0.03 over the larger sizes (as naive Bayes does on gauss_corr)."""
    rng = np.random.default_rng(10)
    shape = power(0.35, 1.0, 0.8)(SIZES) + np.where(SIZES > 200, 0.015 * np.log2(SIZES / 200), 0)
    err = shape[:, None] + rng.normal(0, 0.002, (len(SIZES), 10))
    row = curves.curve_summary(frame({"m": ("generative", err)}, SIZES), n_boot=50).iloc[0]
    assert row["flag"] in ("poor fit", "extrapolated") and not row["reliable"]


def test_n_to_best_matches_a_direct_computation():
    rng = np.random.default_rng(12)
    err = noisy(power(0.1, 1.0, 0.7), SIZES, 12, 0.02, rng)
    best, n_best, lo, hi = curves.n_to_best(SIZES, err, eps=0.01, n_boot=300)
    means = err.mean(axis=1)
    assert best == pytest.approx(means.min())
    assert n_best == SIZES[np.flatnonzero(means <= means.min() + 0.01)[0]]
    assert lo <= n_best <= hi and lo in SIZES and hi in SIZES
    _, _, lo1, hi1 = curves.n_to_best(SIZES, err[:, :1])
    assert math.isnan(lo1) and math.isnan(hi1)


def naive_bayes_error(name: str) -> float:
    """Population error of the naive-Bayes rule (true means, true diagonal variances) on a
    synthetic task: the asymptote of gnb / gnb_shared, exact through the mixture."""
    from gdbench.tasks import synthetic

    mix = synthetic.mixture(name)
    var = np.diag(mix.covs[0])
    w = (mix.means[1] - mix.means[0]) / var
    c = -0.5 * w @ (mix.means[0] + mix.means[1])
    return 1.0 - mix.linear_rule_accuracy(w, c)


def test_reference_run_asymptotes_cover_known_limits_or_are_flagged():
    """The committed ngjordan reference run: on gauss_nb every model but bnb has the Bayes
    error as its asymptote; on gauss_corr logistic regression and LDA have the Bayes error and
    the two Gaussian naive Bayes models the naive-Bayes limit. Each interval covers its model's
    limit, or the fit is flagged unreliable."""
    from gdbench import results

    run = Path(__file__).resolve().parents[1] / "results" / "reference" / "ngjordan"
    if not (run / "manifest.json").is_file():
        pytest.fail(f"reference run missing: {run}")
    df = results.load([run])
    df = df[df["task"].isin(["gauss_nb", "gauss_corr"]) & (df["model"] != "bnb")]
    manifest = results.read_manifest(run)
    n_test = {t: manifest["tasks"][t]["test_size"] for t in ("gauss_nb", "gauss_corr")}
    fits = curves.curve_summary(df, n_boot=100, n_boot_aulc=100, n_test=n_test)
    nb_limit = naive_bayes_error("gauss_corr")
    assert nb_limit == pytest.approx(0.375, abs=0.01)  # the task's documented 0.625 accuracy
    checked = 0
    for _, r in fits.iterrows():
        bayes = 1.0 - df.loc[df["task"] == r["task"], "bayes_accuracy"].iloc[0]
        truth = nb_limit if (r["task"], r["model"]) in {
            ("gauss_corr", "gnb"), ("gauss_corr", "gnb_shared")
        } else bayes  # fmt: skip
        assert r["c"] >= bayes - 1e-12  # never below the Bayes error
        assert (r["c_lo"] <= truth <= r["c_hi"]) or not r["reliable"], (r["task"], r["model"])
        checked += 1
    assert checked == 10


def test_n_within_text_never_leaves_the_tested_sizes():
    row = {
        "flag": "", "smallest_n": 6.0, "largest_n": 200.0, "n_within": 14.2,
        "n_within_lo": 3.82, "n_within_hi": 9.3e16,
    }  # fmt: skip
    assert curves.format_n_within(row) == "14 (<6–>200)"
    assert curves.format_n_within({**row, "n_within": 2.0}) == "< 6 (below tested sizes)"
    assert curves.format_n_within({**row, "n_within": 9.29e16}) == "> 200 (beyond tested sizes)"
    assert curves.format_n_within({**row, "flag": "no fit"}) == "—"
    nan = math.nan
    assert curves.format_n_within({**row, "n_within_lo": nan, "n_within_hi": nan}) == "14"
