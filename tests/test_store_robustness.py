"""Runs that survive: kill -9, two writers, content-keyed resume, failures, bad stores.

The process tests start real ``gdbench run`` processes (``python -m gdbench.cli``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from gdbench import chunks, cli, engine, results, runner
from gdbench.results import store

TASKS = ["iris", "wine"]
MODELS = ["gnb", "gnb_shared", "bnb", "lda", "qda", "logreg"]
SIZES = [9, 30]
SEEDS = 3
GRIDS = len(TASKS) * len(MODELS)
ROWS = GRIDS * len(SIZES) * SEEDS


def run_args(out: Path, models=MODELS, tasks=TASKS) -> list[str]:
    return [
        "run",
        "--tasks",
        ",".join(tasks),
        "--models",
        ",".join(models),
        "--sizes",
        ",".join(map(str, SIZES)),
        "--seeds",
        str(SEEDS),
        "--out",
        str(out),
        "--no-progress",
    ]


def start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cli.command(*run_args(out)),  # this source tree's gdbench, as the in-process runs
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def parts(out: Path) -> dict[str, int]:
    """Part file name -> inode and modification time, to detect rewrites."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in store.part_paths(out)}


def test_kill_9_keeps_finished_grids_and_resume_computes_only_the_rest(tmp_path):
    out = tmp_path / "run"
    proc = start(out)
    deadline = time.monotonic() + 600  # generous: CI machines can be heavily loaded
    while len(store.part_paths(out)) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no grid finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    survived = parts(out)
    df = results.load(out)  # loads without error after the kill
    assert 2 <= len(survived) < GRIDS
    assert len(df) == len(survived) * len(SIZES) * SEEDS
    assert (df["status"] == "ok").all()
    # A kill during a write may leave a hidden temporary file; it is never taken for a part.
    leftovers = {p.name for p in (out / "rows").glob(".*.tmp")}
    assert not leftovers & {p.name for p in store.part_paths(out)}

    assert cli.main(run_args(out)) == 0
    after = parts(out)
    assert {k: after[k] for k in survived} == survived  # finished grids were not recomputed
    assert len(after) == GRIDS
    df = results.load(out)
    assert len(df) == ROWS and (df["status"] == "ok").all()
    assert json.loads((out / "manifest.json").read_text())["finished_utc"]


def test_two_writers_lose_nothing_and_compute_each_grid_once(tmp_path):
    out = tmp_path / "shared"
    procs = [start(out), start(out)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    df = results.load(out)  # would raise if a cell were stored twice
    assert len(df) == ROWS and (df["status"] == "ok").all()
    assert len(store.part_paths(out)) == GRIDS  # each grid written once
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["grids"]) == GRIDS  # both writers' records merged, none overwritten
    assert manifest["finished_utc"]


def test_another_argument_order_recomputes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(run_args(out, models=["gnb", "logreg?C=1e4"])) == 0
    before = parts(out)
    args = run_args(out, models=["logreg?C=10000", "gnb"], tasks=TASKS[::-1])
    assert cli.main(args) == 0
    assert parts(out) == before
    assert "cannot be resumed" not in capsys.readouterr().err


@pytest.mark.fast
def test_cell_keys_cover_data_model_size_seed_and_code(tmp_path):
    from gdbench import models, tasks

    iris, wine = tasks.load("iris"), tasks.load("wine")
    gnb = models.get("gnb")
    key = runner.cell_key(iris, gnb, 30, 1)
    assert key == runner.cell_key(iris, models.get("gnb?var_smoothing=0.001"), 30, 1)
    others = {
        runner.cell_key(wine, gnb, 30, 1),
        runner.cell_key(iris, models.get("gnb?var_smoothing=1e-9"), 30, 1),
        runner.cell_key(iris, models.get("gnb_shared"), 30, 1),
        runner.cell_key(iris, gnb, 31, 1),
        runner.cell_key(iris, gnb, 30, 2),
    }
    assert key not in others and len(others) == 5


def test_a_failing_grid_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = engine.run_cells

    def flaky(task, spec, pairs, cell_batch=chunks.DEFAULT_CELL_BATCH, **options):
        if spec.name == "lda":
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nmore detail")
        return real(task, spec, pairs, cell_batch, **options)

    monkeypatch.setattr(engine, "run_cells", flaky)
    out = tmp_path / "run"
    assert cli.main(run_args(out, models=["gnb", "lda", "logreg"])) == 0
    df = results.load(out)
    failed = df[df["model"] == "lda"]
    assert len(df) == 3 * len(TASKS) * len(SIZES) * SEEDS
    assert (failed["status"] == "failed").all()
    assert (failed["message"] == "RuntimeError: RESOURCE_EXHAUSTED: out of memory").all()
    assert (df.loc[df["model"] != "lda", "status"] == "ok").all()

    report = tmp_path / "report"
    reports_dir = cli.main(["report", str(out), "--out", str(report)])
    assert reports_dir == 0
    assert "RESOURCE_EXHAUSTED" in (report / "report.md").read_text()

    monkeypatch.setattr(engine, "run_cells", real)  # the failure is gone: a rerun fixes it
    assert cli.main(run_args(out, models=["gnb", "lda", "logreg"])) == 0
    df = results.load(out)
    assert len(df) == 3 * len(TASKS) * len(SIZES) * SEEDS
    assert (df["status"] == "ok").all()


def test_diverged_cells_are_data_and_shown_in_the_report(tmp_path):
    out = tmp_path / "run"
    args = run_args(out, models=["gnb", "mlp?learning_rate=1e30&steps=50"], tasks=["wine"])
    assert cli.main(args) == 0
    df = results.load(out)
    mlp = df[df["model"].str.startswith("mlp")]
    assert (mlp["status"] == "diverged").all() and mlp["message"].str.contains("non-finite").all()
    assert (df.loc[df["model"] == "gnb", "status"] == "ok").all()
    assert cli.main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "diverged" in md


def test_corrupted_part_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(run_args(out, models=["gnb"], tasks=["iris"])) == 0
    part = store.part_paths(out)[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # truncated
    with pytest.raises(results.CorruptPartError, match="truncated or corrupted"):
        results.load(out)
    for argv in (["report", str(out)], run_args(out, models=["gnb"], tasks=["iris"])):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "is unreadable (truncated or corrupted" in err
        assert "delete it and run the same command again" in err


def test_unwritable_output_directory_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(run_args(blocker / "run", models=["gnb"], tasks=["iris"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write to output directory" in err


def test_report_of_an_empty_run_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "empty"
    store.write_manifest(out, {"name": "empty"})
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no result rows" in err and "no grid of it has finished" in err


def test_same_command_gives_bit_identical_metrics(tmp_path):
    models = ["gnb", "qda", "logreg", "linsvm", "mlp?steps=100"]
    frames = []
    for name in ("a", "b"):
        assert cli.main(run_args(tmp_path / name, models=models, tasks=["wine"])) == 0
        frames.append(results.load(tmp_path / name))
    metrics = ["accuracy", "nll", "ece", "brier", "log_lik", "bits_per_dim", "status"]
    key = ["task", "model", "n_train", "seed"]
    a, b = (f.sort_values(key)[key + metrics].reset_index(drop=True) for f in frames)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
