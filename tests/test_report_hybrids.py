"""Report pages for GANs, hybrids and sample quality: fake runs written through the real store
(rows with `write_grid`, traces with `write_traces`), a real `build_report`, and every number
of the new tables checked against a mean and t-interval computed here with numpy and scipy."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from gdbench import reports
from gdbench.reports import hybrids
from gdbench.results import store
from tests.test_reports import write_run

TASKS = ("digits_0v1", "gauss_2d")
SIZES = (10, 20)
SEEDS = (0, 1, 2, 3)
LARGEST = max(SIZES)
#: model -> (paradigm, model_config); plain `hybrid` carries its default lam in its config only.
MODELS = {
    "logreg": ("discriminative", {"l2": 1e-3}),
    "gan": ("hybrid", {"loss": "bce"}),
    "gan?loss=hinge": ("hybrid", {"loss": "hinge"}),
    "jem": ("hybrid", {}),
    "hybrid?lam=0": ("hybrid", {"lam": 0.0}),
    "hybrid?lam=0.25": ("hybrid", {"lam": 0.25}),
    "hybrid": ("hybrid", {"lam": 0.5}),
    "hybrid?lam=1": ("hybrid", {"lam": 1.0}),
}
SAMPLERS = [m for m in MODELS if m != "logreg"]
LAMS = {"hybrid?lam=0": 0.0, "hybrid?lam=0.25": 0.25, "hybrid": 0.5, "hybrid?lam=1": 1.0}
DIVERGED = ("gauss_2d", "gan", LARGEST, 3)  # a not-ok cell: excluded from every statistic
STEPS = np.array([0, 50, 100, 150, 200])


def fake_rows() -> pd.DataFrame:
    """2 tasks x 8 models x 2 sizes x 4 seeds; quality metrics at the largest size only."""
    rng = np.random.default_rng(7)
    rows = []
    for task in TASKS:
        for model, (paradigm, config) in MODELS.items():
            lam = LAMS.get(model)
            for k, n in enumerate(SIZES):
                for seed in SEEDS:
                    quality = {m: np.nan for m in hybrids.QUALITY}
                    if model in SAMPLERS and n == LARGEST:
                        quality = {
                            "fd": rng.uniform(1.0, 30.0),
                            "classifier_score": rng.uniform(1.0, 2.0),
                            "precision": rng.uniform(0.0, 1.0),
                            "recall": rng.uniform(0.0, 1.0),
                            "cas": rng.uniform(0.5, 1.0),
                            "cas_real": np.nan if model == "jem" else rng.uniform(0.5, 1.0),
                        }
                    status, acc = "ok", float(rng.uniform(0.6, 0.95))
                    if (task, model, n, seed) == DIVERGED:
                        status, acc = "diverged", np.nan
                        # in range for the schema, far from the others: must not be averaged
                        quality = {"fd": 999.0, "classifier_score": 99.0, "precision": 1.0}
                        quality.update({"recall": 1.0, "cas": 0.0, "cas_real": 0.0})
                    rows.append(
                        {
                            "task": task,
                            "model": model,
                            "paradigm": paradigm,
                            "n_train": n,
                            "n_val": 0,
                            "seed": seed,
                            "accuracy": acc,
                            "nll": float(rng.uniform(0.1, 0.6)) + 0.1 * k,
                            "ece": 0.05,
                            "brier": 0.2,
                            "log_lik": float(rng.normal(-3.0, 0.3)) if lam is not None else np.nan,
                            "fit_s": 0.1,
                            "predict_s": 0.01,
                            "compile_s": 1.0,
                            "grid_cells": len(SIZES) * len(SEEDS),
                            "status": status,
                            "message": "nan loss" if status != "ok" else "",
                            "bayes_accuracy": 0.9 if task == "gauss_2d" else np.nan,
                            "model_config": json.dumps(config),
                            "preprocess": "standardize",
                            **quality,
                        }
                    )
    return pd.DataFrame(rows)


def fake_traces() -> list[tuple[str, dict[str, np.ndarray], dict]]:
    """Traces of `gan` on digits_0v1 (8x8 images, with samples) and of `gan?loss=hinge` on
    gauss_2d (no image shape, no samples)."""
    rng = np.random.default_rng(11)
    out = []
    for task, model, shape in (("digits_0v1", "gan", [8, 8]), ("gauss_2d", "gan?loss=hinge", None)):
        s, t = len(SEEDS), len(STEPS)
        arrays = {
            "trace_step": STEPS,
            "d_loss": rng.uniform(0.5, 1.5, (s, t)),
            "g_loss": rng.uniform(0.5, 3.0, (s, t)),
            "d_acc_real": rng.uniform(0.4, 1.0, (s, t)),
            "d_acc_fake": rng.uniform(0.4, 1.0, (s, t)),
            "class_acc_real": rng.uniform(0.5, 1.0, (s, t)),
            "class_acc_fake": rng.uniform(0.0, 1.0, (s, t)),
        }
        if shape:
            arrays["trace_samples"] = rng.uniform(0.0, 16.0, (t, 2, 3, 64))
        meta = {
            "task": task,
            "model": model,
            "n_train": LARGEST,
            "seeds": list(SEEDS),
            "image_shape": shape,
        }
        out.append((f"{task}__{model}", arrays, meta))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A run with every kind of hybrid data, and its report."""
    root = tmp_path_factory.mktemp("hybrids")
    run = write_run(root / "run_h", fake_rows())
    for name, arrays, meta in fake_traces():
        store.write_traces(run, name, arrays, meta)
    out = reports.build_report([run], root / "report")
    return run, out


