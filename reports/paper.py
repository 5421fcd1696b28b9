"""Paper figures and an example two-column paper of a report's tables.

Paper figures (`paper_figures`) are the report's learning curves, headline figure and
crossover curves drawn for print: at the width of a column or of the text (`PRESETS`, inches),
every font at least `MIN_FONT_PT` at that size, no figure title (the caption carries it),
log axes ticked at a few round sizes (`log_size_axis`), the legend below the axes (never over
the data), display names of models and tasks (`gdbench.reports.names`). Each is written as
OUT/figures/paper/<stem>_<preset>.pdf and .png, at the preset's exact size.

`write_example_paper` writes a ``\\documentclass[twocolumn]{article}`` paper that inputs every
table of one or more report directories (and one paper figure per report), compiles it with
pdflatex and returns the problems found in the log (`latex_problems`): LaTeX errors,
overfull boxes, a table scaled below `gdbench.reports.latex.MIN_SCALE`, labels defined twice.
``make paper`` and tests/test_paper.py run it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from gdbench.reports import latex
from gdbench.reports.figures import (
    FIGURE_DIR,
    _bayes_line,
    _paradigm_map,
    model_styles,
    wrap_label,
)
from gdbench.reports.names import DEFAULT_NAMES, DisplayNames, to_mathtext
from gdbench.reports.stats import check_unique_cells, error_curves
from gdbench.results.store import safe_name

#: Figure widths in inches: one column and the full text width of a two-column paper.
PRESETS = {"column": 3.3, "text": 6.9}
PAPER_DIR = "paper"
PAPER_FORMATS = ("pdf", "png")
PAPER_DPI = 300
#: The smallest font size of any text in a paper figure, in points at print size.
MIN_FONT_PT = 7.0
_RC = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
    "axes.linewidth": 0.6,
    "svg.hashsalt": "gdbench",
    "pdf.fonttype": 42,
}
_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
_LEGEND_ROW_IN = 0.15
#: Legend entries longer than this many characters are broken into lines (at "?", "&", " vs ").
LABEL_WIDTH = 28


def _wrap(text: str, width: int) -> str:
    """`wrap_label`, then any line still longer than `width` cut into pieces of `width`."""
    lines = wrap_label(text, width).split("\n")
    return "\n".join(
        line[k : k + width] for line in lines for k in range(0, max(len(line), 1), width)
    )


def _preset_width(preset: str) -> float:
    if preset not in PRESETS:
        raise ValueError(f"unknown figure preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def save_paper_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Save `fig` at its own size as OUT/figures/paper/<stem>.pdf and .png (300 dpi)."""
    if not stem or safe_name(stem) != stem:
        raise ValueError(f"figure stem {stem!r} is not a safe file name ([A-Za-z0-9._-] only)")
    folder = Path(out_dir) / FIGURE_DIR / PAPER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(_RC):
        for ext in PAPER_FORMATS:
            path = folder / f"{stem}.{ext}"
            fig.savefig(path, format=ext, dpi=PAPER_DPI, metadata=_METADATA[ext])
            written.append(path)
    return written


def log_size_axis(ax: Axes, sizes: Sequence[float], max_ticks: int = 6) -> None:
    """A log x axis of training sizes for print: labelled major ticks at 1, 2 and 5 times
    powers of ten, or at 1 and 3 times, or at powers of ten only, whichever is the first to give
    at most `max_ticks` labels inside the sizes' range; labels are plain integers (thin-space
    thousands), minor ticks unlabelled. Labels stay few and apart at any width."""
    ax.set_xscale("log")
    values = [float(v) for v in sizes if float(v) > 0]
    if not values:
        return
    lo, hi = min(values) / 1.15, max(values) * 1.15
    ax.set_xlim(lo, hi)
    subs: tuple[float, ...] = (1.0,)
    for candidate in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        if sum(lo <= t <= hi for t in _ticks(lo, hi, candidate)) <= max_ticks:
            subs = candidate
            break
    inside = [t for t in _ticks(lo, hi, subs) if lo <= t <= hi]
    if len(inside) < 2:  # less than a decade without a round size: the ends
        ax.set_xticks([min(values), max(values)])
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}".replace(",", r"$\,$")))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _ticks(lo: float, hi: float, subs: Sequence[float]) -> list[float]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [s * 10.0**k for k in range(first, last + 1) for s in subs]


