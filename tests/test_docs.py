"""The documentation: generated blocks match the stored data, the site builds with --strict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gdbench.reports import docgen

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_blocks_match_the_stored_data():
    """Every figure in a generated block is what results/ gives today (``make docs`` rewrites
    them; a stale page fails here)."""
    assert docgen.main(["--check", *map(str, PAGES)]) == 0


def test_readme_has_the_generated_blocks_and_stays_a_page():
    text = (ROOT / "README.md").read_text()
    assert "<!-- gdbench:generated reference-runs -->" in text
    assert len(text.splitlines()) <= 200


def test_reference_table_counts_the_stored_rows():
    """The cells column against the rows actually stored (read with pyarrow, not the manifest),
    and one table row per committed reference run."""
    table = docgen.reference_runs()
    runs = sorted(p.parent for p in docgen.REFERENCE.glob("*/manifest.json"))
    body = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(body) == len(runs)
    for run, line in zip(runs, body, strict=True):
        stored = sum(pq.ParquetFile(p).metadata.num_rows for p in (run / "rows").glob("*.parquet"))
        manifest = json.loads((run / "manifest.json").read_text())
        suite = manifest["config"].get("suite") or run.name
        assert line.startswith(f"| `{suite}`")
        assert f"| {stored:,} (" in line


def test_benchmark_table_has_every_line_of_latest_json():
    data = json.loads(docgen.BENCHMARKS.read_text())
    table = docgen.benchmarks()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(data["lines"]) + 1  # the header
    for line in data["lines"]:
        assert docgen._cell(line["metric"]) in table


@pytest.mark.fast
def test_render_rewrites_only_marked_blocks():
    text = "a\n<!-- gdbench:generated x -->\nold\n<!-- gdbench:end x -->\nb\n"
    out = docgen.render(text, {"x": lambda: "new\n"})
    assert out == "a\n<!-- gdbench:generated x -->\nnew\n<!-- gdbench:end x -->\nb\n"
    with pytest.raises(KeyError, match="unknown generated block 'x'"):
        docgen.render(text, {"y": lambda: ""})


def test_check_reports_a_stale_page(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- gdbench:generated benchmarks -->\nstale\n<!-- gdbench:end benchmarks -->\n"
    )
    assert docgen.main(["--check", str(page)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docgen.main([str(page)]) == 0
    assert docgen.main(["--check", str(page)]) == 0


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_site_builds_strict(tmp_path):
    """``mkdocs build --strict``: a broken link or an unresolvable API reference fails."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    cmd = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--quiet"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [*cmd, "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "predict_logits" in api  # the model protocol's docstrings reached the page
