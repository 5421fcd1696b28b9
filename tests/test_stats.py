"""gdbench.reports.stats against independent references: the paired t-test (scipy), Holm (its
definition), the intervals with test-set noise (statsmodels' Wilson interval at n = pool, coverage
in simulations with known truth) and the paired tests on per-example outcomes (statsmodels'
McNemar test, type-I error under simulated nulls)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from gdbench.reports.stats import (
    compare_to_best,
    holm,
    mean_interval,
    paired_p,
    paired_test,
    summarize,
)
from gdbench.results.schema import pack_correct


@pytest.mark.fast
def test_paired_p_is_the_paired_t_test():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 20):
        a = rng.normal(0.8, 0.05, n)
        b = a + rng.normal(0.01, 0.02, n)
        d = b - a
        assert paired_p(d) == pytest.approx(sps.ttest_rel(b, a).pvalue, rel=1e-12)
        # closed form: t = mean / (s / sqrt(n)), two-sided tail of Student t with n - 1 df
        t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
        assert paired_p(list(d)) == pytest.approx(2 * sps.t.sf(abs(t), n - 1), rel=1e-10)


def test_paired_p_edge_cases():
    assert math.isnan(paired_p([]))
    assert math.isnan(paired_p([0.3]))
    assert math.isnan(paired_p([0.0]))  # a single pair is untestable even when it is zero
    assert paired_p([0.0, 0.0, 0.0, 0.0, 0.0]) == 1.0
    # the same shift on every seed (e.g. n = pool: one fit repeated) is no evidence: never 0
    assert math.isnan(paired_p(np.full(5, -0.01)))
    assert math.isnan(paired_p([0.1, np.inf, 0.2]))
    assert math.isnan(paired_p([0.1, np.nan, 0.2]))
    with pytest.raises(ValueError, match="1-D"):
        paired_p(np.zeros((2, 3)))


def test_paired_p_detects_five_seeds_worse_by_varying_amounts_where_wilcoxon_cannot():
    d = -np.array([0.010, 0.014, 0.008, 0.012, 0.016])
    # the smallest exact two-sided Wilcoxon p with 5 pairs is 2 / 2**5
    assert sps.wilcoxon(d).pvalue == pytest.approx(2 / 2**5)
    assert paired_p(d) < 0.01


def test_paired_p_is_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    p = np.array([paired_p(rng.normal(0.0, 0.02, 5)) for _ in range(2000)])
    rate = float(np.mean(p < 0.05))
    # binomial(2000, 0.05): sd ~ 0.0049; allow about 4 sd
    assert abs(rate - 0.05) < 0.02
    assert sps.kstest(p, "uniform").pvalue > 1e-3


def _holm_reference(p: list[float]) -> list[float]:
    """Holm by its definition: adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
    return out


def test_holm_against_hand_computation_and_definition():
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04)
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    rng = np.random.default_rng(5)
    for m in (1, 2, 3, 7):
        p = list(rng.uniform(0, 0.2, m))
        assert list(holm(p)) == pytest.approx(_holm_reference(p))
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).shape == (0,)


def test_holm_rejections_are_the_step_down_procedure():
    """Reject H_(1..k) where k is the first sorted index with p_(k) > alpha / (m - k + 1)."""
    alpha = 0.05
    for p in itertools.product([0.004, 0.013, 0.02, 0.03, 0.2], repeat=3):
        order = np.argsort(p, kind="stable")
        reject = np.zeros(3, dtype=bool)
        for rank, i in enumerate(order):
            if p[i] > alpha / (3 - rank):
                break
            reject[i] = True
        assert (holm(p) < alpha).tolist() == reject.tolist()  # no p * k lands on alpha exactly


# --- intervals with the test set's sampling --------------------------------------------------


def _rows(model: str, correct: np.ndarray, n_train: int = 100, **extra) -> pd.DataFrame:
    """Result rows of one model: one per seed, from its [S, n_test] outcomes."""
    s, n = correct.shape
    return pd.DataFrame(
        {
            "task": "t",
            "model": model,
            "paradigm": "discriminative",
            "n_train": n_train,
            "seed": np.arange(s),
            "status": "ok",
            "accuracy": correct.mean(axis=1),
            "n_test": n,
            "test_correct": [pack_correct(c) for c in correct],
            **extra,
        }
    )


