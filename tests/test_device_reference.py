"""``bench/device_reference.py`` (``make reference-device``): reference runs on an accelerator,
run here end to end on the CPU (``--allow-cpu``) with one small grid."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from gdbench import cli, device_reference, results

GRID = "--tasks iris --models gnb --sizes 6,20 --seeds 2"


@pytest.mark.fast
def test_device_slug():
    assert device_reference.device_slug("NVIDIA H200", "gpu") == "nvidia-h200"
    assert device_reference.device_slug("TPU v5 lite", "tpu") == "tpu-v5-lite"
    assert device_reference.device_slug("Tesla V100-SXM2-16GB", "gpu") == "tesla-v100-sxm2-16gb"
    assert device_reference.device_slug("  ", "cpu") == "cpu"


def test_refuses_a_cpu_only_jax(tmp_path, capsys):
    assert device_reference.main(["--dest", str(tmp_path)]) == 2
    assert "no accelerator" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_rejects_unknown_suites(tmp_path, capsys):
    assert device_reference.main(["--dest", str(tmp_path), "--suites", "quick,nope"]) == 2
    assert "unknown suite(s) ['nope']" in capsys.readouterr().err


def test_runs_reports_compares_and_records(tmp_path, capsys):
    dest, packed = tmp_path / "reference", tmp_path / "out"
    # The CPU reference the device run is compared with: the same grid under dest/quick.
    assert cli.main(["run", *GRID.split(), "--out", str(dest / "quick"), "--no-progress"]) == 0
    argv = ["--dest", str(dest), "--suites", "quick", "--allow-cpu", "--run-args", GRID]
    assert device_reference.main([*argv, "--archive", str(packed)]) == 0
    folder = dest / "cpu"  # jax's CPU device kind is "cpu"
    run = folder / "quick"
    rows = results.load(run)
    assert len(rows) == 4 and (rows["status"] == "ok").all()
    assert (run / "report" / "report.md").is_file()
    compare = (run / "compare_cpu.md").read_text()
    assert "gnb" in compare and "iris" in compare

    timings = json.loads((folder / "timings.json").read_text())
    (row,) = timings["suites"]
    manifest = json.loads((run / "manifest.json").read_text())
    grid_compile = sum(g["compile_s"] for g in manifest["grids"].values())
    assert row["suite"] == "quick" and row["grids"] == 1 and row["cells"] == row["cells_ok"] == 4
    assert row["compile_s"] == round(grid_compile, 2) and not row["resumed"]
    assert 0 < row["compile_share"] < 1 and row["wall_s"] > row["compile_s"]
    table = (folder / "README.md").read_text()
    assert "| quick |" in table and f"{row['wall_s']:.1f} s" in table

    with tarfile.open(packed / "cpu.tar.gz") as tar:
        names = tar.getnames()
    assert "cpu/timings.json" in names and "cpu/quick/manifest.json" in names

    # A resumed run's wall time is not the whole run's: no compile share for it.
    assert device_reference.summarize_run(run, 100.0, resumed=True)["compile_share"] is None

    # A second call keeps a recorded suite as it is.
    before = pd.read_json(folder / "timings.json", typ="series")["written_utc"]
    capsys.readouterr()
    assert device_reference.main(argv) == 0
    assert "already recorded" in capsys.readouterr().out
    assert pd.read_json(folder / "timings.json", typ="series")["written_utc"] == before


def test_source_tree_runs_gdbench_without_installing_it(tmp_path):
    """``python bench/source_tree.py -m gdbench.cli ...`` (what ``make reference-device`` uses
    on a machine where nothing is installed) imports gdbench from this tree, and the processes
    it starts (``cli.command``) do the same."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys; from gdbench import source_tree; source_tree.install(); "
        "import gdbench, gdbench.models, gdbench.cli; "
        "print(gdbench.__file__); print(gdbench.models.__file__); "
        "print(' '.join(gdbench.cli.command('env')))"
    )
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "source_tree.py"), "-m", "gdbench.cli", "list"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert "suites:" in out
    lines = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout.splitlines()
    assert lines[0] == str(root / "bench" / "__init__.py")
    assert lines[1] == str(root / "models" / "__init__.py")
    assert "bench/source_tree.py -m gdbench.cli env" in lines[2]
