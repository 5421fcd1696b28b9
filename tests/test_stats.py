"""stats.paired_p (paired t-test) and holm against scipy, hand computation and simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from reports.stats import holm, paired_p


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
    assert paired_p(np.full(5, -0.01)) == 0.0  # the same shift on every seed, zero variance
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