def ok_rows(task: str, model: str, n: int = LARGEST) -> pd.DataFrame:
    df = fake_rows()
    keep = (df["task"] == task) & (df["model"] == model) & (df["n_train"] == n)
    return df[keep & (df["status"] == "ok")]


def mean_ci(values) -> tuple[float, float]:
    """Mean and 95% Student-t half-width of `values` (NaN dropped), by scipy."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    half = sps.t.ppf(0.975, len(v) - 1) * np.std(v, ddof=1) / np.sqrt(len(v))
    return float(np.mean(v)), float(half)


def section(md: str, heading: str) -> str:
    """The text of `md` from the line `heading` to the next heading of the same or a higher
    level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = md.index(heading + "\n")
    rest = md[start + len(heading) + 1 :]
    stop = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: stop.start()] if stop else rest


def table_rows(text: str) -> list[dict[str, str]]:
    """The first Markdown pipe table of `text` as dicts keyed by header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [
        dict(zip(header, [c.strip() for c in ln.strip("|").split(" | ")], strict=True))
        for ln in lines[2:]
    ]


def assert_cell(cell: str, mean: float, half: float, decimals: int = 3) -> None:
    """`cell` reads 'mean ± half' rounded to `decimals` decimals."""
    found = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", cell)
    assert found, cell
    tol = 0.5 * 10.0**-decimals + 1e-9
    assert abs(float(found[1]) - mean) <= tol, (cell, mean)
    assert abs(float(found[2]) - half) <= tol, (cell, half)


def assert_interval(cell: str, values) -> None:
    """`cell` reads 'mean (lo–hi)': the seeds-only accuracy interval of rows without
    per-example outcomes, statsmodels' Wilson interval at the effective size p(1-p)/V
    (V = s^2/S) scaled by (z/t_{S-1})^2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    p, k = v.mean(), len(v)
    n_eff = p * (1 - p) / (v.var(ddof=1) / k) * (sps.norm.ppf(0.975) / sps.t.ppf(0.975, k - 1)) ** 2
    lo, hi = proportion_confint(p * n_eff, n_eff, method="wilson")
    assert cell == f"{p:.3f} ({lo:.3f}–{hi:.3f})", (cell, p, lo, hi)


# --- the built report -------------------------------------------------------------------------


def test_section_tables_and_figures_exist(built):
    _, out = built
    md = out["report.md"].read_text()
    assert "## Hybrids and sample quality\n" in md
    for part in ("GAN training", "Samples over training", "Sample quality", "Lambda sweep"):
        assert f"### {part}\n" in md
    assert md.index("## Hybrids and sample quality") < md.index("## Figures")
    stems = [
        "lambda_sweep",
        store.safe_name(f"gan_training_digits_0v1__gan__n{LARGEST}"),
        store.safe_name(f"gan_training_gauss_2d__gan?loss=hinge__n{LARGEST}"),
        store.safe_name(f"training_samples_digits_0v1__gan__n{LARGEST}"),
    ]
    for stem in stems:
        for ext in ("png", "svg", "pdf"):
            path = out[f"figures/{stem}.{ext}"]
            assert path.is_file() and path.stat().st_size > 0
        assert f"![{stem}](figures/{stem}.png)" in md
    # no sample grid for the task without an image shape
    assert not any(k.startswith("figures/training_samples_gauss_2d") for k in out)
    for name in ("sample_quality_digits_0v1", "sample_quality_gauss_2d", "lambda_sweep"):
        tex = out[f"tables/{name}.tex"].read_text()
        assert "\\begin{tabular}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
        assert f"[{name}.tex](tables/{name}.tex)" in md
    html = out["index.html"].read_text()
    assert html.count("data:image/png;base64,") == md.count("![")
    assert "Hybrids and sample quality</h2>" in html


