"""The documentation: generated blocks match the stored data, the site builds with --strict."""

from __future__ import annotations

import json
import os
import re
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


def test_robustness_blocks_read_the_run_once(tmp_path, monkeypatch):
    """The two robustness blocks read the stored run once between them, and read it again
    once it is written anew; what they say is what a fresh read gives."""
    from gdbench.results import store

    run = tmp_path / "robustness"
    shutil.copytree(docgen.REFERENCE / "robustness" / "rows", run / "rows")
    shutil.copy(docgen.REFERENCE / "robustness" / "manifest.json", run)
    fresh = (docgen.robustness_ood(tmp_path), docgen.robustness_missing(tmp_path))
    docgen._load_run.cache_clear()
    loads = []
    real = store.load
    monkeypatch.setattr(store, "load", lambda path: loads.append(path) or real(path))
    blocks = (docgen.robustness_ood(tmp_path), docgen.robustness_missing(tmp_path))
    assert blocks == fresh and "| `" in blocks[0] and "| `" in blocks[1]
    assert len(loads) == 1
    part = next((run / "rows").glob("*.parquet"))
    os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 10**9))
    assert docgen.robustness_ood(tmp_path) == fresh[0]
    assert len(loads) == 2


MKDOCS_MISSING = (
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists()
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The documentation site built by ``mkdocs build --strict`` (once for this module)."""
    if MKDOCS_MISSING:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    mkdocs = Path(sys.executable).parent / "mkdocs"
    cmd = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--quiet"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [*cmd, "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_site_builds_strict(site):
    """``mkdocs build --strict``: a broken link or an unresolvable API reference fails."""
    api = (site / "api" / "index.html").read_text()
    assert "predict_logits" in api  # the model protocol's docstrings reached the page


#: Appended to a built page: once loaded, writes what the browser made of it into the DOM.
DOCS_PROBE = """<script>
window.addEventListener("load", function () {
  var header = document.querySelector("header.md-header");
  var h1 = document.querySelector("article h1");
  var rows = document.querySelectorAll("article table tbody tr").length;
  var p = document.createElement("pre");
  p.textContent = "DOCSPROBE header=" + (header ? getComputedStyle(header).position : "none") +
    " rows=" + rows + " sheets=" + document.styleSheets.length +
    " h1=" + (h1 ? h1.textContent.trim() : "") + " END";
  document.body.appendChild(p);
});
</script>"""


def test_a_docs_page_renders_in_headless_chromium(site, tmp_path):
    """The metrics page in a real browser: the theme's stylesheets load from the site's
    relative paths (Material's header is sticky only with its CSS), and the generated table
    of result columns is there, one row per column of ``results.schema.COLUMNS``."""
    from gdbench.results.schema import COLUMNS
    from tests.test_html import CHROMIUM_HINT, chromium, run_chromium

    binary = chromium()
    if binary is None:
        pytest.skip(CHROMIUM_HINT)
    page = site / "metrics" / "index.html"
    probed = page.with_name("probed.html")  # beside it: the same relative paths
    probed.write_text(page.read_text().replace("</body>", DOCS_PROBE + "</body>"))
    done = run_chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    )
    found = re.search(r"DOCSPROBE header=(\S+) rows=(\d+) sheets=(\d+) h1=(.*?) END", done.stdout)
    assert found, f"probe not in the DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    position, rows, sheets, h1 = found.groups()
    assert position == "sticky" and int(sheets) >= 2
    assert h1.startswith("Metrics")
    assert int(rows) >= len(COLUMNS)


def test_pages_name_no_issue():
    """The docs speak to users: no page refers to the project's issue tracker."""
    pattern = re.compile(r"\b[Ii]ssues?\b|(^|[^\w/&])#[0-9]{1,3}\b")
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{page.name}:{number}: {line}"
