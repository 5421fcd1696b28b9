"""Citing gdbench: CITATION.cff and references.bib agree, and the .bib passes BibTeX and biber.

The BibTeX checks run the real tools on a references.bib written by ``reports.cite`` (they are
skipped where TeX Live's bibtex, or biber and biblatex, are not installed) and fail on any
warning in the tool's log.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gdbench.reports import cite
from tests.test_html import parse_bib, read_cff

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

#: Runs as a report cites them: a clean one, a dirty one, and names BibTeX could choke on.
MANIFESTS = {
    "quick": {
        "config": {"suite": "quick"},
        "started_utc": "2026-11-21T18:35:13Z",
        "finished_utc": "2026-11-21T18:38:32Z",
        "provenance": {
            "gdbench_version": VERSION,
            "git_commit": "a8716d079a0b32d1d4d5aa2bb27c11b15208f8ee",
            "git_dirty": False,
            "device_kind": "NVIDIA H100",
            "device_count": 2,
        },
    },
    "MyRun {odd_50%} & #1 ~x^2 \\": {
        "started_utc": "2026-12-01T10:00:00Z",
        "provenance": {"git_dirty": True, "git_commit": "abc"},
    },
    "lone { brace": {"provenance": {"timestamp_utc": "2026-12-02T10:00:00Z"}},
}


def unbrace(text: str) -> str:
    return text.replace("{", "").replace("}", "")


def software_entry() -> dict[str, str]:
    kind, key, fields = parse_bib(cite.bibtex({}, VERSION))[0]
    assert kind == "misc" and key == f"gdbench-{VERSION}"
    return fields


def test_citation_cff_and_references_bib_agree():
    cff = read_cff(ROOT / "CITATION.cff")
    bib = software_entry()
    assert isinstance(cff["authors"], list), "PyYAML is needed to read CITATION.cff"
    preferred = cff["preferred-citation"]
    for meta in (cff, preferred):
        assert meta["title"] == cite.TITLE == unbrace(bib["title"])
        assert (
            meta["authors"] == [{"name": cite.AUTHOR}] and bib["author"] == "{gdbench developers}"
        )
        assert str(meta["version"]) == VERSION and bib["note"] == f"Version {VERSION}"
        assert meta["url"] == cite.URL == bib["url"]
    assert preferred["type"] == "software" and preferred["year"] == cite.YEAR
    # ISO 8601 (quoted: a string, not a YAML date), the same month as the .bib's.
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cff["date-released"])
    assert cff["date-released"] == cite.DATE
    month = int(cite.DATE[5:7])
    assert (
        bib["month"]
        == ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"][
            month - 1
        ]
    )  # a macro: "November 2026", not "11 2026"
    assert int(cff["date-released"][:4]) == cite.YEAR == int(bib["year"])
    # Title case would lower these: braced in the .bib.
    assert "{gdbench}" in bib["title"] and "{JAX}" in bib["title"]


def cffconvert() -> str | None:
    """The cffconvert beside this interpreter (the test extra installs it), else on PATH."""
    beside = Path(sys.executable).parent / "cffconvert"
    return str(beside) if beside.exists() else shutil.which("cffconvert")


@pytest.mark.skipif(cffconvert() is None, reason="cffconvert is not installed")
def test_citation_cff_is_valid_cff():
    done = subprocess.run(
        [cffconvert(), "--validate", "-i", str(ROOT / "CITATION.cff")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def write_bib(directory: Path) -> Path:
    bib = directory / "references.bib"
    bib.write_text(cite.bibtex(MANIFESTS, VERSION))
    return bib


def keys(bib: Path) -> list[str]:
    return [key for _, key, _ in parse_bib(bib.read_text())]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def warnings_in(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if re.search(r"warning|error|WARN|ERROR", line, re.IGNORECASE)
        and not re.search(r"warning\$ -- 0", line)  # plain.bst's usage count of warning$
    ]


@pytest.mark.skipif(shutil.which("bibtex") is None, reason="bibtex (TeX Live) is not installed")
@pytest.mark.parametrize("style", ["plain", "plainnat", "alpha", "unsrt"])
def test_classic_bibtex_reads_references_bib_without_warnings(tmp_path, style):
    if run(["kpsewhich", f"{style}.bst"], tmp_path).returncode != 0:
        pytest.skip(f"{style}.bst is not installed")
    bib = write_bib(tmp_path)
    # The .aux that LaTeX would write for \cite{every key} \bibliography{references}.
    cites = "".join(f"\\citation{{{key}}}\n" for key in keys(bib))
    (tmp_path / "paper.aux").write_text(f"{cites}\\bibstyle{{{style}}}\n\\bibdata{{references}}\n")
    done = run(["bibtex", "paper"], tmp_path)
    log = (tmp_path / "paper.blg").read_text()
    assert done.returncode == 0, done.stdout + log
    assert not warnings_in(log), log
    bbl = (tmp_path / "paper.bbl").read_text()
    assert bbl.count("\\bibitem") == len(MANIFESTS) + 1
    assert "{gdbench}" in bbl and "{JAX}" in bbl and f"Version {VERSION}" in bbl


def biblatex_missing() -> str | None:
    if shutil.which("pdflatex") is None:
        return "pdflatex (TeX Live) is not installed"
    if run(["kpsewhich", "biblatex.sty"], Path.cwd()).returncode != 0:
        return "biblatex is not installed"
    return None


@pytest.mark.parametrize("backend", ["biber", "bibtex"])
def test_biblatex_reads_references_bib_without_warnings(tmp_path, backend):
    missing = biblatex_missing() or (
        f"{backend} is not installed" if shutil.which(backend) is None else None
    )
    if missing:
        pytest.skip(missing)
    bib = write_bib(tmp_path)
    cites = ",".join(keys(bib))
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n"
        f"\\usepackage[backend={backend}]{{biblatex}}\n"
        "\\addbibresource{references.bib}\n"
        f"\\begin{{document}}\n\\nocite{{{cites}}}\n\\printbibliography\n\\end{{document}}\n"
    )
    latex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper"]
    first = run(latex, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    done = run([backend, "paper"], tmp_path)
    log = (tmp_path / "paper.blg").read_text()
    assert done.returncode == 0, done.stdout + log
    assert not warnings_in(log), log
    for _ in range(2):  # labels settle on the second run
        again = run(latex, tmp_path)
        assert again.returncode == 0, again.stdout[-3000:]
    # biblatex warns in the LaTeX log about entries or fields it could not use.
    text = (tmp_path / "paper.log").read_text(errors="replace")
    found = [
        w
        for w in re.findall(r"Package biblatex Warning: [^\n]*", text)
        if "fall-back BibTeX(8) backend" not in w  # what backend=bibtex means
    ]
    assert not found, found
    assert "There were undefined references" not in text
