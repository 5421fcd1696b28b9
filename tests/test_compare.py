"""Run comparison: paired tests against scipy, noise vs real changes, timings, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gdbench import cli, results
from gdbench.reports import compare, stats
from gdbench.results import store

MODELS = {"logreg": "discriminative", "gnb": "generative"}
SIZES = (10, 40)
SEEDS = range(5)


def base_rows(n_seeds: int = 5) -> pd.DataFrame:
    """A valid run: 1 task x 2 models x 2 sizes x `n_seeds` seeds, distinct values per cell."""
    rng = np.random.default_rng(1)
    rows = []
    for model, paradigm in MODELS.items():
        generative = paradigm == "generative"
        for n in SIZES:
            for seed in range(n_seeds):
                acc = 0.7 + 0.1 * rng.random()
                rows.append(
                    {
                        "task": "gauss_2d",
                        "model": model,
                        "paradigm": paradigm,
                        "n_train": n,
                        "n_val": 0,
                        "seed": seed,
                        "accuracy": round(acc * 200) / 200,  # a multiple of 1/200 test examples
                        "nll": 0.3 + 0.2 * rng.random(),
                        "ece": 0.02 + 0.05 * rng.random(),
                        "brier": 0.2 + 0.1 * rng.random(),
                        "log_lik": -2.0 - rng.random() if generative else np.nan,
                        "bits_per_dim": 1.5 + rng.random() if generative else np.nan,
                        "likelihood_is_bound": False if generative else None,
                        "fit_s": 0.25 if model == "logreg" else 0.125,
                        "predict_s": 0.01,
                        "compile_s": 1.5 if model == "logreg" else 3.0,
                        "grid_cells": len(SIZES) * n_seeds,
                        "flops": np.nan,
                        "status": "ok",
                        "message": "",
                        "model_config": json.dumps({"l2": 1e-3}),
                        "preprocess": "standardize",
                    }
                )
    return pd.DataFrame(rows)


def select(df: pd.DataFrame, model: str, n: int | None = None, seed: int | None = None):
    mask = df["model"] == model
    if n is not None:
        mask &= df["n_train"] == n
    if seed is not None:
        mask &= df["seed"] == seed
    return mask


def metric_row(result: compare.RunComparison, model: str, n: int, metric: str) -> pd.Series:
    m = result.metrics
    hit = m[(m["model"] == model) & (m["n_train"] == n) & (m["metric"] == metric)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_identical_runs_change_nothing():
    a = base_rows()
    result = compare.compare_runs(a, a.copy())
    assert result.n_cells == len(a) == 20
    assert not result.metrics["changed"].any()
    assert (result.metrics["diff"] == 0).all() and (result.metrics["p_value"] == 1).all()
    # log_lik / bits_per_dim only where the model has them: 2 x (4 + 2) + 2 x 4 metric rows
    assert len(result.metrics) == 2 * 6 + 2 * 4
    assert result.only_a.empty and result.only_b.empty and result.status_changed.empty
    assert result.config_changed.empty
    assert np.allclose(result.timing[["fit_s_ratio", "predict_s_ratio", "compile_s_ratio"]], 1)
    md = compare.compare_markdown(result)
    assert "20 cells compared (ok in both runs); 0 of 20 metric rows changed beyond noise" in md
    assert "Nothing changed beyond noise." in md


def test_accuracy_shift_on_every_seed_is_flagged_with_scipy_p_values():
    a = base_rows()
    b = a.copy()
    rng = np.random.default_rng(7)
    hit = select(b, "gnb", 40)
    shift = 0.03 + 0.005 * np.round(rng.normal(size=hit.sum()) * 2)  # varies by seed, all > 0
    b.loc[hit, "accuracy"] += shift
    b.loc[select(b, "logreg", 10, 0), "nll"] += 0.05  # a single-seed outlier, elsewhere
    result = compare.compare_runs(a, b)

    row = metric_row(result, "gnb", 40, "accuracy")
    va, vb = a.loc[hit, "accuracy"].to_numpy(), b.loc[hit, "accuracy"].to_numpy()
    assert row["p_value"] == pytest.approx(sps.ttest_rel(vb, va).pvalue, rel=1e-12)
    assert row["diff"] == pytest.approx(np.mean(vb - va))
    d = vb - va
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert row["ci95"] == pytest.approx(half)
    assert (row["mean_a"], row["mean_b"]) == pytest.approx((va.mean(), vb.mean()))
    assert bool(row["changed"])

    outlier = metric_row(result, "logreg", 10, "nll")
    p = sps.ttest_rel(
        b.loc[select(b, "logreg", 10), "nll"], a.loc[select(a, "logreg", 10), "nll"]
    ).pvalue
    assert outlier["p_value"] == pytest.approx(p) and p > 0.05
    assert not outlier["changed"]
    assert list(result.changed[["model", "n_train", "metric"]].itertuples(index=False)) == [
        ("gnb", 40, "accuracy")
    ]

    # Benjamini-Hochberg by hand: p_(i) * m / i, then a running minimum from the largest p
    p = result.metrics["p_value"].to_numpy()
    order = np.argsort(p)
    scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
    bh = np.minimum(1, np.minimum.accumulate(scaled[::-1])[::-1])
    expected = np.empty_like(bh)
    expected[order] = bh
    assert result.metrics["p_adjusted"].to_numpy() == pytest.approx(expected)


def test_constant_shift_is_flagged_and_float_noise_is_not():
    a = base_rows()
    b = a.copy()
    b.loc[select(b, "logreg", 10), "accuracy"] += 0.005  # one test example more on every seed
    b.loc[select(b, "gnb"), "nll"] *= 1 + 3e-7  # float32 round-off, same sign on every seed
    result = compare.compare_runs(a, b)
    acc = metric_row(result, "logreg", 10, "accuracy")
    assert acc["p_value"] < 1e-10 and bool(acc["changed"])
    assert acc["diff"] == pytest.approx(0.005)
    for n in SIZES:
        nll = metric_row(result, "gnb", n, "nll")
        assert nll["p_value"] < 1e-3  # systematic, but far below the tolerance
        assert abs(nll["diff"]) < nll["tolerance"] and not nll["changed"]
    assert result.changed["metric"].tolist() == ["accuracy"]


def test_single_seed_perturbation_is_not_flagged_under_either_test():
    a = base_rows()
    b = a.copy()
    b.loc[select(b, "gnb", 10, 3), "accuracy"] -= 0.1
    for test in ("t", "wilcoxon"):
        result = compare.compare_runs(a, b, test=test)
        row = metric_row(result, "gnb", 10, "accuracy")
        d = b.loc[select(b, "gnb", 10), "accuracy"] - a.loc[select(a, "gnb", 10), "accuracy"]
        reference = sps.ttest_1samp(d, 0).pvalue if test == "t" else sps.wilcoxon(d).pvalue
        assert row["p_value"] == pytest.approx(reference)
        assert row["diff"] == pytest.approx(-0.02)
        assert not result.metrics["changed"].any()


@pytest.mark.fast
def test_paired_p_value_edge_cases_and_wilcoxon():
    assert compare.paired_p_value([0, 0, 0]) == 1.0
    assert compare.paired_p_value([0, 0, 0], "wilcoxon") == 1.0
    assert compare.paired_p_value([0.1, 0.1, 0.1]) == 0.0
    for test in compare.TESTS:  # a single pair, even a zero one, or a non-finite one: untested
        assert np.isnan(compare.paired_p_value([0.1], test))
        assert np.isnan(compare.paired_p_value([0.0], test))
        assert np.isnan(compare.paired_p_value([0.1, np.inf, 0.2], test))
    d = [0.1, -0.02, 0.05, 0.07, 0.03, 0.01]
    assert compare.paired_p_value(d, "wilcoxon") == pytest.approx(sps.wilcoxon(d).pvalue)
    assert compare.paired_p_value(d, "t") == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert compare.paired_p_value(d) == stats.paired_p(d)  # the t path is the shared test
    with pytest.raises(compare.CompareError, match="unknown test 'sign'"):
        compare.paired_p_value(d, "sign")


def test_cells_in_one_run_status_and_config_changes_are_reported():
    a = base_rows()
    b = a.copy()
    b = b[~select(b, "logreg", 40, 4)]  # a cell only in A
    extra = a[select(a, "gnb", 40, 0)].assign(seed=9)  # a cell only in B
    b = pd.concat([b, extra], ignore_index=True)
    fail = select(b, "gnb", 10, 2)
    b.loc[fail, ["status", "message", "accuracy"]] = ["failed", "oom", np.nan]
    b.loc[select(b, "logreg", 10, 1), "model_config"] = json.dumps({"l2": 1e-2})
    result = compare.compare_runs(a, b)

    assert result.only_a[["model", "n_train", "seed", "status"]].values.tolist() == [
        ["logreg", 40, 4, "ok"]
    ]
    assert result.only_b[["model", "n_train", "seed"]].values.tolist() == [["gnb", 40, 9]]
    changed = result.status_changed[["model", "n_train", "seed", "status_a", "status_b"]]
    assert changed.values.tolist() == [["gnb", 10, 2, "ok", "failed"]]
    assert result.config_changed[["model", "seed"]].values.tolist() == [["logreg", 1]]
    assert result.n_cells == 20 - 1 - 1  # minus the cell only in A, minus the failed one
    assert metric_row(result, "gnb", 10, "accuracy")["n_pairs"] == 4
    md = compare.compare_markdown(result)
    assert "1 cell only in A, 1 only in B; 1 status change." in md
    assert "| gauss_2d | gnb | 10 | ok | failed | 2 |" in md
    assert "| gauss_2d | logreg | 40 | ok | 4 |" in md
    assert "## Model configuration or preprocessing changed (1 cell)" in md


def test_timing_ratios_per_grid():
    a = base_rows()
    b = a.copy()
    b.loc[select(b, "logreg"), "fit_s"] *= 4
    b.loc[select(b, "gnb"), "compile_s"] = 1.5  # per grid: counted once, not per row
    b.loc[select(b, "gnb"), "predict_s"] = np.where(b.loc[select(b, "gnb"), "seed"] < 3, 0.02, 0.5)
    t = compare.compare_runs(a, b).timing.set_index("model")
    assert t.loc["logreg", "fit_s_ratio"] == pytest.approx(4.0)
    assert t.loc["gnb", "fit_s_ratio"] == pytest.approx(1.0)
    assert t.loc["gnb", "compile_s_a"] == 3.0 and t.loc["gnb", "compile_s_ratio"] == 0.5
    assert t.loc["gnb", "predict_s_ratio"] == pytest.approx(2.0)  # median of 6x0.02, 4x0.5
    assert (t["cells_a"] == 10).all() and (t["cells_b"] == 10).all()
    md = compare.compare_markdown(compare.compare_runs(a, b))
    assert f"fit_s x{np.sqrt(4.0):.3g}" in md  # geometric mean over the two grids
    assert "| gauss_2d | logreg | 10/10 | 0.25 -> 1 | 4 |" in md


def test_markdown_orders_by_size_of_change_and_caps_rows():
    a = base_rows()
    b = a.copy()
    b.loc[select(b, "logreg", 10), "accuracy"] += 0.01
    b.loc[select(b, "gnb", 40), "accuracy"] += 0.05
    b.loc[select(b, "gnb", 10), "accuracy"] += 0.02
    result = compare.compare_runs(a, b)
    assert result.changed["diff"].tolist() == pytest.approx([0.05, 0.02, 0.01])
    md = compare.compare_markdown(result, max_rows=2)
    table = md.split("## Changed beyond noise")[1].split("## Timing")[0]
    assert table.index("| gnb | 40 |") < table.index("| gnb | 10 |")
    assert "| logreg | 10 | accuracy" not in table
    assert "... and 1 more changed rows." in table


def test_bad_arguments_are_one_line_errors():
    a = base_rows()
    with pytest.raises(compare.CompareError, match="cannot compare metric 'fit_s'; valid: "):
        compare.compare_runs(a, a, metrics=["fit_s"])
    with pytest.raises(compare.CompareError, match="alpha must be in"):
        compare.compare_runs(a, a, alpha=1.5)
    with pytest.raises(compare.CompareError, match="unknown test 'z'"):
        compare.compare_runs(a, a, test="z")


# --- CLI ----------------------------------------------------------------------------------


def write_run(run_dir: Path, df: pd.DataFrame) -> Path:
    store.write_manifest(run_dir, {"name": run_dir.name})
    for (task, model), grid in df.groupby(["task", "model"]):
        store.write_grid(run_dir, grid, f"{task}__{model}")
    return run_dir


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    a = base_rows()
    b = a.copy()
    b.loc[select(b, "gnb", 40), "accuracy"] += 0.02
    b.loc[select(b, "logreg"), "fit_s"] *= 2
    return write_run(tmp_path / "cpu", a), write_run(tmp_path / "gpu", b)


def test_cli_compare_prints_and_writes_markdown(two_runs, tmp_path, capsys):
    run_a, run_b = two_runs
    assert len(results.load(run_a)) == 20
    assert cli.main(["compare", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# gdbench comparison: `cpu` (A) vs `gpu` (B)")
    assert "20 cells compared (ok in both runs); 1 of 20 metric rows changed" in out
    assert "| gauss_2d | gnb | 40 | accuracy | 5 |" in out

    target = tmp_path / "reports" / "cmp.md"
    assert cli.main(["compare", str(run_a), str(run_b), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"comparison written to {target}"
    assert target.read_text() == out

    assert cli.main(["compare", str(run_a), str(run_b), "--metrics", "nll,ece"]) == 0
    out = capsys.readouterr().out
    assert "0 of 8 metric rows changed" in out and "| accuracy |" not in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["{b}", "/nonexistent/run"], "not a gdbench run: /nonexistent/run"),
        (["{a}", "{b}", "--metrics", "acc"], "cannot compare metric 'acc'; valid: accuracy"),
        (["{a}", "{empty}"], "no result rows in"),
        (["{a}", "{b}", "--out", "{a}"], "is a directory"),
    ],
    ids=["missing run", "unknown metric", "empty run", "out is a directory"],
)
def test_cli_compare_bad_input_is_one_line_exit_2(two_runs, tmp_path, capsys, argv, expected):
    run_a, run_b = two_runs
    empty = tmp_path / "empty"
    store.write_manifest(empty, {"name": "empty"})
    paths = {"a": str(run_a), "b": str(run_b), "empty": str(empty)}
    code = cli.main(["compare", *(arg.format(**paths) for arg in argv)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbench: error: ")
    assert expected in lines[0]


def test_a_single_seed_cannot_be_tested_and_is_said_so():
    a = base_rows(n_seeds=1)
    b = a.copy()
    b.loc[select(b, "gnb", 40), "accuracy"] += 0.05
    result = compare.compare_runs(a, b)
    row = metric_row(result, "gnb", 40, "accuracy")
    assert row["n_pairs"] == 1 and np.isnan(row["p_value"]) and np.isnan(row["ci95"])
    assert row["diff"] == pytest.approx(0.05) and not row["changed"]
    # unchanged single pairs are untested too, so no row enters the correction
    assert result.metrics["p_value"].isna().all() and not result.metrics["changed"].any()
    md = compare.compare_markdown(result)
    assert "1 metric row differ(s) but with a single paired seed cannot be tested" in md
    assert "across all 0 tested rows" in md
