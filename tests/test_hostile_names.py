"""Strings from data and users are escaped wherever they land: a run whose task name (a CSV
file's path) and class labels hold HTML, script, Markdown specials, LaTeX commands, non-ASCII
and length goes through ``run`` -> ``report``; the page renders in headless Chromium with no
script run and no markup injected."""

from __future__ import annotations

import csv
import html.parser
import re
from pathlib import Path

import numpy as np
import pytest

from gdbench import cli
from gdbench.reports.build import escape_names, md_escape
from tests.test_html import CHROMIUM_HINT, chromium, run_chromium

#: A folder name holding every kind of hostile text (no '/' or NUL: it is one path part).
HOSTILE = (
    "d<img src=x onerror=\"document.title='pwned'\">"
    "[x](javascript:document.title='pwned')*b*_u_`c`|p\\input{evil}$x^2$ é " + "L" * 60
)
LABEL = "<script>document.title='pwned'</script>"


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("hostile")
    folder = root / HOSTILE
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3))
    with open(folder / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f1", "f2", "f3", "label"])
        for row, positive in zip(x, x[:, 0] > 0, strict=True):
            w.writerow([*row, LABEL if positive else "b|c"])
    task = f"csv:{folder / 't.csv'}"
    run = root / "run"
    argv = ["run", "--tasks", task, "--models", "gnb,logreg", "--sizes", "10,30", "--seeds", "2"]
    assert cli.main([*argv, "--out", str(run), "--no-progress"]) == 0
    out = root / "report"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0
    return out, task


def test_page_has_no_injected_markup(hostile_report):
    out, task = hostile_report
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag != "script"
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not attrs.get("href", "").lower().startswith("javascript"), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/"), attrs
    assert "<em>b</em>" not in page and "<code>c</code>" not in page
    assert "d&lt;img src=x onerror=" in page


def test_markdown_and_latex_escape_the_names(hostile_report):
    out, task = hostile_report
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md_escape(task) in md or md_escape(task).replace("|", "\\|") in md
    for tex in (out / "tables").glob("*.tex"):
        text = tex.read_text(encoding="utf-8")
        assert "\\input{evil}" not in text, tex.name
        assert "<script>" not in text or "\\textless" in text or "verb" in text


def test_chromium_runs_no_script(hostile_report, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip(CHROMIUM_HINT)
    out, _ = hostile_report
    done = run_chromium(
        binary,
        tmp_path / "profile",
        "--virtual-time-budget=3000",
        "--dump-dom",
        (out / "index.html").as_uri(),
    )
    assert "</html>" in done.stdout, done.stderr[-2000:]
    assert "pwned" not in re.sub(r"&lt;.*?&gt;", "", done.stdout.split("<title>")[1][:200])
    title = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert title and title.group(1) == "gdbench report"
    parser = _Tags()
    parser.feed(done.stdout)
    assert not any(t == "script" for t, _ in parser.tags)
    assert not any(any(a.startswith("on") for a in attrs) for _, attrs in parser.tags)


@pytest.mark.fast
def test_escape_names_round_trip_through_markdown():
    import markdown

    names = [HOSTILE, "gnb_shared", "a|b", "`tick`", "**bold**"]
    md = "| task | x |\n|---|---|\n" + "".join(
        f"| {n.replace('|', chr(92) + '|')} | 1 |\n" for n in names
    )
    rendered = markdown.markdown(escape_names(md, names), extensions=["tables"])
    assert "<em>" not in rendered and "<strong>" not in rendered and "<a " not in rendered
    assert rendered.count("<tr>") == len(names) + 1  # no cell split by a '|' in a name
    assert "gnb_shared" in rendered  # names without specials untouched
