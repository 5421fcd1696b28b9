"""``gdbench reproduce``: a stored run made again from its manifest, its numbers compared.

Also what a run's manifest records to make that possible: the command that asked for it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gdbench
from gdbench import cli
from gdbench.reports import reproduce as rep

SMALL = ["--tasks", "iris", "--models", "gnb,logreg", "--sizes", "6,20", "--seeds", "2"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "stored"
    assert cli.main(["run", *SMALL, "--out", str(out), "--no-progress"]) == 0
    return out


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("locks"))
    return to


def tamper(run: Path, model: str, metric: str, delta: float) -> None:
    """Add `delta` to `metric` of the first stored cell of `model` (in place)."""
    for part in sorted((run / "rows").glob("*.parquet")):
        table = pq.read_table(part)
        rows = table.to_pandas()
        hit = rows.index[rows["model"] == model]
        if len(hit):
            rows.loc[hit[0], metric] += delta
            pq.write_table(
                pa.Table.from_pandas(rows, schema=table.schema, preserve_index=False), part
            )
            return
    raise AssertionError(f"no rows of {model} in {run}")


def test_manifest_records_the_command_line(stored):
    manifest = json.loads((stored / "manifest.json").read_text())
    assert manifest["command"] == ["gdbench", "run", *SMALL, "--out", str(stored), "--no-progress"]
    prov = manifest["provenance"]
    assert isinstance(prov["argv"], list) and "cpu_model" in prov
    assert (prov["git_diff_sha256"] is None) == (prov["git_dirty"] is not True)


def test_reproduce_matches_a_stored_run(stored, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "reproduce", stored, "--out", tmp_path / "again", "--no-progress"
    )
    assert code == 0, out + err
    assert "| iris | gnb | 4 | accuracy, nll, ece, brier, log_lik, bits_per_dim | — | 0 |" in out
    assert "| iris | logreg | 4 | accuracy, nll, ece, brier | — | 0 |" in out
    assert "All 2 (task, model) grids match." in out
    assert "code differs" not in out  # same code: no note
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    old = json.loads((stored / "manifest.json").read_text())
    assert again["identity"] == old["identity"]
    assert again["config"]["seeds"] == [0, 1] and again["config"]["sizes"] == [6, 20]
    assert again["command"][:2] == ["gdbench", "reproduce"]


def test_a_tampered_metric_is_a_mismatch_with_exit_1(stored, tmp_path, capsys):
    copy = copy_run(stored, tmp_path / "copy")
    tamper(copy, "logreg", "nll", 0.01)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["identity"]["code_version"] = "0123456789abcdef"
    manifest["provenance"]["git_commit"] = "f" * 40
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = run_cli(capsys, "reproduce", copy, "--out", tmp_path / "again", "--no-progress")
    assert code == 1
    assert "| iris | gnb | 4 | accuracy, nll, ece, brier, log_lik, bits_per_dim | — | 0 |" in out
    assert "| iris | logreg | 4 | accuracy, ece, brier | nll (1 of 4 cells) | 0.01 |" in out
    assert "1 of 2 (task, model) grids do not match." in out
    assert "Note: the code differs from the stored run's: code version 0123456789abcdef" in out


def test_reproduce_part_of_a_run_through_the_api(stored, tmp_path):
    copy = copy_run(stored, tmp_path / "copy")
    tamper(copy, "logreg", "nll", 0.5)  # outside the part reproduced
    result = gdbench.reproduce(copy, tmp_path / "gnb", models=["gnb"], compile_cache=None)
    assert result.all_match
    assert list(result.summary["model"]) == ["gnb"]
    assert set(gdbench.load(tmp_path / "gnb")["model"]) == {"gnb"}
    cells = result.cells
    assert len(cells) == 4 * 6 and cells["match"].all()
    manifest = json.loads((tmp_path / "gnb" / "manifest.json").read_text())
    assert manifest["command"].startswith("gdbench.reproduce(run_dir=")
    assert "models=['gnb']" in manifest["command"]


def test_api_run_records_the_call(tmp_path):
    out = tmp_path / "api"
    gdbench.run(tasks=["iris"], models=["gnb"], sizes=[6], seeds=1, out=out, compile_cache=None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == (
        f"gdbench.run(tasks=['iris'], models=['gnb'], sizes=[6], seeds=1, out={str(out)!r}, "
        "compile_cache=None)"
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--tasks", "wine"], "task 'wine' is not in run"),
        (["--models", "qda"], "model 'qda' is not in run"),
    ],
)
def test_bad_reproduce_input_is_one_line_exit_2(stored, tmp_path, capsys, extra, expected):
    code, out, err = run_cli(capsys, "reproduce", stored, "--out", tmp_path / "x", *extra)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_reproduce_refuses_its_own_directory_and_a_non_run(stored, tmp_path, capsys):
    code, _, err = run_cli(capsys, "reproduce", stored, "--out", stored)
    assert code == 2 and "is the stored run itself" in err
    code, _, err = run_cli(capsys, "reproduce", tmp_path, "--out", tmp_path / "x")
    assert code == 2 and "not a gdbench run" in err


# --- the comparison itself ------------------------------------------------------------------


def rows(**metrics) -> pd.DataFrame:
    n = len(next(iter(metrics.values())))
    base = {
        "task": ["t"] * n,
        "model": ["m"] * n,
        "n_train": [10] * n,
        "seed": list(range(n)),
        "status": ["ok"] * n,
    }
    return pd.DataFrame({**base, **metrics})


def test_values_match_within_half_a_unit_of_the_printed_place():
    old = rows(accuracy=[0.5, 0.5, 0.5], nll=[1.0, 1.0, 1.0], log_lik=[-3.0, np.nan, 2e5])
    new = rows(
        accuracy=[0.5004, 0.5006, 0.5],  # 3 decimals printed: half a unit is 0.0005
        nll=[1.0, 1.0, np.nan],  # a value on one side only: a mismatch
        log_lik=[-3.004, np.nan, 2.004e5],  # 2 decimals; 3 significant digits from 1e4
    )
    summary, cells = rep.compare_rows(old, new)
    by = cells.set_index(["seed", "metric"])["match"]
    assert by[(0, "accuracy")] and not by[(1, "accuracy")] and by[(2, "accuracy")]
    assert by[(0, "nll")] and not by[(2, "nll")]
    assert by[(0, "log_lik")] and by[(1, "log_lik")] and by[(2, "log_lik")]
    assert rep.tolerance("log_lik", 2e5, 2.004e5) == 500
    row = summary.iloc[0]
    assert row["differing"] == "accuracy (1 of 3 cells), nll (1 of 3 cells)"
    assert row["matching"] == "log_lik" and not row["match"]


def test_missing_cells_and_changed_status_are_mismatches():
    old = rows(accuracy=[0.5, 0.5])
    new = rows(accuracy=[0.5]).assign(status="failed")
    summary, _ = rep.compare_rows(old, new)
    row = summary.iloc[0]
    assert row["cells"] == 2 and row["missing"] == 1 and not row["match"]
    assert row["differing"] == "status (2 of 2 cells)"
