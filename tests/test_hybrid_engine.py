"""The engine's wiring of issue 7: training traces and sample-quality columns, end to end.

- A GAN grid run through the CLI stores its traces (largest size, every seed) and its rows carry
  the sample-quality columns at that size only; a discriminative model's rows have none; the
  report shows the hybrids section.
- The quality columns mean what they say on a model whose family holds the true density:
  Gaussian naive Bayes on ``gauss_nb`` (independent Gaussian features per class). Its samples
  lie on the data's manifold and a classifier trained on them does about as well as one trained
  on the same number of real examples.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gdbench import cli, engine, models, quality_programs, results, tasks
from gdbench.results import store

GAN = "gan?hidden=16&steps=200&trace_every=50"  # canonical spelling (keys sorted)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid") / "run"
    argv = ["run", "--tasks", "gauss_nb", "--models", f"{GAN},logreg", "--sizes", "20,40"]
    assert cli.main([*argv, "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_gan_traces_are_stored_for_the_largest_size(gan_run):
    (item,) = store.read_traces(gan_run)
    assert (item["task"], item["model"], item["n_train"], item["seeds"]) == (
        "gauss_nb",
        GAN,
        40,
        [0, 1],
    )
    np.testing.assert_array_equal(item["trace_step"], [50, 100, 150, 200])
    for name in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"):
        assert item[name].shape == (2, 4) and np.all(np.isfinite(item[name]))
    assert np.all((item["d_acc_real"] >= 0) & (item["d_acc_real"] <= 1))
    task = tasks.load("gauss_nb")
    assert item["trace_samples"].shape == (4, task.num_classes, 4, task.dim)


def test_quality_columns_only_at_the_largest_size_and_only_for_samplers(gan_run):
    df = results.load(gan_run)
    quality = list(quality_programs.QUALITY_COLUMNS)
    gan = df[df["model"] == GAN]
    assert gan[gan["n_train"] == 40][quality].notna().all().all()
    assert gan[gan["n_train"] == 20][quality].isna().all().all()
    assert df[df["model"] == "logreg"][quality].isna().all().all()
    manifest = json.loads((gan_run / "manifest.json").read_text())
    grid = next(g for g in manifest["grids"].values() if g["model"] == GAN)
    assert grid["quality_cells"] == 2 and grid["quality_compile_s"] > 0


def test_report_has_the_hybrids_section(gan_run, tmp_path):
    from gdbench.reports.build import build_report

    build_report(gan_run, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Hybrids and sample quality" in text


def test_a_well_specified_generative_model_scores_like_real_data():
    task = tasks.load("gauss_nb")
    pairs = [(400, seed) for seed in range(3)]
    rows = pd.DataFrame(engine.run_cells(task, models.get("gnb"), pairs).rows)
    # CAS against the same classifier trained on the 400 real examples the model saw.
    assert (rows["cas_real"] - rows["cas"]).abs().max() < 0.05
    assert (rows["precision"] > 0.5).all() and (rows["recall"] > 0.5).all()
    assert (rows["classifier_score"] >= 1.0).all()
    assert (rows["classifier_score"] <= task.num_classes + 1e-6).all()
    # Fitted on 10 examples instead of 400, the same model's samples are further from the data.
    few = pd.DataFrame(engine.run_cells(task, models.get("gnb"), [(10, s) for s in range(3)]).rows)
    assert few["fd"].mean() > rows["fd"].mean()
    assert few["cas"].mean() < rows["cas"].mean()


@pytest.mark.fast
def test_no_quality_flag_skips_the_quality_programs(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--tasks", "gauss_nb", "--models", "gnb", "--sizes", "20", "--seeds", "2"]
    assert cli.main([*argv, "--out", str(out), "--no-progress", "--no-quality"]) == 0
    df = results.load(out)
    assert df[list(quality_programs.QUALITY_COLUMNS)].isna().all().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["quality"] is False
    (grid,) = manifest["grids"].values()
    assert grid["quality_cells"] == 0 and grid["quality_compile_s"] == 0


def test_a_failing_quality_step_keeps_the_grid_results(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no sampler today")

    monkeypatch.setattr(engine, "run_quality", broken)
    task = tasks.load("gauss_nb")
    rows = engine.run_cells(task, models.get("gnb"), [(20, 0), (40, 0)]).rows
    assert all(r["status"] == "ok" and np.isfinite(r["accuracy"]) for r in rows)
    assert all(np.isnan(r["fd"]) for r in rows)
    big = [r for r in rows if r["n_train"] == 40]
    assert "sample quality not computed: RuntimeError: no sampler today" in big[0]["message"]
    assert all("sample quality" not in r["message"] for r in rows if r["n_train"] == 20)
