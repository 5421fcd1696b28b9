"""A grid's metrics as a program of their own, shared by the models of a task's shapes.

Where every cell's test-set predictions fit ``gdbench.chunks.PREDICTIONS_BYTES`` the engine
evaluates a grid in two programs: the model's predictions, then ``build_metrics_program``'s
metrics, which every model on tasks of the same shapes shares. Checked here: the rows equal
those of the single evaluate program (the budget set to 0), for a discriminative model, a
generative one, and a VAE (whose ELBO is a second prediction), and the second model on a
task reuses the first one's compiled metrics program.
"""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import chunks, compile_cache, engine, models, tasks
from gdbench.rows import METRIC_COLUMNS

PAIRS = [(20, 0), (20, 1), (40, 0), (60, 2)]
COLUMNS = [c for c in METRIC_COLUMNS if c != "test_correct"] + ["log_lik", "log_lik_sd", "elbo"]


@pytest.mark.parametrize("spec_name", ["logreg", "gnb", "vae?steps=30"])
def test_rows_equal_those_of_one_evaluate_program(spec_name: str, monkeypatch):
    task = tasks.load("wine")
    spec = models.get(spec_name)
    template = engine.build_template(task, spec)
    assert engine.predictions_fit(task, len(PAIRS), template)
    split = engine.run_cells(task, spec, PAIRS, quality=False).rows
    monkeypatch.setattr(engine, "PREDICTIONS_BYTES", 0)
    assert not engine.predictions_fit(task, len(PAIRS), template)
    whole = engine.run_cells(task, spec, PAIRS, quality=False).rows
    checked = 0
    for a, b in zip(split, whole, strict=True):
        for column in COLUMNS:
            x, y = a[column], b[column]
            if isinstance(x, float) and np.isnan(x):
                assert isinstance(y, float) and np.isnan(y), column
                continue
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=column)
            checked += 1
        assert a["test_correct"] == b["test_correct"]
    assert checked >= 8 * len(PAIRS)  # the eight classification columns, at least
    if spec_name.startswith("vae"):
        assert np.isfinite(split[0]["elbo"]) and np.isfinite(split[0]["log_lik"])
    if spec_name == "logreg":  # a model that reports no density: blanked by the engine
        assert np.isnan(split[0]["log_lik"]) and np.isnan(split[0]["elbo"])


def test_models_of_a_task_share_the_metrics_program(monkeypatch):
    before = compile_cache.directory()
    compile_cache.enable(None)
    compiled = []
    original = compile_cache.compile_program

    def recording(fn, args, name, static):
        program, cached = original(fn, args, name, static)
        compiled.append((name, cached))
        return program, cached

    monkeypatch.setattr(compile_cache, "compile_program", recording)
    try:
        compile_cache.clear_memo()
        task = tasks.load("wine")
        for spec_name in ("gnb", "lda"):
            engine.run_cells(task, models.get(spec_name), PAIRS, quality=False)
        metrics = [cached for name, cached in compiled if name == "metrics"]
        assert metrics == [False, True]  # compiled for gnb, taken from the memo for lda
        assert [cached for name, cached in compiled if name == "predict"] == [False, False]
        assert chunks.metrics_chunk(task) >= 1
    finally:
        compile_cache.enable(before)