def test_quality_table_is_the_mean_of_the_rows(built):
    _, out = built
    md = out["report.md"].read_text()
    quality = section(md, "### Sample quality")
    for task in TASKS:
        text = section(quality, f"#### {task}")
        assert f"At n_train = {LARGEST} " in text
        rows = {r["model"]: r for r in table_rows(text)}
        assert sorted(rows) == sorted(SAMPLERS)  # logreg has no samples
        for model in SAMPLERS:
            mine = ok_rows(task, model)
            assert rows[model]["n_train"] == str(LARGEST)
            not_ok = 1 if (task, model) == DIVERGED[:2] else 0
            expected_seeds = str(len(mine)) + (f" (+{not_ok} not ok)" if not_ok else "")
            assert rows[model]["seeds"] == expected_seeds
            for metric, header in hybrids.QUALITY_HEADERS.items():
                if mine[metric].isna().all():
                    assert rows[model][header] == "—"
                else:
                    assert_cell(rows[model][header], *mean_ci(mine[metric]))
    tex = out["tables/sample_quality_gauss_2d.tex"].read_text()
    mean, half = mean_ci(ok_rows("gauss_2d", "gan")["fd"])
    # the mean in a number column, its half-width in the column beside it
    assert f"{mean:.3f} & $\\pm$ {half:.3f}" in tex


def test_lambda_sweep_table_is_ordered_by_lam_and_matches_rows(built):
    _, out = built
    text = section(out["report.md"].read_text(), "### Lambda sweep")
    assert "lam = 1 is the generative solution" in text
    assert "lam = 0 the discriminative one" in text
    rows = table_rows(text)
    by_lam = sorted(LAMS, key=LAMS.get)
    assert [(r["task"], r["model"]) for r in rows] == [(t, m) for t in TASKS for m in by_lam]
    assert [float(r["lam"]) for r in rows] == [LAMS[m] for _ in TASKS for m in by_lam]
    for r in rows:
        mine = ok_rows(r["task"], r["model"])
        assert r["n_train"] == str(LARGEST)
        assert_interval(r["accuracy"], mine["accuracy"])
        assert_cell(r["NLL (nats)"], *mean_ci(mine["nll"]))
        assert_cell(r["log p(x) (nats)"], *mean_ci(mine["log_lik"]), decimals=2)
    tex = out["tables/lambda_sweep.tex"].read_text()
    # display names: "hybrid?lam=0.25" is "Hybrid (lam=0.25)"
    assert (
        tex.index("Hybrid (lam=0)") < tex.index("Hybrid (lam=0.25)") < tex.index("Hybrid (lam=1)")
    )


def test_gan_final_values_are_the_last_trace_column(built):
    run, out = built
    text = section(out["report.md"].read_text(), "### GAN training")
    rows = {(r["task"], r["model"]): r for r in table_rows(text)}
    traces = store.read_traces(run)
    assert len(traces) == len(rows) == 2
    for item in traces:
        r = rows[(item["task"], item["model"])]
        assert r["last step"] == str(STEPS[-1]) and r["seeds"] == str(len(SEEDS))
        assert hybrids.trace_series(item) == list(hybrids.TRACE_SERIES)
        for name in hybrids.TRACE_SERIES:
            assert_cell(r[hybrids.TRACE_LABELS[name]], *mean_ci(item[name][:, -1]))


def test_report_without_hybrid_data_has_no_such_section(tmp_path):
    df = fake_rows()
    plain = df[df["model"].isin(["logreg", "jem", "hybrid"]) & (df["task"] == "gauss_2d")].copy()
    plain[list(hybrids.QUALITY)] = np.nan  # jem and one lam: nothing to report
    out = reports.build_report([write_run(tmp_path / "run_plain", plain)], tmp_path / "report")
    md = out["report.md"].read_text()
    assert "Hybrids and sample quality" not in md
    assert "Lambda sweep" not in md
    assert not any(
        k.startswith(("figures/gan_", "figures/training_", "figures/lambda", "tables/sample_q"))
        or k == "tables/lambda_sweep.tex"
        for k in out
    )


# --- the pieces -------------------------------------------------------------------------------


@pytest.mark.fast
def test_seed_band_is_the_t_interval_of_finite_values():
    a = np.array([[1.0, 2.0, np.nan], [3.0, np.nan, np.nan], [5.0, 4.0, np.nan]])
    mean, half, count = hybrids.seed_band(a)
    assert count.tolist() == [3, 2, 0]
    assert mean[0] == pytest.approx(3.0) and mean[1] == pytest.approx(3.0)
    assert np.isnan(mean[2]) and np.isnan(half[2])
    assert half[0] == pytest.approx(mean_ci([1.0, 3.0, 5.0])[1], rel=1e-12)
    assert half[1] == pytest.approx(mean_ci([2.0, 4.0])[1], rel=1e-12)