def _legend_below(fig: Figure, handles: list, ncols: int) -> None:
    """The legend below the axes; the figure grows by the extra lines of labels broken into
    several (`_figure` counts one line per legend row)."""
    if handles:
        lines = max(h.get_label().count("\n") + 1 for h in handles)
        if lines > 1:
            width, height = fig.get_size_inches()
            rows = -(-len(handles) // ncols)
            fig.set_size_inches(width, height + rows * (lines - 1) * 0.11)
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=ncols,
            frameon=False,
            handlelength=2.2,
            columnspacing=1.0,
        )


def _model_handles(models: Sequence[str], styles: Mapping, names: DisplayNames) -> list:
    return [
        Line2D(
            [],
            [],
            color=styles[m]["color"],
            linestyle=styles[m]["linestyle"],
            marker=styles[m]["marker"],
            label=to_mathtext(_wrap(names.model(m), LABEL_WIDTH)),
        )
        for m in models
    ]


def _figure(preset: str, axes_height: float, legend_entries: int, ncols: int, panels=(1, 1)):
    width = _preset_width(preset)
    rows, cols = panels
    legend_rows = -(-legend_entries // ncols) if legend_entries else 0
    height = axes_height * rows + 0.45 + legend_rows * _LEGEND_ROW_IN
    fig = Figure(figsize=(width, height), dpi=PAPER_DPI, layout="constrained")
    return fig


def learning_curve_figure(
    df: pd.DataFrame, task: str, preset: str = "column", names: DisplayNames = DEFAULT_NAMES
) -> Figure:
    """The learning curves of `task` (test error against training size, mean with its 95%
    band, every model in its `gdbench.reports.figures.model_styles` look) for print."""
    check_unique_cells(df)
    styles = model_styles(_paradigm_map(df))
    curves = error_curves(df[df["task"] == task])
    curves = curves[curves["n_seeds"] > 0].sort_values(["model", "n_train"])
    models = sorted(curves["model"].unique(), key=lambda m: (styles[m]["family"], m))
    ncols = 2 if preset == "column" else 4
    with matplotlib.rc_context(_RC):
        fig = _figure(preset, 2.2 if preset == "column" else 2.6, len(models) + 1, ncols)
        ax = fig.add_subplot()
        _draw(ax, curves, styles)
        _bayes_line(ax, df[df["task"] == task])
        log_size_axis(ax, curves["n_train"].unique(), 6 if preset == "column" else 9)
        ax.set_xlabel("training examples")
        ax.set_ylabel("test error")
        ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
        handles = _model_handles(models, styles, names)
        if "bayes_accuracy" in df and df.loc[df["task"] == task, "bayes_accuracy"].notna().any():
            handles.append(Line2D([], [], color="black", linestyle=":", label="Bayes error"))
        _legend_below(fig, handles, ncols)
    return fig


def _draw(ax: Axes, curves: pd.DataFrame, styles: Mapping) -> None:
    for model, g in curves.groupby("model", sort=True):
        st = styles[model]
        ax.plot(
            g["n_train"],
            g["mean"],
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
        )
        lo, hi = g["lo"].fillna(g["mean"]), g["hi"].fillna(g["mean"])
        ax.fill_between(
            g["n_train"], lo.clip(0, 1), hi.clip(0, 1), color=st["color"], alpha=0.1, lw=0
        )


def paradigms_figure(
    df: pd.DataFrame, preset: str = "text", names: DisplayNames = DEFAULT_NAMES
) -> Figure | None:
    """The headline figure for print: one panel per task (its display name as the panel
    label), test error against training size for every model; None without ok rows."""
    if (df["status"] == "ok").sum() == 0:
        return None
    check_unique_cells(df)
    styles = model_styles(_paradigm_map(df))
    curves = error_curves(df)
    curves = curves[curves["n_seeds"] > 0]
    tasks = sorted(curves["task"].unique())
    per_row = 2 if preset == "column" else 3
    cols = min(per_row, len(tasks))
    rows = -(-len(tasks) // cols)
    models = sorted(curves["model"].unique(), key=lambda m: (styles[m]["family"], m))
    ncols = 2 if preset == "column" else 5
    with matplotlib.rc_context(_RC):
        fig = _figure(preset, 1.6 if preset == "column" else 1.9, len(models), ncols, (rows, cols))
        for k, task in enumerate(tasks):
            ax = fig.add_subplot(rows, cols, k + 1)
            g = curves[curves["task"] == task].sort_values(["model", "n_train"])
            _draw(ax, g, styles)
            _bayes_line(ax, df[df["task"] == task])
            log_size_axis(ax, g["n_train"].unique(), 3 if preset == "column" else 5)
            title = _wrap(names.task(task), 24 if preset == "column" else 36)
            ax.set_title(to_mathtext(title), loc="left")
            ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
            if k % cols == 0:
                ax.set_ylabel("test error")
            if k >= len(tasks) - cols:
                ax.set_xlabel("training examples")
        _legend_below(fig, _model_handles(models, styles, names), ncols)
    return fig


def crossover_figure(
    frame: pd.DataFrame, preset: str = "column", names: DisplayNames = DEFAULT_NAMES
) -> Figure:
    """The paired error difference (generative − discriminative) of each pair against
    training size for print, from one task's `gdbench.reports.figures.crossover_plot` frame;
    a finite crossover size n* is a dashed vertical line in the pair's colour."""
    frame = frame.assign(pair=frame["pair"].astype(str))
    pairs = sorted(frame["pair"].unique())
    colors = dict(
        zip(pairs, matplotlib.colormaps["tab10"](np.arange(len(pairs)) % 10), strict=True)
    )
    ncols = 2 if preset == "column" else 4
    with matplotlib.rc_context(_RC):
        fig = _figure(preset, 2.2 if preset == "column" else 2.6, len(pairs), ncols)
        ax = fig.add_subplot()
        ax.axhline(0.0, color="black", linewidth=0.7)
        handles = []
        sizes = frame["n_train"].astype(float)
        for pair in pairs:
            g = frame[frame["pair"] == pair].sort_values("n_train")
            color = colors[pair]
            x = g["n_train"].astype(float).to_numpy()
            ax.plot(x, g["mean_diff"], marker="o", color=color)
            ax.fill_between(x, g["lo"], g["hi"], color=color, alpha=0.15, linewidth=0)
            n_star = pd.to_numeric(g["n_star"], errors="coerce").dropna()
            if len(n_star) and sizes.min() <= float(n_star.iloc[0]) <= sizes.max():
                ax.axvline(float(n_star.iloc[0]), color=color, linestyle="--", linewidth=0.8)
            gen, _, disc = pair.partition(" vs ")
            label = f"{names.model(gen)} vs {names.model(disc)}" if disc else names.model(pair)
            handles.append(
                Line2D([], [], color=color, marker="o", label=to_mathtext(_wrap(label, 36)))
            )
        log_size_axis(ax, sizes.unique(), 6 if preset == "column" else 9)
        ax.set_xlabel("training examples")
        ax.set_ylabel("error difference\n(gen. − disc.)")
        ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
        _legend_below(fig, handles, ncols)
    return fig


def paper_figures(
    df: pd.DataFrame,
    per_size: Mapping[str, pd.DataFrame],
    out_dir: str | Path,
    names: DisplayNames = DEFAULT_NAMES,
    presets: Sequence[str] = tuple(PRESETS),
) -> list[Path]:
    """Write the paper figures of a report for each preset: paradigms_<preset>,
    learning_curve_<task>_<preset> and crossover_<task>_<preset> (`per_size` as for
    `gdbench.reports.figures.crossover_plot`), each .pdf and .png under
    out_dir/figures/paper/. Returns the paths written."""
    written: list[Path] = []
    for preset in presets:
        fig = paradigms_figure(df, preset, names)
        if fig is not None:
            written += save_paper_figure(fig, out_dir, f"paradigms_{preset}")
        for task in sorted(df.loc[df["status"] == "ok", "task"].unique()):
            fig = learning_curve_figure(df, str(task), preset, names)
            written += save_paper_figure(
                fig, out_dir, f"learning_curve_{safe_name(str(task))}_{preset}"
            )
        for task in sorted(per_size):
            frame = per_size[task]
            if frame is None or len(frame) == 0:
                continue
            fig = crossover_figure(frame, preset, names)
            written += save_paper_figure(fig, out_dir, f"crossover_{safe_name(str(task))}_{preset}")
    return written


# --- the example paper ----------------------------------------------------------------------

#: A two-column layout matching `PRESETS` and `gdbench.reports.latex.COLUMN_WIDTH_PT`.
PAPER_PREAMBLE = r"""\documentclass[twocolumn]{article}
\usepackage[letterpaper,textwidth=6.9in,columnsep=0.3in,textheight=9in]{geometry}
\usepackage{booktabs,siunitx,graphicx}
\begin{document}
\title{gdbench tables and figures}\author{}\date{}\maketitle
"""
_TABLE_LOG = re.compile(r"gdbench-table (\S+): natural ([\d.]+)pt, line ([\d.]+)pt")


def paper_source(report_dirs: Sequence[str | Path], figures: bool = True) -> str:
    """LaTeX source of a two-column paper that inputs every table (tables/*.tex, sorted) of
    each report directory and, with `figures`, its column and text paper figures of the
    headline (figures/paper/paradigms_<preset>.pdf) where they exist."""
    parts = [PAPER_PREAMBLE]
    for report in report_dirs:
        report = Path(report).absolute()
        parts.append(rf"\section*{{{latex.escape_latex(report.parent.name)}}}")
        parts.append("The tables and figures of this report follow. " * 6)
        for path in sorted((report / "tables").glob("*.tex")):
            parts.append(rf"\input{{{path.as_posix()}}}")
        for preset, env in (("column", "figure"), ("text", "figure*")):
            pdf = report / FIGURE_DIR / PAPER_DIR / f"paradigms_{preset}.pdf"
            if figures and pdf.is_file():
                width = r"\columnwidth" if preset == "column" else r"\textwidth"
                parts += [
                    rf"\begin{{{env}}}[tbp]\centering",
                    rf"\includegraphics[width={width}]{{{pdf.as_posix()}}}",
                    rf"\caption{{Test error against training size ({preset} preset).}}",
                    rf"\end{{{env}}}",
                ]
        parts.append(r"\clearpage")
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def latex_problems(log: str) -> list[str]:
    """Problems in a pdflatex log: errors ("! ..."), overfull boxes, labels defined more
    than once, tables scaled below `gdbench.reports.latex.MIN_SCALE`."""
    problems = [line for line in log.splitlines() if line.startswith("! ")]
    problems += [line for line in log.splitlines() if line.startswith("Overfull \\hbox")]
    problems += re.findall(r"LaTeX Warning: Label `[^']*' multiply defined\.", log)
    if "There were multiply-defined labels" in log:
        problems.append("There were multiply-defined labels")
    for label, natural, line in _TABLE_LOG.findall(log.replace("\n", "")):
        scale = float(line) / float(natural)
        if scale < latex.MIN_SCALE:
            problems.append(f"table {label} scaled to {scale:.2f} of its width")
    return problems


def write_example_paper(
    report_dirs: Sequence[str | Path], out_dir: str | Path, figures: bool = True
) -> tuple[Path, list[str]]:
    """Write out_dir/paper.tex (`paper_source`), compile it twice with pdflatex and return
    (the PDF path, `latex_problems` of the log). Raises FileNotFoundError without pdflatex."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise FileNotFoundError("pdflatex not found: install a TeX distribution")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper.tex").write_text(paper_source(report_dirs, figures))
    for _ in range(2):  # the second pass resolves labels
        subprocess.run(
            [pdflatex, "-interaction=nonstopmode", "paper.tex"],
            cwd=out,
            capture_output=True,
            timeout=600,
            check=False,
        )
    log = (out / "paper.log").read_text(errors="replace")
    return out / "paper.pdf", latex_problems(log)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gdbench.reports.paper OUT REPORT_DIR...``: the example paper of the
    reports' tables; exit status 1 (problems listed) when the log has any."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m gdbench.reports.paper OUT_DIR REPORT_DIR [REPORT_DIR...]")
        return 2
    pdf, problems = write_example_paper(args[1:], args[0])
    for problem in problems:
        print(problem)
    print(f"{pdf}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
