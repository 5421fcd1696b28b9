"""The family verdict (reports.verdict) against scipy and simulated curves of known truth."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gdbench.reports import verdict

ROOT = Path(__file__).resolve().parents[1]
SIZES = np.array([10, 20, 40, 80, 160, 320, 640, 1280])


def score_rows(scores: pd.DataFrame, sizes=(10, 20, 40), seeds: int = 3) -> pd.DataFrame:
    """Rows whose mean error per (task, model) is `scores` (tasks x models) at every size."""
    out = []
    for task, row in scores.iterrows():
        for model, err in row.items():
            for n in sizes:
                for seed in range(seeds):
                    out.append(
                        {
                            "task": task,
                            "model": model,
                            "paradigm": "generative" if model.startswith("g") else "discriminative",
                            "n_train": n,
                            "seed": seed,
                            "accuracy": 1.0 - err,
                            "status": "ok",
                        }
                    )
    return pd.DataFrame(out)


def random_scores(n_tasks: int, models=("d1", "d2", "g1", "g2"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.3, (n_tasks, 1))
    shift = np.array([0.0, 0.01, 0.03, 0.05])[: len(models)]
    err = base + shift + rng.normal(0, 0.015, (n_tasks, len(models)))
    return pd.DataFrame(err, index=[f"t{i}" for i in range(n_tasks)], columns=list(models))


# ------------------------------------------------------------------ ranks and Friedman


def test_autorank_friedman_matches_scipy_and_demsar_critical_difference():
    scores = random_scores(8)
    df = score_rows(scores)
    test = verdict.rank_test(df, "full pool")
    table = test.scores.loc[scores.index, scores.columns]
    np.testing.assert_allclose(table.to_numpy(), scores.to_numpy(), atol=1e-12)
    # Friedman: scipy on the same table
    ref = sps.friedmanchisquare(*scores.T.to_numpy())
    assert test.friedman_p == pytest.approx(ref.pvalue, rel=1e-9)
    assert test.friedman_stat == pytest.approx(ref.statistic, rel=1e-9)
    # mean ranks: scipy's rankdata per task (1 = lowest error)
    ranks = np.mean([sps.rankdata(r) for r in scores.to_numpy()], axis=0)
    expected = pd.Series(ranks, index=scores.columns)
    for model in scores.columns:
        assert test.mean_ranks[model] == pytest.approx(expected[model])
    assert list(test.mean_ranks.index) == list(expected.sort_values().index)
    # Nemenyi critical difference, Demšar (2006) eq. for k models over N data sets
    k, n = scores.shape[1], scores.shape[0]
    q = sps.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    assert test.posthoc == "nemenyi"
    assert test.cd == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-3)
    assert test.note == "" and test.left_out == ()


def test_few_tasks_give_ranks_and_friedman_without_posthoc():
    scores = random_scores(3)
    test = verdict.rank_test(score_rows(scores), "smallest sizes")
    ref = sps.friedmanchisquare(*scores.T.to_numpy())
    assert test.friedman_p == pytest.approx(ref.pvalue, rel=1e-9)
    assert test.posthoc == "" and math.isnan(test.cd)
    assert "at least 5" in test.note
    assert verdict.cd_diagram(test) is None


def test_models_missing_on_a_task_are_left_out_and_named():
    scores = random_scores(6)
    df = score_rows(scores)
    df = df[~((df["model"] == "g2") & (df["task"] == "t0"))]
    test = verdict.rank_test(df, "middle sizes")
    assert test.left_out == ("g2",)
    assert "g2" not in test.mean_ranks.index
    ref = sps.friedmanchisquare(*scores.drop(columns="g2").T.to_numpy())
    assert test.friedman_p == pytest.approx(ref.pvalue, rel=1e-9)


def test_size_regimes_split_each_tasks_sizes_by_position():
    rows = score_rows(random_scores(2), sizes=tuple(range(10, 130, 10)))  # 12 sizes
    rows = pd.concat([rows, score_rows(random_scores(1).rename(index={"t0": "u"}), (5, 7, 9, 11))])
    regimes = verdict.size_regimes(rows)
    t0 = regimes[regimes["task"] == "t0"].groupby("regime")["n_train"].apply(list)
    assert t0["smallest sizes"] == [10, 20, 30, 40]
    assert t0["middle sizes"] == [50, 60, 70, 80]
    assert t0["full pool"] == [120]
    u = regimes[regimes["task"] == "u"].groupby("regime")["n_train"].apply(list)
    assert u["smallest sizes"] == [5, 7] and u["middle sizes"] == [9] and u["full pool"] == [11]


def test_regime_scores_average_the_regime_sizes():
    rng = np.random.default_rng(3)
    rows = []
    for task in ("a", "b"):
        for model in ("m1", "m2"):
            for n in (10, 20, 40, 80, 160, 320):
                for seed in range(4):
                    rows.append((task, model, "generative", n, seed, rng.uniform(0.5, 1.0), "ok"))
    df = pd.DataFrame(
        rows, columns=["task", "model", "paradigm", "n_train", "seed", "accuracy", "status"]
    )
    got = verdict.regime_scores(df, "smallest sizes")
    small = df[df["n_train"].isin([10, 20])]
    want = (
        (1 - small.groupby(["task", "model", "n_train"])["accuracy"].mean())
        .groupby(["task", "model"])
        .mean()
    )
    for (task, model), value in want.items():
        assert got.loc[task, model] == pytest.approx(value)


def test_cd_diagram_is_drawn_without_pyplot_figures_left_open():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    test = verdict.rank_test(score_rows(random_scores(7)), "full pool")
    fig = verdict.cd_diagram(test)
    assert fig is not None and fig.axes
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"d1", "d2", "g1", "g2", "CD"} <= texts
    assert plt.get_fignums() == before


# ------------------------------------------------------------------ Ng & Jordan's claims


def curves_rows(gen, disc, seeds=20, sd=0.01, rng=None, test_sd=0.0, sizes=SIZES):
    """Rows of a generative model `gen` and a discriminative `disc` (functions of n) with
    seed noise (sd, 0 at the largest size: the whole pool) and one shared test-set offset."""
    rng = rng or np.random.default_rng(0)
    out = []
    offset = rng.normal(0, test_sd)
    for model, curve, paradigm in (("g", gen, "generative"), ("d", disc, "discriminative")):
        for i, n in enumerate(sizes):
            noise = rng.normal(0, sd if i < len(sizes) - 1 else 0.0, seeds)
            for seed in range(seeds):
                err = float(np.clip(curve(n) + offset + noise[seed], 0, 1))
                out.append((model, paradigm, int(n), seed, 1.0 - err))
    df = pd.DataFrame(out, columns=["model", "paradigm", "n_train", "seed", "accuracy"])
    return df.assign(task="t", status="ok")


def fast_gen(n):
    return 0.20 + 0.6 * np.asarray(n, float) ** -1.2


def slow_disc(n):
    return 0.10 + 0.8 * np.asarray(n, float) ** -0.5


def test_claims_supported_when_generative_is_faster_and_discriminative_lower():
    df = curves_rows(fast_gen, slow_disc, rng=np.random.default_rng(1))
    table = verdict.claims_table(df, [("g", "d", "test")], n_test={"t": 5000})
    (row,) = table.to_dict("records")
    assert row["faster"] == "supported" and row["lower"] == "supported"
    # the evidence is the numbers: n to within 0.01 of the best, the difference at the pool
    mean = (1 - df.groupby(["model", "n_train"])["accuracy"].mean()).unstack("n_train")
    first = {m: min(n for n, v in mean.loc[m].items() if v <= mean.loc[m].min() + 0.01)
             for m in ("g", "d")}  # fmt: skip
    assert (row["n_gen"], row["n_disc"]) == (first["g"], first["d"])
    assert row["ratio"] == pytest.approx(first["d"] / first["g"])
    assert row["diff"] == pytest.approx(fast_gen(1280) - slow_disc(1280), abs=1e-9)
    assert row["diff_lo"] > 0
    assert (
        f"at n=1280, error generative − discriminative = {row['diff']:+.3f}"
        in row["lower_evidence"]
    )


def test_claims_not_supported_when_the_truth_is_the_opposite():
    """The discriminative model reaches its (higher) asymptote faster and stays worse."""

    def disc(n):
        return 0.25 + 0.6 * np.asarray(n, float) ** -1.2

    def gen(n):
        return 0.10 + 0.8 * np.asarray(n, float) ** -0.5

    df = curves_rows(gen, disc, rng=np.random.default_rng(2))
    (row,) = verdict.claims_table(df, [("g", "d")], n_test={"t": 5000}).to_dict("records")
    assert row["faster"] == "not supported" and row["lower"] == "not supported"


def test_claim_b_is_not_supported_by_noise_alone():
    """Identical true curves: claim (b) must not come out supported by chance (test-set noise
    included), and with a huge test set, levelled curves are 'equal within eps'."""
    supported = 0
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        df = curves_rows(fast_gen, fast_gen, seeds=10, sd=0.02, rng=rng, test_sd=0.0)
        (row,) = verdict.claims_table(df, [("g", "d")], n_test={"t": 1000}, n_boot=500).to_dict(
            "records"
        )
        supported += row["lower"] == "supported"
    assert supported <= 4  # 95% intervals: about 1 expected in 40
    df = curves_rows(fast_gen, fast_gen, seeds=10, sd=0.02, rng=np.random.default_rng(7))
    (row,) = verdict.claims_table(df, [("g", "d")], n_test={"t": 10**6}).to_dict("records")
    assert row["lower"] == "not supported"


def test_claim_b_without_test_size_says_so_and_pairs_absent_are_skipped():
    df = curves_rows(fast_gen, slow_disc, rng=np.random.default_rng(4))
    (row,) = verdict.claims_table(df, [("g", "d"), ("g", "nope")]).to_dict("records")
    assert "seeds only: test-set size unknown" in row["lower_evidence"]


def test_claim_b_is_inconclusive_while_the_discriminative_curve_still_falls():
    """Generative lower at the largest size, but the discriminative curve is still steep."""

    def disc(n):
        return 0.02 + 3.0 * np.asarray(n, float) ** -0.5

    def gen(n):
        return 0.07 + 0.0 * np.asarray(n, float)

    df = curves_rows(gen, disc, rng=np.random.default_rng(5))
    (row,) = verdict.claims_table(df, [("g", "d")], n_test={"t": 5000}).to_dict("records")
    assert row["diff_hi"] < 0 and row["lower"] == "inconclusive"
    assert "still falling" in row["lower_evidence"]


def test_claim_a_ratio_interval_covers_the_true_ratio():
    """Over repetitions, the bootstrap interval of n_disc / n_gen covers the ratio of the
    noiseless curves in most of them."""
    sizes = SIZES.astype(float)
    truth = (
        sizes[np.argmax(slow_disc(sizes) <= slow_disc(sizes).min() + 0.01)]
        / sizes[np.argmax(fast_gen(sizes) <= fast_gen(sizes).min() + 0.01)]
    )
    covered = 0
    for rep in range(20):
        df = curves_rows(fast_gen, slow_disc, seeds=10, sd=0.01, rng=np.random.default_rng(rep))
        (row,) = verdict.claims_table(df, [("g", "d")], n_boot=500).to_dict("records")
        covered += row["ratio_lo"] <= truth <= row["ratio_hi"]
    assert covered >= 16


# ------------------------------------------------------------------ section and imports


def test_verdict_section_writes_headline_and_cd_diagrams(tmp_path):
    scores = random_scores(6)
    df = score_rows(scores, sizes=(10, 20, 40, 80), seeds=3)
    section = verdict.verdict_section(df, tmp_path, pairs=[("g1", "d1", "paper pairing")])
    md = "\n".join(section.markdown)
    names = sorted(p.name for p in section.figures)
    assert "paradigms.png" in names
    assert {f"cd_{r.replace(' ', '_')}.png" for r in verdict.SIZE_REGIMES} <= set(names)
    assert md.index("best average rank") < md.index("paradigms.png") < md.index("Ng & Jordan")
    assert md.index("Ng & Jordan") < md.index("### Ranks across tasks")
    assert "| t0 | g1 vs d1 |" in md
    assert "Demšar (2006)" in md
    assert len(section.rank_tests) == 3


def test_reports_verdict_does_not_import_jax():
    code = "import sys\nimport reports.verdict, reports.build\nprint('jax' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "False"


def test_headline_names_the_winner_per_regime_and_nemenyi_separation():
    """d1 is best on every one of 10 tasks and g2 worst: their rank gap (3) exceeds the
    Nemenyi critical difference for 4 models over 10 tasks (Demšar's q: 1.48), d2 vs d1 not."""
    tasks = [f"t{i}" for i in range(10)]
    scores = pd.DataFrame(
        {"d1": 0.10, "d2": 0.11, "g1": 0.12, "g2": 0.20}, index=tasks
    ) + np.random.default_rng(0).uniform(0, 0.001, (10, 4))
    tests = verdict.rank_tests(score_rows(scores))
    k, n = 4, 10
    cd = (
        sps.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2) * math.sqrt(k * (k + 1) / (6 * n))
    )
    assert tests[-1].cd == pytest.approx(cd, rel=1e-3)
    paradigms = {
        "d1": "discriminative",
        "d2": "discriminative",
        "g1": "generative",
        "g2": "generative",
    }
    lines = verdict.headline_lines(tests, paradigms)
    assert len(lines) == 3
    full = lines[-1]
    assert full.startswith(
        "- **full pool** (10 tasks): best average rank **d1** (discriminative), 1.00"
    )
    # best generative is g1 at rank 3: gap 2 > CD 1.48
    assert "best generative: g1, 3.00 (significantly worse by Nemenyi)" in full


def test_a_task_with_one_size_counts_only_in_the_full_pool():
    scores = random_scores(6)
    df = score_rows(scores)
    single = score_rows(
        pd.DataFrame([[0.1, 0.2, 0.3, 0.4]], index=["one"], columns=scores.columns), (50,)
    )
    df = pd.concat([df, single], ignore_index=True)
    tests = {t.regime: t for t in verdict.rank_tests(df)}
    assert len(tests["smallest sizes"].scores) == 6 and tests["smallest sizes"].left_out == ()
    assert len(tests["full pool"].scores) == 7