def test_training_figure_draws_the_mean_over_seeds():
    _, arrays, meta = fake_traces()[0]
    fig = hybrids._training_figure({**meta, **arrays})
    loss_ax, acc_ax, class_ax = fig.axes
    labels = [line.get_label() for line in loss_ax.lines]
    assert labels == ["discriminator loss", "generator loss"]
    np.testing.assert_allclose(loss_ax.lines[0].get_xdata(), STEPS)
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), arrays["d_loss"].mean(axis=0))
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), arrays["d_acc_fake"].mean(axis=0))
    assert acc_ax.lines[2].get_label() == "chance (0.5)"
    assert [line.get_label() for line in class_ax.lines] == [
        "class head accuracy on real",
        "class head accuracy on generated",
    ]
    # the band is mean ± the t half-width over the 4 seeds
    band = acc_ax.collections[0].get_paths()[0].vertices
    mean, half = mean_ci(arrays["d_acc_real"][:, 0])
    assert band[:, 1].min() <= mean - half + 1e-9 and np.isclose(band[:, 0].min(), 0.0)


def test_lambda_axis_is_symmetric_log_for_sweeps_dense_near_zero():
    lams = np.array([0.0, 0.01, 0.03, 0.1, 0.3, 1.0])
    stats = pd.DataFrame(
        {"task": "gauss_2d", "lam": lams, "model": [f"hybrid?lam={v:g}" for v in lams]}
    ).assign(n_train=20, accuracy_mean=0.8, accuracy_ci95=0.3, accuracy_count=4)
    fig = hybrids._sweep_figure(stats, ["accuracy"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    np.testing.assert_allclose(ax.get_xticks(), lams)
    # accuracy error bars are clipped to [0, 1]
    segments = ax.collections[0].get_segments()
    assert max(seg[:, 1].max() for seg in segments) == pytest.approx(1.0)
    wide = stats.assign(lam=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert hybrids._sweep_figure(wide, ["accuracy"]).axes[0].get_xscale() == "linear"


def test_sample_mosaic_places_each_image():
    t, c, k, h, w = 3, 2, 3, 4, 5
    x = np.arange(t * c * k * h * w, dtype=float).reshape(t, c, k, h * w)
    mosaic, rows, cols = hybrids.sample_mosaic(x, (h, w), gap=1, class_gap=3)
    block = k * (w + 1) - 1
    assert mosaic.shape == (t * (h + 1) - 1, c * block + (c - 1) * 3)
    for ti in range(t):
        for ci in range(c):
            for j in range(k):
                top, left = ti * (h + 1), ci * (block + 3) + j * (w + 1)
                np.testing.assert_array_equal(
                    mosaic[top : top + h, left : left + w], x[ti, ci, j].reshape(h, w)
                )
    assert np.isnan(mosaic).sum() == mosaic.size - x.size
    assert len(rows) == t and len(cols) == c


@pytest.mark.parametrize(
    ("model", "config", "lam"),
    [
        ("hybrid", '{"lam": 0.5}', 0.5),
        ("hybrid?lam=0.25", '{"lam": 0.25}', 0.25),
        ("hybrid?lam=0.75&steps=10", "{}", 0.75),
        ("hybrid", "{}", np.nan),
    ],
)
def test_model_lam_reads_config_then_spec(model, config, lam):
    got = hybrids.model_lam(model, config)
    assert (np.isnan(got) and np.isnan(lam)) or got == lam


def test_one_lam_value_is_no_sweep():
    df = fake_rows()
    assert hybrids.lambda_sweep_stats(df[df["model"] == "hybrid"]).empty
    assert hybrids.lambda_sweep_stats(df[df["model"] == "logreg"]).empty
    two = hybrids.lambda_sweep_stats(df[df["model"].isin(["hybrid", "hybrid?lam=1"])])
    assert two["lam"].tolist() == [0.5, 1.0, 0.5, 1.0]
    assert set(two["n_train"]) == {LARGEST}


def test_quality_stats_skip_missing_columns_and_not_ok_rows():
    df = fake_rows()
    assert hybrids.quality_stats(df.drop(columns=list(hybrids.QUALITY))).empty
    stats = hybrids.quality_stats(df)
    g = stats[(stats["task"] == "gauss_2d") & (stats["model"] == "gan")].iloc[0]
    assert (g["n_ok"], g["n_not_ok"], g["fd_count"]) == (3, 1, 3)
    assert g["fd_mean"] == pytest.approx(ok_rows("gauss_2d", "gan")["fd"].mean())
