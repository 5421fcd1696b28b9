"""Reports from stored rows: statistics against a hand computation, tables, figures, errors."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from gdbench import reports
from gdbench.reports import figures, latex, stats, tables
from gdbench.reports.efficiency import efficiency
from gdbench.reports.html import markdown_to_html
from gdbench.results import provenance, schema, store
from tests.test_latex import header_cells, table_rows

TASKS = ("gauss_2d", "breast_cancer")
MODELS = {"logreg": "discriminative", "gnb": "generative", "vae": "generative"}
SIZES = (10, 20, 40, 80)
SEEDS = range(5)
MODEL_OFFSET = {"logreg": 0.0, "gnb": 0.02, "vae": -0.1}


def accuracy_of(task: str, model: str, size_index: int, seed: int) -> float:
    """Known accuracies: 0.65 + 0.05 per size step + a model offset + 0.01 per seed."""
    task_offset = 0.0 if task == "gauss_2d" else 0.05
    return 0.65 + 0.05 * size_index + MODEL_OFFSET[model] + task_offset + 0.01 * seed


def synthetic_rows() -> pd.DataFrame:
    """2 tasks x 3 models x 4 sizes x 5 seeds; two vae cells of gauss_2d at n=80 are not ok."""
    rows = []
    for task in TASKS:
        for model, paradigm in MODELS.items():
            generative = paradigm == "generative"
            for k, n in enumerate(SIZES):
                for seed in SEEDS:
                    status, message = "ok", ""
                    acc = accuracy_of(task, model, k, seed)
                    if (task, model, n) == ("gauss_2d", "vae", 80) and seed == 3:
                        status, message, acc = "failed", "XlaRuntimeError: | out of memory", 0.0
                    if (task, model, n) == ("gauss_2d", "vae", 80) and seed == 4:
                        status, message, acc = "diverged", "nan loss", np.nan
                    rows.append(
                        {
                            "task": task,
                            "model": model,
                            "paradigm": paradigm,
                            "n_train": n,
                            "n_val": 0,
                            "seed": seed,
                            "accuracy": acc,
                            "nll": 0.5 - 0.02 * k + 0.001 * seed,
                            "ece": 0.04 + 0.002 * seed,
                            "brier": 0.3 - 0.01 * k,
                            "log_lik": -2.0 - 0.1 * seed if generative else np.nan,
                            "bits_per_dim": (2.0 + 0.1 * seed) / (2 * np.log(2))
                            if generative
                            else np.nan,
                            "likelihood_is_bound": (model == "vae") if generative else None,
                            "fit_s": 0.25 if model == "logreg" else 0.125,
                            "predict_s": 0.01,
                            "compile_s": 1.5 if model == "logreg" else 3.0,
                            "grid_cells": len(SIZES) * len(SEEDS),
                            "flops": 2.0e6 if model == "logreg" else np.nan,
                            "status": status,
                            "message": message,
                            "bayes_accuracy": 0.95 if task == "gauss_2d" else np.nan,
                            "true_log_lik": -1.875 if task == "gauss_2d" else np.nan,
                            "model_config": json.dumps({"l2": 1e-3}),
                            "preprocess": "standardize",
                        }
                    )
    return pd.DataFrame(rows)


def write_run(run_dir: Path, df: pd.DataFrame) -> Path:
    manifest = {
        "provenance": provenance.collect({"device_kind": "cpu", "device_count": 1}),
        "started_utc": "2026-01-02T03:04:05Z",
        "finished_utc": "2026-01-02T03:14:05Z",
    }
    store.write_manifest(run_dir, manifest)
    for (task, model), grid in df.groupby(["task", "model"]):
        store.write_grid(run_dir, grid, f"{task}__{model}")
    return run_dir


@pytest.fixture
def rows() -> pd.DataFrame:
    return synthetic_rows()


def wilson_over_seeds(values) -> tuple[float, float]:
    """The seeds-only accuracy interval of rows without per-example outcomes (older runs):
    statsmodels' Wilson interval at the effective size p(1-p)/V, V = s^2/S, scaled by
    (z/t_{S-1})^2 (Korn & Graubard), independent of reports.stats."""
    values = np.asarray(values, dtype=float)
    p, k = values.mean(), len(values)
    scale = (sps.norm.ppf(0.975) / sps.t.ppf(0.975, k - 1)) ** 2
    n_eff = p * (1 - p) / (values.var(ddof=1) / k) * scale
    return proportion_confint(p * n_eff, n_eff, method="wilson")


def acc_text(values) -> str:
    lo, hi = wilson_over_seeds(values)
    return f"{np.mean(values):.3f} ({lo:.3f}–{hi:.3f})"


# --- statistics ---------------------------------------------------------------------------


@pytest.mark.fast
def test_ci_half_width_matches_hand_computation(rows):
    summary = stats.summarize(rows, ["accuracy", "nll"])
    group = summary[
        (summary["task"] == "breast_cancer")
        & (summary["model"] == "gnb")
        & (summary["n_train"] == 20)
    ].iloc[0]
    values = np.array([0.65 + 0.05 + 0.02 + 0.05 + 0.01 * s for s in SEEDS])
    n = len(values)
    half = sps.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    assert group["accuracy_count"] == 5
    assert group["accuracy_mean"] == pytest.approx(0.79)
    assert group["accuracy_std"] == pytest.approx(np.sqrt(2.5) * 0.01)
    # rows without per-example outcomes: over seeds only. Accuracy: statsmodels' Wilson
    # interval at the effective size p(1-p)/V (V = s^2/n), scaled by (z/t_{n-1})^2
    scale = (sps.norm.ppf(0.975) / sps.t.ppf(0.975, n - 1)) ** 2
    n_eff = 0.79 * 0.21 / (values.var(ddof=1) / n) * scale
    lo, hi = proportion_confint(0.79 * n_eff, n_eff, method="wilson")
    assert (group["accuracy_lo"], group["accuracy_hi"]) == pytest.approx((lo, hi), rel=1e-12)
    assert group["accuracy_ci95"] == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert not group["accuracy_test"]
    # other metrics: the Student t half-width over seeds
    nll = rows[(rows.task == "breast_cancer") & (rows.model == "gnb") & (rows.n_train == 20)]["nll"]
    nll_half = sps.t.ppf(0.975, n - 1) * nll.std(ddof=1) / np.sqrt(n)
    assert group["nll_ci95"] == pytest.approx(nll_half, rel=1e-12)
    assert half == pytest.approx(2.7764451 * 0.0158113883 / 2.2360680, rel=1e-6)
    assert group["paradigm"] == "generative"
    assert (group["n_ok"], group["n_not_ok"]) == (5, 0)
    assert len(summary) == len(TASKS) * len(MODELS) * len(SIZES)


def test_single_seed_has_nan_half_width(rows):
    one = rows[rows["seed"] == 0]
    summary = stats.summarize(one, ["accuracy"])
    assert (summary["accuracy_count"] == 1).all()
    assert summary["accuracy_std"].isna().all()
    assert summary["accuracy_ci95"].isna().all()
    assert np.isnan(stats.t_half_width(0.1, 1))
    assert stats.t_half_width(0.1, 2) == pytest.approx(sps.t.ppf(0.975, 1) * 0.1 / np.sqrt(2))


def test_non_ok_rows_are_excluded_and_counted(rows):
    summary = stats.summarize(rows, ["accuracy", "log_lik"])
    g = summary[
        (summary["task"] == "gauss_2d") & (summary["model"] == "vae") & (summary["n_train"] == 80)
    ].iloc[0]
    ok_values = [accuracy_of("gauss_2d", "vae", 3, s) for s in (0, 1, 2)]
    assert (g["n_ok"], g["n_not_ok"]) == (3, 2)
    assert g["accuracy_count"] == 3
    assert g["accuracy_mean"] == pytest.approx(np.mean(ok_values))
    lo, hi = wilson_over_seeds(ok_values)
    assert (g["accuracy_lo"], g["accuracy_hi"]) == pytest.approx((lo, hi))
    assert g["log_lik_mean"] == pytest.approx(-2.1)


def test_group_with_only_failed_rows_is_kept(rows):
    failed = rows.assign(status="failed")
    summary = stats.summarize(failed, ["accuracy"], by=("task",))
    assert summary["task"].tolist() == sorted(TASKS)
    assert summary["accuracy_mean"].isna().all()
    assert summary["accuracy_count"].tolist() == [0, 0]
    assert summary["n_not_ok"].tolist() == [60, 60]


def test_discriminative_log_lik_stays_not_applicable(rows):
    summary = stats.summarize(rows, ["log_lik"])
    logreg = summary[summary["model"] == "logreg"]
    assert logreg["log_lik_mean"].isna().all()
    assert (logreg["log_lik_count"] == 0).all()


# --- tables -------------------------------------------------------------------------------


def test_format_mean_ci():
    assert tables.fmt_mean_ci(0.8199999, 0.0196324, 3) == "0.820 ± 0.020"
    assert tables.fmt_mean_ci(-0.00001, 0.0, 3) == "0.000 ± 0.000"
    assert tables.fmt_mean_ci(0.5, float("nan"), 3) == "0.500"
    assert tables.fmt_mean_ci(float("nan"), 0.1, 3) == "—"


def test_readable_number_formats():
    # sk:GaussianNB's NLL on iris used to print as "48241873.929 ± 0.000"
    assert tables.fmt_number(48241873.929, 3) == "4.82e+07"
    assert tables.fmt_mean_ci(48241873.929, 1.234e6, 3) == "4.82e+07 ± 1.2e+06"
    assert tables.fmt_interval(48241873.929, 0.0, 1.2e8, 3) == "4.82e+07 (0.000–1.2e+08)"
    assert tables.fmt_interval(0.959, 0.9301, 0.9802, 3, bounded=True) == "0.959 (0.930–0.980)"
    assert tables.fmt_interval(0.5, 0.4, 0.6, 3) == "0.500 ± 0.100"
    assert tables.fmt_interval(2.5, 0.0, 7.3, 3) == "2.500 (0.000–7.300)"  # clipped at 0
    assert tables.fmt_mean_ci(0.977, 4e-5, 3) == "0.977 ± 4e-05"  # never "± 0.000"
    assert tables.fmt_interval(0.977, float("nan"), float("nan"), 3) == "0.977"
    assert tables.fmt_interval(float("nan"), 0.1, 0.2, 3) == "—"


def pool_rows() -> pd.DataFrame:
    """One task at n = pool: every seed the same fit, with per-example outcomes on 171 test
    examples; 'a' right on 168, 'b' on 160 (8 discordant pairs, all in a's favour), 'c' on 167
    (1 discordant pair)."""
    truth = np.ones(171, dtype=bool)
    outcome = {"a": truth.copy(), "b": truth.copy(), "c": truth.copy()}
    outcome["a"][:3] = False
    outcome["b"][:11] = False
    outcome["c"][:4] = False
    rows = []
    for model, correct in outcome.items():
        for seed in range(5):
            rows.append(
                {
                    "task": "bc",
                    "model": model,
                    "paradigm": "discriminative",
                    "n_train": 398,
                    "seed": seed,
                    "status": "ok",
                    "accuracy": correct.mean(),
                    "nll": 0.1,
                    "ece": 0.02,
                    "brier": 0.05,
                    "log_lik": np.nan,
                    "bits_per_dim": np.nan,
                    "likelihood_is_bound": None,
                    "n_test": 171,
                    "test_correct": schema.pack_correct(correct),
                    "nll_sd": 0.3,
                    "brier_sd": 0.1,
                    "ece_sd": 0.2,
                    "preprocess": "standardize",
                    "bayes_accuracy": np.nan,
                    "true_log_lik": np.nan,
                    "grid_cells": 5,
                    "fit_s": 0.1,
                    "predict_s": 0.01,
                    "compile_s": 1.0,
                }
            )
    return pd.DataFrame(rows)


def test_headline_at_pool_has_test_set_intervals_and_mcnemar_marks_in_markdown_and_latex():
    df = pool_rows()
    md = tables.markdown_summary(df)
    for model, hits, bold, star in (
        ("a", 168, True, False),
        ("b", 160, False, True),
        ("c", 167, False, False),
    ):
        lo, hi = proportion_confint(hits, 171, method="wilson")  # never ± 0 at n = pool
        text = f"{hits / 171:.3f} ({lo:.3f}–{hi:.3f})"
        text = f"**{text}**" if bold else text
        text += " \\*" if star else ""
        assert f"| {model} | discriminative | 5 | {text} |" in md
    # b: McNemar's exact p = 2 / 2^8 (statsmodels), 2 comparisons -> Holm 2 x; c: p = 1
    p_b = mcnemar([[160, 0], [8, 3]], exact=True).pvalue
    assert p_b == pytest.approx(2 / 2**8)
    assert "McNemar's exact test" in md and "**Bold**" in md and "Holm-corrected" in md
    # NLL: the same on every seed; the interval is the test set's, t_{170} * sd / sqrt(171)
    half = sps.t.ppf(0.975, 170) * 0.3 / np.sqrt(171)
    assert f"**0.100 ± {half:.3f}**" in md
    tex = latex.headline_tables(df)["headline_bc.tex"]
    row_b = next(line for line in tex.splitlines() if line.startswith("b &"))
    # Model, Paradigm, Seeds, then the accuracy: its mean (an S column) and its interval
    assert row_b.split("&")[4].strip().endswith("$^{*}$")
    assert "McNemar" in tex and "Wilson" in tex
    html = markdown_to_html(md, ".", "t")
    assert "<strong>" in html and "McNemar" in html


def test_markdown_summary_values(rows):
    md = tables.markdown_summary(rows)
    assert md.index("### breast_cancer") < md.index("### gauss_2d")
    assert "At n_train = 80" in md
    # logreg, gauss_2d, n=80: 0.80 + 0.01 * seed -> mean 0.82 (gnb's 0.84 is the best);
    # vae's 3 ok seeds have the lowest NLL and ECE; Brier is the same for every model: all
    # bold. Brier is equal on every seed and these rows have no per-example spreads: no
    # interval rather than +- 0.
    logreg = [accuracy_of("gauss_2d", "logreg", 3, s) for s in SEEDS]
    assert (
        f"| logreg | discriminative | 5 | {acc_text(logreg)} | 0.442 ± 0.002 | "
        "0.044 ± 0.004 | **0.270** | — | — |" in md
    )
    gnb = [accuracy_of("gauss_2d", "gnb", 3, s) for s in SEEDS]
    assert f"| gnb | generative | 5 | **{acc_text(gnb)}** |" in md
    # vae, gauss_2d, n=80: 2 cells not ok; likelihood is a bound; vae's log p(x) the highest
    ok = [accuracy_of("gauss_2d", "vae", 3, s) for s in (0, 1, 2)]
    assert f"| vae | generative | 3 (+2 not ok) | {acc_text(ok)} |" in md
    assert "| **-2.10 ± 0.25** † |" in md
    assert "| -2.20 ± 0.20 | 1.587 ± 0.142 |" in md
    # a constant difference on every seed, without per-example outcomes, is never marked
    assert "\\*" not in md.split("## Compute")[0].split("Holm-corrected")[1]
    assert "no model differs significantly from the best" in md
    assert "interval and test over seeds only" in md
    assert "† bound on the likelihood" in md
    assert "Bayes accuracy 0.9500 (Bayes error 0.0500)" in md
    assert "true log p(x) of the test set -1.875 nats per example" in md
    assert md.count("Reference (synthetic task)") == 1
    # Compute: rows without the measurement columns (older runs) show dashes for them, and
    # their FLOPs are marked as the loop-once count.
    # steady state = fit + predict per cell; end to end adds compile / cells
    assert "| gauss_2d | logreg | discriminative | 20 | 1.5 | 0.26 | 0.335 | 0.25 |" in md
    assert "| gauss_2d | logreg | — | 0.002 ‡ | — | — |" in md
    assert "‡ FLOPs stored by an earlier gdbench" in md
    assert "| gauss_2d | vae | generative | 20 | 3 | 0.135 | 0.285 | 0.125 |" in md
    assert "| gauss_2d | vae | — | — | — | — |" in md
    assert "## Cells not ok (2 of 120, excluded from all statistics)" in md
    assert "| gauss_2d | vae | 80 | 3 | failed | XlaRuntimeError: \\| out of memory |" in md
    assert "| gauss_2d | vae | 80 | 4 | diverged | nan loss |" in md


def test_compute_table_shows_steady_state_spread_throughput_and_peak(rows):
    """Measurement columns as the engine writes them; expected cells from these inputs."""
    logreg = rows["model"] == "logreg"
    gnb = rows["model"] == "gnb"
    rows = rows.assign(
        fit_flops=np.where(logreg, 1.5e6, np.nan),
        fit_s_min=np.where(logreg, 0.2, 0.125),
        fit_s_max=np.where(logreg, 0.375, 0.125),
        fit_repeats=np.where(logreg, 4.0, np.where(gnb, 0.0, np.nan)),
        predict_per_s=np.where(logreg, 25000.0, np.nan),
        flop_rate=np.where(logreg, 6.0e6, np.nan),  # fit FLOP/s
        peak_fraction=np.where(logreg, 6.0e6 / 1.2e11, np.nan),
        peak_bytes=np.where(logreg, 3.5e6, np.where(gnb, 125e3, np.nan)),
    )
    rows.loc[gnb & (rows["task"] == "breast_cancer"), "fit_repeats"] = 1.0
    # A grid resumed in two parts: the other part's fastest repeat is faster, fewer repeats.
    second = logreg & (rows["task"] == "breast_cancer") & (rows["seed"] >= 3)
    rows.loc[second, ["fit_s_min", "fit_repeats"]] = [0.15, 2.0]
    md = tables.markdown_summary(rows)
    section = md[md.index("## Compute") :]
    cost_header = (
        "| task | model | paradigm | cells | compile s (per grid) | steady-state s per cell | "
        "end-to-end s per cell | fit s per cell (min–max, repeats) |"
    )
    rate_header = (
        "| task | model | predict examples/s | GFLOP per cell | achieved GFLOP/s (% of peak) | "
        "peak memory MB |"
    )
    assert cost_header in section and rate_header in section
    # two tables of at most 8 columns: they fit a 1,000 px page
    assert max(line.count("|") - 1 for line in section.splitlines() if line.startswith("|")) <= 8
    assert (
        "| gauss_2d | logreg | discriminative | 20 | 1.5 | 0.26 | 0.335 | "
        "0.25 (0.2–0.375, 4 repeats) |" in section
    )
    assert "| gauss_2d | logreg | 2.5e+04 | 0.002 | 0.006 (0.005%) | 3.5 |" in section
    assert (
        "| breast_cancer | logreg | discriminative | 20 | 1.5 | 0.26 | 0.335 | "
        "0.25 (0.15–0.375, 2 repeats) |" in section
    )
    gnb_line = "| gauss_2d | gnb | generative | 20 | 3 | 0.135 | 0.285 | 0.125 (warm-up only) |"
    assert gnb_line in section
    assert "| gauss_2d | gnb | — | — | — | 0.125 |" in section
    assert (
        "| breast_cancer | gnb | generative | 20 | 3 | 0.135 | 0.285 | 0.125 (1 repeat) |"
        in section
    )
    assert "| gauss_2d | vae | generative | 20 | 3 | 0.135 | 0.285 | 0.125 |" in section
    assert "| gauss_2d | vae | — | — | — | — |" in section
    assert "End-to-end s per cell: what a single run pays" in section
    assert "median wall seconds of the grid's fit over timed repeats after a warm-up" in section
    assert "MB = 10^6 bytes" in section
    assert "‡" not in section  # FLOPs of this gdbench: loops counted by trip count


def test_efficiency_learning_curve_table_is_bootstrap_of_the_error(rows):
    eff = efficiency(rows, n_boot=500)
    section = eff.markdown[eff.markdown.index("#### gauss_2d") :]
    line = next(x for x in section.splitlines() if x.startswith("| logreg |"))
    cells = line.strip("|").split("|")[1:]
    for k, cell in enumerate(cells):
        errors = np.array([1 - accuracy_of("gauss_2d", "logreg", k, s) for s in SEEDS])
        mean, lo, hi = (float(v) for v in re.findall(r"[0-9.]+", cell))
        assert mean == pytest.approx(errors.mean(), abs=5e-4)
        # A percentile bootstrap of a mean lies inside the data's range and around the mean.
        assert errors.min() - 5e-4 <= lo < mean < hi <= errors.max() + 5e-4
    # vae: two of the five cells at n=80 are not ok; its fits count them.
    fit = eff.fits.set_index(["task", "model"]).loc[("gauss_2d", "vae")]
    assert fit["n_not_ok"] == 2


def test_markdown_summary_without_failures_has_no_failure_section(rows):
    md = tables.markdown_summary(rows[rows["status"] == "ok"])
    assert "Cells not ok" not in md


def test_duplicate_cells_across_runs_are_refused(rows):
    twice = pd.concat([rows.assign(run="a"), rows.assign(run="b")], ignore_index=True)
    with pytest.raises(stats.DuplicateCellError, match="runs: a, b"):
        tables.markdown_summary(twice)


# --- figures ------------------------------------------------------------------------------


def test_learning_curve_figure_plots_test_error(rows):
    styles = figures.model_styles(MODELS)
    fig = figures._learning_curve_figure(rows[rows["task"] == "gauss_2d"], "gauss_2d", styles)
    ax = fig.axes[0]

    def line_of(model):
        drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
        return next(
            ln for ln in drawn if to_rgba(ln.get_color()) == to_rgba(styles[model]["color"])
        )

    logreg = line_of("logreg")
    assert list(logreg.get_xdata()) == list(SIZES)
    np.testing.assert_allclose(logreg.get_ydata(), [0.33, 0.28, 0.23, 0.18])
    # gnb and vae are both generative: one hue family, each its own shade, dash and marker
    gnb, vae = line_of("gnb"), line_of("vae")
    assert gnb.get_color() != vae.get_color() and gnb.get_marker() != vae.get_marker()
    assert gnb.get_linestyle() != vae.get_linestyle()
    bayes = next(ln for ln in ax.get_lines() if ln.get_label() == "Bayes error")
    np.testing.assert_allclose(bayes.get_ydata(), [0.05, 0.05])
    assert bayes.get_linestyle() == ":"
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert {"logreg", "gnb", "vae", "Bayes error"} <= set(labels)
    # bands stay inside [0, 1]
    for band in ax.collections:
        for path in band.get_paths():
            assert path.vertices[:, 1].min() >= 0.0 and path.vertices[:, 1].max() <= 1.0
    # A long model spec is broken into lines in the legend (figures.wrap_label).
    long = "mlp?hidden=256-256-256&steps=500&batch_size=128&learning_rate=0.001"
    renamed = rows[rows["task"] == "gauss_2d"].replace({"model": {"logreg": long}})
    styles = figures.model_styles({**MODELS, long: "discriminative"})
    fig = figures._learning_curve_figure(renamed, "gauss_2d", styles)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert figures.wrap_label(long) in legend and "\n" in figures.wrap_label(long)


def test_model_styles_give_fifteen_models_fifteen_looks_in_paradigm_hues():
    """15 models of four families (the quick suite's size): every look differs, and each
    family keeps its hue (blues, oranges, greens, greys)."""
    from matplotlib.colors import rgb_to_hsv

    paradigms = {
        **{f"d{i}": "discriminative" for i in range(6)},
        **{f"g{i}": "generative" for i in range(5)},
        "hybrid": "hybrid",
        **{f"sk:M{i}": "generative" for i in range(3)},
    }
    styles = figures.model_styles(paradigms)
    looks = {(st["color"], st["dashes"], st["marker"]) for st in styles.values()}
    assert len(looks) == len(paradigms) == 15
    assert len({st["color"] for st in styles.values()}) == 15
    hue = {m: rgb_to_hsv(st["color"])[0] * 360 for m, st in styles.items()}
    sat = {m: rgb_to_hsv(st["color"])[1] for m, st in styles.items()}
    assert all(190 <= hue[f"d{i}"] <= 230 for i in range(6))  # blue
    assert all(15 <= hue[f"g{i}"] <= 40 for i in range(5))  # orange
    assert 90 <= hue["hybrid"] <= 160  # green
    assert all(sat[f"sk:M{i}"] < 0.05 for i in range(3))  # grey, whatever the paradigm
    assert styles["sk:M0"]["family"] == "reference"


def test_paradigm_figure_and_likelihood_bars_stay_in_range(rows, tmp_path):
    paths = figures.paradigm_curves(rows, tmp_path)
    assert sorted(p.name for p in paths) == ["paradigms.pdf", "paradigms.png", "paradigms.svg"]
    near_one = rows.assign(accuracy=np.minimum(rows["accuracy"] + 0.3, 1.0))
    fig = figures._likelihood_vs_accuracy_figure(near_one)
    for ax in fig.axes:
        for coll in ax.collections:
            for seg in coll.get_segments():
                assert seg[:, 1].max() <= 1.0 + 1e-12


def test_learning_curves_write_png_svg_and_pdf(rows, tmp_path):
    paths = figures.learning_curves(rows, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        f"learning_curve_{task}.{ext}"
        for task in ("breast_cancer", "gauss_2d")
        for ext in ("pdf", "png", "svg")
    ]
    for p in paths:
        assert p.parent == tmp_path / "figures"
        assert p.stat().st_size > 1000
    png = (tmp_path / "figures" / "learning_curve_gauss_2d.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = ET.parse(tmp_path / "figures" / "learning_curve_gauss_2d.svg").getroot()
    assert svg.tag.endswith("svg")


# --- build --------------------------------------------------------------------------------


def test_build_report_writes_every_format(rows, tmp_path):
    run = write_run(tmp_path / "run_a", rows)
    out = reports.build_report([run], tmp_path / "report")
    expected = {
        "index.html",
        "report.md",
        "results.csv",
        "references.bib",
        "tables/crossover.tex",
        "tables/curve_fits.tex",
        *(f"tables/{kind}_{t}.tex" for kind in ("headline", "learning_curve") for t in TASKS),
        *(
            f"figures/{stem}.{ext}"
            for stem in (
                *(f"learning_curve_{t}" for t in TASKS),
                *(f"crossover_{t}" for t in TASKS),
                "accuracy_vs_compute",
                "likelihood_vs_accuracy",
                "paradigms",
            )
            for ext in ("png", "svg", "pdf")
        ),
        *(
            f"figures/paper/{stem}_{preset}.{ext}"
            for stem in (
                *(f"learning_curve_{t}" for t in TASKS),
                *(f"crossover_{t}" for t in TASKS),
                "paradigms",
            )
            for preset in ("column", "text")
            for ext in ("pdf", "png")
        ),
    }
    assert set(out) == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.values())

    md = out["report.md"].read_text()
    assert md.startswith("# gdbench report\n")
    assert "Runs: `run_a`. 120 cells, 2 not ok" in md
    prov = provenance.collect()
    commit = f"`{prov['git_commit'][:12]}`" if prov["git_commit"] else "unknown"
    assert f"| run_a | 0.1.0 | {commit}" in md
    assert f"| {prov['versions']['jax']} | cpu × 1 | 2026-01-02T03:04:05Z |" in md
    logreg = [accuracy_of("gauss_2d", "logreg", 3, s) for s in SEEDS]
    assert f"| logreg | discriminative | 5 | {acc_text(logreg)} |" in md
    assert "![learning_curve_gauss_2d](figures/learning_curve_gauss_2d.png)" in md
    assert "(figures/learning_curve_gauss_2d.svg)" in md
    assert "(figures/learning_curve_gauss_2d.pdf)" in md
    for section in ("Summary", "Sample efficiency", "Calibration", "Compute", "Provenance"):
        assert f"## {section}\n" in md
    # gnb is 0.02 more accurate than logreg on every seed and size, by exactly the same amount:
    # zero variance over seeds and no per-example outcomes in these rows, so nothing says how
    # much of it the test set's sampling could give (`paired_p` is NaN, never 0).
    # No suite pairs: the "tests" column would be empty everywhere and is left out.
    assert "| gauss_2d | gnb vs logreg | no significant difference | — |" in md
    assert "| task | pair | regime |" in md
    html = out["index.html"].read_text()
    assert html.count("data:image/png;base64,") == md.count("![")

    csv = pd.read_csv(out["results.csv"])
    assert len(csv) == 120
    assert (csv["run"] == "run_a").all()
    row = csv[(csv["model"] == "logreg") & (csv["n_train"] == 80) & (csv["seed"] == 4)].iloc[0]
    assert row["accuracy"] == accuracy_of(row["task"], "logreg", 3, 4)


def test_report_uses_the_pairs_the_suite_names(rows, tmp_path):
    run = write_run(tmp_path / "run_a", rows)
    manifest = store.read_manifest(run)
    manifest["config"] = {"pairs": [["vae", "logreg", "the only pair asked for"]]}
    store.write_manifest(run, manifest)
    md = reports.build_report([run], tmp_path / "report")["report.md"].read_text()
    assert "| gauss_2d | vae vs logreg | the only pair asked for |" in md
    assert "gnb vs logreg" not in md


def test_build_report_refuses_empty_runs(tmp_path):
    store.write_manifest(tmp_path / "empty", {"provenance": {}})
    with pytest.raises(reports.EmptyRunError, match="no result rows"):
        reports.build_report(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(reports.EmptyRunError):
        reports.build_report([], tmp_path / "out")
    assert not (tmp_path / "out" / "report.md").exists()


def test_built_report_renders_with_its_figures_in_chromium(rows, tmp_path):
    """The issue's check: index.html of a real build opens in a browser, figures and all."""
    from tests.test_html import CHROMIUM_HINT, PROBE, chromium, run_chromium

    binary = chromium()
    if binary is None:
        pytest.skip(CHROMIUM_HINT)
    out = reports.build_report([write_run(tmp_path / "run_a", rows)], tmp_path / "report")
    page = out["index.html"].read_text(encoding="utf-8")
    md = out["report.md"].read_text()
    probed = tmp_path / "report" / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    done = run_chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    )
    found = re.search(r"PROBE imgs=(\d+) loaded=(\d+) tables=(\d+) END", done.stdout)
    assert found, f"probe not in the DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    n_imgs, n_loaded, n_tables = map(int, found.groups())
    # the headline paradigm figure, 2 learning curves, 2 crossovers, 2 scatter plots
    assert n_imgs == md.count("![") == 7
    assert "figures/paradigms.png" in md
    assert n_loaded == n_imgs, "a figure did not decode in the browser"
    assert n_tables == sum(line.startswith("|---") for line in md.splitlines()) >= 10


def test_latex_fit_and_crossover_tables_print_no_extrapolated_numbers(rows, tmp_path):
    """The curve-fit table carries the model-free "n to best+0.01" and the fits' flags; no
    table prints a censored crossing as 0 or inf."""
    run = write_run(tmp_path / "run_a", rows)
    out = reports.build_report([run], tmp_path / "report")
    fits = out["tables/curve_fits.tex"].read_text()
    header = header_cells(fits)
    assert "$n$ to best$+0.01$" in header and "$n$ to $c+0.01$" in header
    body = table_rows(fits)
    assert len(body) == rows.groupby(["task", "model"]).ngroups
    for cells in body:
        n_within = dict(zip(header, cells, strict=True))["$n$ to $c+0.01$"]
        # either a number inside the tested sizes (10..80) or says it is beyond/below them
        assert n_within.startswith(("$>$", "$<$")) or (10 <= float(n_within.split(" ")[0]) <= 80)
    cross = out["tables/crossover.tex"].read_text()
    assert "inf" not in cross and "nan" not in cross
