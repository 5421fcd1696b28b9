"""Paper output: display names, namespaced labels, the float choice, paper figures (sizes,
fonts, titles, tick labels) and an example two-column paper of two reference reports built
with pdflatex (no errors, no overfull boxes, no table scaled below 0.9, no duplicate labels)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from gdbench import results
from gdbench.reports import build_report, latex, paper
from gdbench.reports.latex import to_latex
from gdbench.reports.names import DisplayNames, load_display_names, to_mathtext

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
PAPER_RUNS = ("quick", "robustness")  # two reference runs whose tables go into one paper


# --- display names ------------------------------------------------------------------------


def test_default_display_names():
    names = DisplayNames()
    assert names.model("logreg?C=10000") == "LR (C=10^4)"
    assert names.model("logreg?C=0.0001") == "LR (C=10^-4)"
    assert names.model("mlp?hidden=256-256&steps=500") == "MLP (hidden=256-256, steps=500)"
    assert names.model("gnb_shared") == "GNB (shared var.)"
    assert names.model("sk:GaussianNB") == "GNB (sklearn)"
    assert names.model("my_plugin") == "my_plugin"
    assert names.task("digits_2v3") == "Digits 2 vs 3"
    assert names.task("breast_cancer") == "Breast cancer"
    assert names.task("csv:data.csv") == "csv:data.csv"
    assert names.paradigm("generative") == "gen."
    assert to_latex("LR (C=10^4)") == r"LR (C=10\textsuperscript{4})"
    assert to_latex("a_b & 10^-4") == r"a\_b \& 10\textsuperscript{$-$4}"
    assert to_mathtext("LR (C=10^4) $") == r"LR (C=10$^{4}$) \$"


def test_display_names_from_json_and_toml(tmp_path):
    as_json = tmp_path / "names.json"
    as_json.write_text(json.dumps({"models": {"logreg": "Logistic"}, "tasks": {"t": "Task T"}}))
    names = load_display_names(as_json)
    assert names.model("logreg") == "Logistic"
    assert names.model("logreg?C=10") == "Logistic (C=10)"  # the base's override is used
    assert names.task("t") == "Task T" and names.model("lda") == "LDA"
    as_toml = tmp_path / "names.toml"
    as_toml.write_text('[models]\n"logreg?C=10000" = "LR, weak"\n[paradigms]\ngenerative = "G"\n')
    names = load_display_names(as_toml)
    assert names.model("logreg?C=10000") == "LR, weak" and names.paradigm("generative") == "G"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {}}))
    with pytest.raises(ValueError, match="unknown key 'model'"):
        load_display_names(bad)
    bad.write_text(json.dumps({"models": {"a": 1}}))
    with pytest.raises(ValueError, match="models must map names to strings"):
        load_display_names(bad)


# --- tables -------------------------------------------------------------------------------


def _rows(models=("gnb", "logreg?C=10000"), sizes=(20, 40)) -> pd.DataFrame:
    rows = []
    for model, n, seed in itertools.product(models, sizes, range(3)):
        rows.append(
            {
                "task": "digits_2v3",
                "model": model,
                "paradigm": "generative" if model == "gnb" else "discriminative",
                "n_train": n,
                "seed": seed,
                "status": "ok",
                "accuracy": 0.8 + 0.01 * seed + 0.001 * n,
                "nll": 0.4,
                "ece": 0.05,
                "brier": 0.2,
                "bits_per_dim": np.nan,
            }
        )
    return pd.DataFrame(rows)


def test_labels_are_namespaced_and_names_displayed():
    df = _rows()
    with latex.tex_options(namespace="run one"):
        tex = latex.learning_curve_table(df, "digits_2v3")
    assert r"\label{tab:run-one:learning-curve-digits_2v3}" in tex
    assert r"LR (C=10\textsuperscript{4})" in tex and "Digits 2 vs 3" in tex
    assert r"\label{tab:gdbench:learning-curve-digits_2v3}" in latex.learning_curve_table(
        df, "digits_2v3"
    )


def test_float_is_chosen_by_estimated_width():
    narrow = latex.learning_curve_table(_rows(), "digits_2v3")
    assert r"\begin{table}[tbp]" in narrow
    wide = latex.learning_curve_table(_rows(sizes=tuple(range(10, 100, 10))), "digits_2v3")
    assert r"\begin{table*}[tbp]" in wide and r"\end{table*}" in wide
    assert r"S[table-format=1.3]" in wide
    # too wide for the text even in \footnotesize: stacked blocks, each with Model and Paradigm
    sizes = tuple(range(10, 250, 10))
    split = latex.learning_curve_table(_rows(sizes=sizes), "digits_2v3")
    assert split.count("Model & Paradigm") >= 2
    assert all(f"$n={n}$" in split for n in sizes)
    width = float(re.search(r"Estimated natural width (\d+) pt", split)[1])
    assert width * 8 / 9 <= latex.TEXT_WIDTH_PT


# --- figures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_rows() -> pd.DataFrame:
    return results.load([REFERENCE / "quick"])


def _texts(fig) -> list:
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]


def _assert_print_ready(fig, preset: str) -> None:
    width, _ = fig.get_size_inches()
    assert width == pytest.approx(paper.PRESETS[preset])
    assert fig._suptitle is None
    sizes = [t.get_fontsize() for t in _texts(fig)]
    assert sizes and min(sizes) >= paper.MIN_FONT_PT
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            shown = [
                t
                for t, loc in zip(axis.get_ticklabels(), axis.get_ticklocs(), strict=True)
                if t.get_visible() and t.get_text() and low <= loc <= high
            ]
            boxes = [t.get_window_extent(renderer) for t in shown]
            assert len(boxes) >= 2
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), [t.get_text() for t in shown]
    # the legend lies below every axes (never over the data)
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert box.y1 <= ax.get_window_extent(renderer).y0 + 1


@pytest.mark.parametrize("preset", sorted(paper.PRESETS))
def test_paper_figures_are_print_ready(quick_rows, preset, tmp_path):
    df = quick_rows
    fig = paper.learning_curve_figure(df, "digits_bin", preset)
    _assert_print_ready(fig, preset)
    assert fig.axes[0].get_title() == ""
    fig = paper.paradigms_figure(df, preset)
    _assert_print_ready(fig, preset)
    # panel labels are the tasks' display names, not titles of the figure
    assert {ax.get_title(loc="left") for ax in fig.axes} >= {"Digits 2 vs 3", "Breast cancer"}
    paths = paper.save_paper_figure(fig, tmp_path, f"paradigms_{preset}")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert all(p.stat().st_size > 0 for p in paths)
    with matplotlib.rc_context():
        from matplotlib.image import imread

        height, width = imread(paths[1]).shape[:2]
    assert width == pytest.approx(paper.PRESETS[preset] * paper.PAPER_DPI, abs=2)


def test_crossover_paper_figure(quick_rows):
    frame = pd.DataFrame(
        {
            "pair": ["gnb vs logreg"] * 4,
            "n_train": [10, 30, 100, 1000],
            "mean_diff": [-0.05, 0.0, 0.02, 0.03],
            "lo": [-0.08, -0.02, 0.0, 0.01],
            "hi": [-0.02, 0.02, 0.04, 0.05],
            "n_star": [30.0] * 4,
            "n_star_lo": [20.0] * 4,
            "n_star_hi": [50.0] * 4,
        }
    )
    fig = paper.crossover_figure(frame, "column")
    _assert_print_ready(fig, "column")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["GNB vs LR"]


# --- the example paper ---------------------------------------------------------------------


def _paper_report(run: str, tmp_path_factory) -> Path:
    """The committed report of a reference run when its tables are the paper tables of this
    version (labels tab:<run>:...), else a report built afresh from the run's rows."""
    committed = REFERENCE / run / "report"
    tables = sorted((committed / "tables").glob("*.tex"))
    if tables and all(f"tab:{run}:" in p.read_text() for p in tables):
        return committed
    out = tmp_path_factory.mktemp(f"report_{run}")
    build_report(REFERENCE / run, out)
    return out


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_example_paper_of_two_reports_compiles_cleanly(tmp_path_factory):
    reports = [_paper_report(run, tmp_path_factory) for run in PAPER_RUNS]
    out = tmp_path_factory.mktemp("paper")
    pdf, problems = paper.write_example_paper(reports, out)
    assert pdf.is_file() and pdf.stat().st_size > 0
    assert problems == []
    log = (out / "paper.log").read_text(errors="replace")
    source = (out / "paper.tex").read_text()
    n_tables = sum(len(list((r / "tables").glob("*.tex"))) for r in reports)
    assert source.count("\\input{") == n_tables > 10
    # every table reported its width, none overfull, none with an error
    assert len(re.findall(r"gdbench-table tab:", log)) == n_tables
    assert "Overfull \\hbox" not in log and "\n! " not in log
    labels = [
        label
        for r in reports
        for p in (r / "tables").glob("*.tex")
        for label in re.findall(r"\\label\{([^}]*)\}", p.read_text())
    ]
    assert len(labels) == len(set(labels)) == n_tables


def test_latex_problems_finds_errors_overfull_boxes_scale_and_duplicates():
    log = (
        "! Undefined control sequence.\n"
        "Overfull \\hbox (12.0pt too wide) in paragraph at lines 3--4\n"
        "LaTeX Warning: Label `tab:a:b' multiply defined.\n"
        "gdbench-table tab:a:c: natural 600.0pt, line 498.0pt\n"
        "gdbench-table tab:a:d: natural 520.0pt, line 498.0pt\n"
    )
    problems = paper.latex_problems(log)
    assert len(problems) == 4 and "table tab:a:c scaled to 0.83 of its width" in problems