@pytest.mark.parametrize("hits, n", [(168, 171), (171, 171), (0, 38), (25, 38), (1, 50)])
def test_accuracy_interval_at_pool_is_the_wilson_interval_of_the_test_set(hits, n):
    rng = np.random.default_rng(hits)
    one = np.zeros(n, dtype=bool)
    one[rng.choice(n, hits, replace=False)] = True
    rows = _rows("m", np.tile(one, (20, 1)))  # 20 seeds, one training set: identical outcomes
    got = summarize(rows, ["accuracy"], by=("model",)).iloc[0]
    lo, hi = proportion_confint(hits, n, alpha=0.05, method="wilson")
    assert got["accuracy_lo"] == pytest.approx(lo, abs=1e-12)
    assert got["accuracy_hi"] == pytest.approx(hi, abs=1e-12)
    assert got["accuracy_hi"] - got["accuracy_lo"] > 0  # never +- 0
    assert bool(got["accuracy_test"])


def _simulate(rng, s: int, n: int, seed_sd: float) -> np.ndarray:
    """[S, n] outcomes with known mean 0.5: example difficulty q_i ~ U(0.1, 0.9) (the test
    set's sampling) plus a training-set effect a_s ~ U(-seed_sd, seed_sd) per seed."""
    q = rng.uniform(0.1, 0.9, n)
    a = rng.uniform(-seed_sd, seed_sd, s)
    return rng.random((s, n)) < q[None, :] + a[:, None]


@pytest.mark.parametrize("s, n, seed_sd", [(5, 150, 0.08), (20, 60, 0.05), (3, 300, 0.0)])
def test_accuracy_interval_covers_the_truth_in_simulation(s, n, seed_sd):
    rng = np.random.default_rng(s * n)
    hits = 0
    reps = 400
    for _ in range(reps):
        c = _simulate(rng, s, n, seed_sd)
        r = mean_interval(c.mean(axis=1), "accuracy", correct=c, n_test=n)
        assert 0.0 <= r["lo"] <= r["mean"] <= r["hi"] <= 1.0
        hits += r["lo"] <= 0.5 <= r["hi"]
    # 95% nominal (binomial sd of the rate ~ 0.011 with 400 replicates)
    assert 0.92 <= hits / reps <= 0.98


def test_interval_of_a_mean_loss_covers_the_truth_in_simulation():
    # per-example losses l_si = g_i + a_s + e_si, g ~ Exp(1) (test sampling), a_s ~ N(0, 0.1):
    # the true mean loss is 1.
    rng = np.random.default_rng(5)
    s, n, hits, reps = 5, 100, 0, 400
    for _ in range(reps):
        loss = rng.exponential(1.0, n)[None, :] + rng.normal(0, 0.1, (s, 1))
        loss = loss + rng.normal(0, 0.3, (s, n))
        r = mean_interval(loss.mean(axis=1), "nll", sd=loss.std(axis=1, ddof=1), n_test=n)
        hits += r["lo"] <= 1.0 <= r["hi"]
    assert 0.92 <= hits / reps <= 0.995


def test_seeds_only_rows_of_older_runs_keep_an_interval_over_seeds():
    acc = np.array([0.90, 0.92, 0.95])
    r = mean_interval(acc, "nll")
    half = sps.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
    assert r["hi"] - r["mean"] == pytest.approx(half)
    assert r["test"] == 0.0
    r = mean_interval(np.full(4, 0.97), "accuracy")  # one fit repeated, no test information
    assert math.isnan(r["lo"]) and math.isnan(r["hi"])  # no interval rather than +- 0
    r = mean_interval(np.array([0.99, 0.999, 1.0]), "accuracy")
    assert 0.0 <= r["lo"] and r["hi"] <= 1.0


# --- paired tests on per-example outcomes ----------------------------------------------------


def test_one_training_set_uses_mcnemars_exact_test():
    rng = np.random.default_rng(2)
    a = rng.random(171) < 0.96
    b = a.copy()
    flip = rng.choice(171, 6, replace=False)
    b[flip] = ~b[flip]
    p, name = paired_test(
        _rows("a", np.tile(a, (10, 1))), _rows("b", np.tile(b, (10, 1))), "accuracy"
    )
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert name == "mcnemar"
    assert p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)


def test_breast_cancer_at_pool_three_points_is_not_significant():
    # the case: 0.959 vs 0.977 on 171 test points, the same fit on every seed
    a = np.ones(171, dtype=bool)
    b = np.ones(171, dtype=bool)
    a[:7] = False
    b[:4] = False
    p, name = paired_test(
        _rows("a", np.tile(a, (100, 1))), _rows("b", np.tile(b, (100, 1))), "accuracy"
    )
    assert name == "mcnemar"
    assert p == pytest.approx(0.25)  # 3 discordant pairs all one way: 2 / 2^3
    assert (
        paired_test(_rows("a", np.tile(a, (5, 1))), _rows("b", np.tile(a, (5, 1))), "accuracy")[0]
        == 1.0
    )


def test_paired_accuracy_test_holds_its_level_under_the_null():
    rng = np.random.default_rng(8)
    s, n, reps = 5, 120, 600
    pvalues = []
    for _ in range(reps):
        q = rng.uniform(0.1, 0.9, n)  # both models find the same examples hard
        ca = rng.random((s, n)) < q + rng.uniform(-0.05, 0.05, (s, 1))
        cb = rng.random((s, n)) < q + rng.uniform(-0.05, 0.05, (s, 1))
        p, name = paired_test(_rows("a", ca), _rows("b", cb), "accuracy")
        assert name == "two-level"
        pvalues.append(p)
    rate = float(np.mean(np.array(pvalues) < 0.05))
    assert rate <= 0.075  # nominal 0.05; binomial sd ~ 0.009
    assert rate >= 0.025  # not conservative: the interaction is not counted twice


def test_paired_accuracy_test_detects_a_real_difference():
    rng = np.random.default_rng(9)
    q = rng.uniform(0.1, 0.8, 300)
    ca = rng.random((5, 300)) < q
    cb = rng.random((5, 300)) < q + 0.1
    assert paired_test(_rows("a", ca), _rows("b", cb), "accuracy")[0] < 0.01


def test_paired_loss_test_holds_its_level_under_the_null():
    rng = np.random.default_rng(10)
    s, n, reps = 5, 100, 600
    pvalues = []
    for _ in range(reps):
        g = rng.exponential(1.0, n)
        la = g + rng.normal(0, 0.1, (s, 1)) + rng.normal(0, 0.3, (s, n))
        lb = g + rng.normal(0, 0.1, (s, 1)) + rng.normal(0, 0.3, (s, n))
        c = np.ones((s, n), dtype=bool)
        ra = _rows("a", c, nll=la.mean(1), nll_sd=la.std(1, ddof=1))
        rb = _rows("b", c, nll=lb.mean(1), nll_sd=lb.std(1, ddof=1))
        p, name = paired_test(ra, rb, "nll")
        assert name == "two-level"
        pvalues.append(p)
    assert float(np.mean(np.array(pvalues) < 0.05)) <= 0.075


def test_compare_to_best_holm_corrects_paired_tests():
    rng = np.random.default_rng(4)
    q = rng.uniform(0.3, 0.95, 200)
    outcomes = {
        m: rng.random((4, 200)) < q + shift for m, shift in (("a", 0.05), ("b", 0.0), ("c", -0.2))
    }
    rows = pd.concat([_rows(m, c) for m, c in outcomes.items()], ignore_index=True)
    means = rows.groupby("model")["accuracy"].mean()
    adjusted, names = compare_to_best(rows, "accuracy", means, higher=True)
    assert set(adjusted) == {"b", "c"}
    raw = [paired_test(rows[rows.model == "a"], rows[rows.model == m], "accuracy")[0] for m in "bc"]
    assert [adjusted["b"], adjusted["c"]] == pytest.approx(list(holm(raw)))
    assert adjusted["c"] < 0.05
    assert names == {"b": "two-level", "c": "two-level"}
