"""Figures of stored rows, rendered off-screen.

Figures are built as `matplotlib.figure.Figure` objects and saved through the Agg (PNG), SVG and
PDF canvases directly, never through pyplot: no GUI backend, no global backend switch, and
nothing left open in pyplot's figure registry (a figure is freed once its last reference goes).
Every figure is written by `save_figure` as OUT_DIR/figures/<stem>.{png,svg,pdf}; the SVG and
PDF files carry no dates, so the same rows give byte-identical files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gdbench.reports.curves import FLAG_MARKS, format_n_star
from gdbench.reports.stats import check_unique_cells, error_curves, summarize
from gdbench.reports.tables import grid_costs
from gdbench.results.store import safe_name

LINESTYLES = {
    "discriminative": "-",
    "generative": "--",
    "hybrid": "-.",
    "reference": (0, (3, 1, 1, 1, 1, 1)),  # dash-dot-dot: scikit-learn references (sk:)
}
PARADIGM_COLORS = {
    "discriminative": "#0173B2",
    "generative": "#DE8F05",
    "hybrid": "#029E73",
    "reference": "#7F7F7F",
}
FORMATS = ("png", "svg", "pdf")
PNG_DPI = 150
FIGURE_DIR = "figures"
CROSSOVER_COLUMNS = ("pair", "n_train", "mean_diff", "lo", "hi", "n_star", "n_star_lo", "n_star_hi")
# Paths as SVG glyphs and TrueType (Type 42) fonts in PDFs (journals refuse Type 3 fonts); no
# dates or tool versions in the files, so that they are reproducible byte for byte.
_RC = {"svg.hashsalt": "gdbench", "svg.fonttype": "path", "pdf.fonttype": 42}
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}


def _dash(style) -> tuple | str:
    """A matplotlib line style as a seaborn ``dashes`` entry ("" for solid)."""
    named = {"-": "", "--": (4, 2), "-.": (4, 1.5, 1, 1.5), ":": (1, 1.5)}
    return named[style] if isinstance(style, str) else style[1]


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Save `fig` as OUT_DIR/figures/<stem>.png (150 dpi), .svg and .pdf.

    `stem` must already be a file-name-safe name (see `gdbench.results.store.safe_name`); a bad stem
    raises `ValueError`. Creates the figures directory if needed and returns the three paths
    written, in the order of `FORMATS`.
    """
    if not stem or safe_name(stem) != stem:
        raise ValueError(f"figure stem {stem!r} is not a safe file name ([A-Za-z0-9._-] only)")
    fig_dir = Path(out_dir) / FIGURE_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(_RC):
        for ext in FORMATS:
            path = fig_dir / f"{stem}.{ext}"
            fig.savefig(path, format=ext, dpi=PNG_DPI, metadata=_METADATA[ext], bbox_inches="tight")
            written.append(path)
    return written


#: One hue family per paradigm (matplotlib colormaps); scikit-learn references (``sk:``) get
#: their own family whatever their paradigm.
PARADIGM_FAMILIES = {
    "discriminative": "Blues",
    "generative": "Oranges",
    "hybrid": "Greens",
    "reference": "Greys",
    "other": "Purples",
}
#: Line styles and markers cycled within a paradigm, so that models of one family differ in
#: shade, dash pattern and marker at once.
MODEL_DASHES = ("", (4, 1.5), (1, 1.2), (5, 1.5, 1, 1.5), (2, 1), (6, 1.5, 1, 1.5, 1, 1.5))
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def style_family(model: str, paradigm: str) -> str:
    """The hue family of a model: "reference" for ``sk:`` models, else its paradigm (or
    "other" for an unknown one)."""
    if str(model).startswith("sk:"):
        return "reference"
    return paradigm if paradigm in PARADIGM_FAMILIES else "other"


def model_styles(paradigms: Mapping[str, str]) -> dict[str, dict]:
    """A distinct look per model: {model: {"color", "dashes", "linestyle", "marker",
    "family"}} from {model: paradigm}.

    The colour comes from the model's hue family (`PARADIGM_FAMILIES`: blues for
    discriminative, oranges for generative, greens for hybrid, greys for scikit-learn
    references), a different shade for each model of the family (dark to mid, never the
    near-white end); dash pattern and marker cycle through `MODEL_DASHES` and `MODEL_MARKERS`.
    Within a family the shade differs for every model, across families the hue, so no two
    models look the same. Models are ordered by name within a family, so the same set of
    models gets the same looks in every figure of a report.
    """
    by_family: dict[str, list[str]] = {}
    for model in sorted({str(m) for m in paradigms}):
        by_family.setdefault(style_family(model, paradigms[model]), []).append(model)
    out = {}
    for family, names in by_family.items():
        cmap = matplotlib.colormaps[PARADIGM_FAMILIES[family]]
        top, bottom = (0.95, 0.45) if family != "reference" else (0.9, 0.4)
        shades = np.linspace(top, bottom, len(names)) if len(names) > 1 else [0.8]
        for i, (model, shade) in enumerate(zip(names, shades, strict=True)):
            dashes = MODEL_DASHES[i % len(MODEL_DASHES)]
            out[model] = {
                "color": tuple(float(v) for v in cmap(float(shade))[:3]),
                "dashes": dashes,
                "linestyle": (0, dashes) if dashes else "-",
                "marker": MODEL_MARKERS[i % len(MODEL_MARKERS)],
                "family": family,
            }
    return out


def _paradigm_map(df: pd.DataFrame) -> dict[str, str]:
    return {str(m): str(p) for m, p in df.groupby("model")["paradigm"].first().items()}


def model_colors(models, paradigms: Mapping[str, str] | None = None) -> dict[str, tuple]:
    """A colour per model name: the `model_styles` colour when `paradigms` ({model:
    paradigm}) is given, else the seaborn "colorblind" palette over the sorted names."""
    names = sorted({str(m) for m in models})
    if paradigms is not None:
        styles = model_styles({m: paradigms.get(m, "other") for m in names})
        return {m: styles[m]["color"] for m in names}
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def learning_curves(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One figure per task of test error (1 - accuracy) against n_train (log scale).

    Each model is a line of the mean over ok seeds with its 95% t-interval as a band (clipped
    to [0, 1]); every model has a look of its own (`model_styles`: hue family by paradigm,
    shade, dash pattern and marker per model, the same in every figure of the report);
    synthetic tasks get a dotted black line at the Bayes error (1 - bayes_accuracy). Writes
    out_dir/figures/learning_curve_<task>.{png,svg,pdf} and returns the paths written.
    """
    check_unique_cells(df)
    styles = model_styles(_paradigm_map(df))
    written = []
    for task in sorted(df["task"].unique()):
        rows = df[df["task"] == task]
        fig = _learning_curve_figure(rows, task, styles)
        written += save_figure(fig, out_dir, f"learning_curve_{safe_name(task)}")
    return written


def _draw_curves(ax: Axes, stats: pd.DataFrame, styles: dict, bands: bool) -> None:
    """Lines of `stats` (model, n_train, error, and lo/hi when `bands`) in the models' looks."""
    for model, g in stats.groupby("model", sort=True):
        st = styles[model]
        ax.plot(
            g["n_train"],
            g["error"],
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            markersize=4,
            linewidth=1.4,
            label=literal_text(wrap_label(model)),
        )
        if bands:
            ax.fill_between(
                g["n_train"],
                g["lo"].clip(0.0, 1.0),
                g["hi"].clip(0.0, 1.0),
                color=st["color"],
                alpha=0.1,
                linewidth=0,
            )


def _bayes_line(ax: Axes, rows: pd.DataFrame) -> None:
    if "bayes_accuracy" not in rows.columns:
        return
    bayes = pd.to_numeric(rows["bayes_accuracy"], errors="coerce").dropna()
    if not bayes.empty:
        ax.axhline(
            1.0 - bayes.mean(), color="black", linestyle=":", linewidth=1.2, label="Bayes error"
        )


def _size_axis(ax: Axes, sizes) -> None:
    """Log x axis ticked at tested sizes at least 1/7 of the log range apart (the smallest and
    the largest always), so that labels never run into each other."""
    ax.set_xscale("log")
    sizes = sorted(int(n) for n in sizes)
    gap = math.log(sizes[-1] / sizes[0]) / 7 if len(sizes) > 1 else 0.0
    ticks = [sizes[0]]
    for n in sizes[1:]:
        if math.log(n / ticks[-1]) >= gap:
            ticks.append(n)
    if ticks[-1] != sizes[-1]:
        if len(ticks) > 1 and math.log(sizes[-1] / ticks[-1]) < gap:
            ticks.pop()
        ticks.append(sizes[-1])
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()


def _learning_curve_figure(rows: pd.DataFrame, task: str, styles: dict) -> Figure:
    stats = summarize(rows, ["accuracy"], by=("model", "paradigm", "n_train"))
    stats = stats[stats["accuracy_count"] > 0].sort_values(["model", "n_train"])
    error = 1.0 - stats["accuracy_mean"]
    # The error's interval is the accuracy's (reports.stats: seeds and the test set's sampling,
    # inside [0, 1]) turned over; without one (a single seed of an old run) no band.
    lo = (1.0 - stats["accuracy_hi"]).fillna(error)
    hi = (1.0 - stats["accuracy_lo"]).fillna(error)
    stats = stats.assign(error=error, lo=lo, hi=hi)
    fig = Figure(figsize=(6.0, 4.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    # The bands are the intervals of reports.stats, so tables and figures agree.
    _draw_curves(ax, stats, styles, bands=True)
    _bayes_line(ax, rows)
    _size_axis(ax, rows["n_train"].unique())
    ax.set_xlabel("training examples (n_train, log scale)")
    ax.set_ylabel("test error (1 − accuracy)")
    ax.set_title(f"{literal_text(task)}: learning curves (mean, 95% interval: seeds and test set)")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            fontsize="small",
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
        )
    return fig


def paradigm_curves(df: pd.DataFrame, out_dir: str | Path, fits: pd.DataFrame | None = None):
    """The report's headline figure: test error against training size, one facet per task,
    every model in its `model_styles` look (hue family = paradigm, shade, dash and marker =
    model), the mean over ok seeds with its 95% band (`gdbench.reports.stats.error_curves`: seeds
    and
    the test set's sampling, inside [0, 1]), the Bayes error where the task knows
    it. With `fits` (`gdbench.reports.curves.curve_summary`), a model whose fitted asymptote is
    flagged ("extrapolated", "poor fit") gets the flag's mark after its name in the legend.
    Writes out_dir/figures/paradigms.{png,svg,pdf}; returns the paths ([] without ok rows).
    """
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return []
    check_unique_cells(df)
    boot = error_curves(df)
    boot = boot[boot["n_seeds"] > 0].rename(columns={"mean": "error"})
    styles = model_styles(_paradigm_map(df))
    marks = {}
    if fits is not None and not fits.empty:
        for _, r in fits.iterrows():
            marks[(r["task"], r["model"])] = FLAG_MARKS.get(r["flag"], "")
    tasks = sorted(boot["task"].unique())
    fig, axes = facet_axes(len(tasks), width=4.0, height=3.2)
    for ax, task in zip(axes, tasks, strict=True):
        stats = boot[boot["task"] == task].sort_values(["model", "n_train"])
        _draw_curves(ax, stats, styles, bands=True)
        _bayes_line(ax, df[df["task"] == task])
        _size_axis(ax, stats["n_train"].unique())
        ax.set_title(literal_text(task), fontsize="medium")
        ax.set_xlabel("training examples (log scale)")
        ax.set_ylabel("test error")
        ax.grid(True, which="both", alpha=0.3)
    present = sorted(boot["model"].unique(), key=lambda m: (styles[m]["family"], m))
    handles = []
    for model in present:
        st = styles[model]
        flagged = sorted({marks.get((t, model), "") for t in tasks} - {""})
        handles.append(
            Line2D(
                [],
                [],
                color=st["color"],
                linestyle=st["linestyle"],
                marker=st["marker"],
                markersize=4,
                label=literal_text(f"{model} ({st['family']})" + "".join(flagged)),
            )
        )
    if "bayes_accuracy" in df.columns and df["bayes_accuracy"].notna().any():
        handles.append(Line2D([], [], color="black", linestyle=":", label="Bayes error"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(3, len(handles)),
        frameon=False,
        fontsize="small",
    )
    hues = {"discriminative": "blues", "generative": "oranges", "hybrid": "greens",
            "reference": "greys", "other": "purples"}  # fmt: skip
    families = [f for f in PARADIGM_FAMILIES if any(st["family"] == f for st in styles.values())]
    key = ", ".join(
        f"{hues[f]}: {'scikit-learn references' if f == 'reference' else f}" for f in families
    )
    fig.suptitle(
        f"Test error against training size by paradigm ({key}); mean and 95% band "
        "(seeds and test set)",
        fontsize="small",
    )
    return save_figure(fig, out_dir, "paradigms")


def sample_grids(samples: list[dict], out_dir: str | Path) -> list[Path]:
    """Per image task, one figure: real test examples, then each generative model's samples.

    Each panel shows one row per class (``SAMPLES_PER_CLASS`` images). Single-channel images
    (``image_shape`` (H, W)) are drawn in grey on the task's own pixel scale, shared by all
    panels of the figure; colour images (``image_shape`` (H, W, 3)) in RGB, each image rescaled
    to [0, 1] over its own range (``colour_image``). Tasks without an image shape get no
    figure. Writes out_dir/figures/samples_<task>.{png,svg,pdf} and returns the paths written.
    """
    by_task: dict[str, list[dict]] = {}
    for item in samples:
        if item.get("image_shape"):
            by_task.setdefault(item["task"], []).append(item)
    written = []
    for task, items in sorted(by_task.items()):
        shape = tuple(int(s) for s in items[0]["image_shape"])
        panels = [("real (test set)", items[0]["real"])]
        panels += [(f"{it['model']} (n={it['n_train']})", it["samples"]) for it in items]
        finite = np.concatenate([np.ravel(p[np.isfinite(p)]) for _, p in panels])
        low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        cols = min(4, len(panels))
        rows = -(-len(panels) // cols)
        fig = Figure(figsize=(3.0 * cols, 3.2 * rows), dpi=120, layout="constrained")
        for k, (title, x) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, k + 1)
            if is_colour(shape):
                ax.imshow(_mosaic(x, shape), interpolation="nearest")
            else:
                ax.imshow(_mosaic(x, shape), cmap="gray_r", vmin=low, vmax=high)
            ax.set_title(literal_text(title), fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        how = "; colours rescaled per image" if is_colour(shape) else ""
        fig.suptitle(f"{literal_text(task)}: samples per class (one row per class{how})")
        written += save_figure(fig, out_dir, f"samples_{safe_name(task)}")
    return written


def is_colour(shape: tuple[int, ...]) -> bool:
    """Whether ``image_shape`` is that of RGB images, (H, W, 3)."""
    return len(shape) == 3 and int(shape[2]) == 3


def colour_image(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One flattened (H, W, 3) image as RGBA in [0, 1] for ``imshow``, rescaled per image.

    The image's lowest finite value becomes 0 and its highest 1 (all channels together, so
    hues are kept); a constant image is mid-grey and non-finite pixels are black. Samples of a
    generative model are on the task's scale (e.g. 0..255), may overshoot it, and ``imshow``
    needs RGB floats in [0, 1].
    """
    image = np.asarray(pixels, dtype=float).reshape(shape)
    finite = np.isfinite(image)
    rgb = np.full(image.shape, 0.5)
    if finite.any():
        low, high = image[finite].min(), image[finite].max()
        if high > low:
            rgb = (image - low) / (high - low)
    rgb = np.where(finite, rgb, 0.0)
    return np.concatenate([rgb, np.ones((*image.shape[:2], 1))], axis=-1)


def grey_image(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One flattened image of shape (H, W) or (H, W, C) as (H, W) (the channels' mean)."""
    h, w = int(shape[0]), int(shape[1])
    return np.asarray(pixels, dtype=float).reshape(h, w, -1).mean(axis=-1)


def _mosaic(x: np.ndarray, shape: tuple[int, ...], gap: int = 1) -> np.ndarray:
    """``[C, n, D]`` images as one array: C rows of n images with gaps between them.

    Grey images give an (rows, cols) array with NaN gaps; colour images (``is_colour``) an
    (rows, cols, 4) RGBA array (``colour_image``) whose gaps are transparent.
    """
    classes, n, _ = x.shape
    h, w = int(shape[0]), int(shape[1])
    colour = is_colour(shape)
    size = (classes * (h + gap), n * (w + gap))
    out = np.zeros((*size, 4)) if colour else np.full(size, np.nan)
    for c in range(classes):
        for j in range(n):
            image = colour_image(x[c, j], shape) if colour else grey_image(x[c, j], shape)
            out[c * (h + gap) : c * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
    return out


def accuracy_vs_compute(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Accuracy against compute per cell at each task's largest n_train: one facet per task.

    Each model is drawn twice, coloured by paradigm and joined by a thin line: a filled point at
    its end-to-end seconds per cell (compile and input copy of its grid amortized over the
    grid's cells, plus fit and evaluation: `gdbench.reports.tables.grid_costs`) and a hollow point
    at
    its steady-state seconds per cell (fit + evaluation of the compiled grid); x on a log
    scale, y the mean test accuracy over ok seeds with its 95% interval (seeds and test set,
    `gdbench.reports.stats.summarize`) as an error bar; labelled at the filled point. A model whose
    cells at that size are partly not ok is labelled "(k not ok)"; one with no ok cell (or no
    positive time) is named in the facet title as not shown. Writes
    out_dir/figures/accuracy_vs_compute.{png,svg,pdf} and returns the paths written; [] when
    no (task, model) has an ok cell with a fit time.
    """
    fig = _accuracy_vs_compute_figure(df)
    return [] if fig is None else save_figure(fig, out_dir, "accuracy_vs_compute")


def _accuracy_vs_compute_figure(df: pd.DataFrame) -> Figure | None:
    if df.empty:
        return None
    check_unique_cells(df)
    largest = df.groupby("task")["n_train"].transform("max")
    stats = summarize(df[df["n_train"] == largest], ["accuracy"])
    costs = grid_costs(df).groupby(["task", "model"])[["steady_s", "end_to_end_s"]].mean()
    stats = stats.join(costs, on=["task", "model"])
    stats["plotted"] = (stats["accuracy_count"] > 0) & (stats["steady_s"] > 0)
    if not stats["plotted"].any():
        return None
    tasks = sorted(stats["task"].unique())
    fig, axes = facet_axes(len(tasks), width=4.4, height=3.6)
    for ax, task in zip(axes, tasks, strict=True):
        rows = stats[stats["task"] == task]
        for r in rows[rows["plotted"]].itertuples():
            color = PARADIGM_COLORS.get(r.paradigm, "black")
            yerr = _yerr(r.accuracy_mean, r.accuracy_lo, r.accuracy_hi)
            ax.plot(
                [r.steady_s, r.end_to_end_s],
                [r.accuracy_mean] * 2,
                color=color,
                linewidth=0.8,
                alpha=0.6,
            )
            for x, face in ((r.steady_s, "white"), (r.end_to_end_s, color)):
                ax.errorbar(
                    x,
                    r.accuracy_mean,
                    yerr=yerr,
                    fmt="o",
                    color=color,
                    markerfacecolor=face,
                    markersize=5,
                    capsize=2.5,
                    linewidth=1.0,
                )
            label = r.model + (f" ({r.n_not_ok} not ok)" if r.n_not_ok else "")
            ax.annotate(
                literal_text(label),
                (r.end_to_end_s, r.accuracy_mean),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
        n = int(rows["n_train"].iloc[0])
        ax.set_title(literal_text(f"{task} (n_train = {n})") + _not_shown(rows), fontsize="medium")
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel("seconds per cell (log scale)")
        ax.set_ylabel("test accuracy")
        ax.grid(True, which="both", alpha=0.3)
    paradigms = [p for p in PARADIGM_COLORS if p in set(stats.loc[stats["plotted"], "paradigm"])]
    handles = [
        Line2D([], [], marker="o", linestyle="", color=PARADIGM_COLORS[p], label=p)
        for p in paradigms
    ]
    handles += [
        Line2D(
            [], [], marker="o", linestyle="", color="0.3", label="end-to-end (compile amortized)"
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="0.3",
            markerfacecolor="white",
            label="steady state",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle("Test accuracy vs compute per cell at the largest training size (95% intervals)")
    return fig


def _yerr(mean: float, lo: float, hi: float) -> list[list[float]]:
    """Asymmetric error bar [[below], [above]] of an interval; 0 where it is undefined."""
    below = mean - lo if np.isfinite(lo) else 0.0
    above = hi - mean if np.isfinite(hi) else 0.0
    return [[max(below, 0.0)], [max(above, 0.0)]]


def likelihood_vs_accuracy(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Bits per dimension (x) against test accuracy (y) of the models with a likelihood.

    Uses the (task, model) pairs with at least one ok row of finite `bits_per_dim`, at each
    task's largest n_train among them: one point per model with the 95% intervals of
    `gdbench.reports.stats.summarize` (seeds and test set; accuracy inside [0, 1]) on both axes,
    coloured by model (same colours as the learning curves of `df`), one facet per task.
    Models whose likelihood is a bound (`likelihood_is_bound`, e.g. a VAE's ELBO/IWAE) are
    drawn hollow, exact likelihoods filled. Writes
    out_dir/figures/likelihood_vs_accuracy.{png,svg,pdf} and returns the paths written; [] (and
    no file) when no row has a finite bits_per_dim.
    """
    fig = _likelihood_vs_accuracy_figure(df)
    return [] if fig is None else save_figure(fig, out_dir, "likelihood_vs_accuracy")


def _likelihood_vs_accuracy_figure(df: pd.DataFrame) -> Figure | None:
    if df.empty or "bits_per_dim" not in df.columns:
        return None
    check_unique_cells(df)
    bpd = pd.to_numeric(df["bits_per_dim"], errors="coerce").astype(float)
    finite = (df["status"] == "ok") & np.isfinite(bpd)
    if not finite.any():
        return None
    colors = model_colors(df["model"].unique(), _paradigm_map(df))
    pairs = set(zip(df.loc[finite, "task"], df.loc[finite, "model"], strict=True))
    keep = pd.Series(
        [(t, m) in pairs for t, m in zip(df["task"], df["model"], strict=True)], index=df.index
    )
    rows = df[keep].assign(bits_per_dim=bpd[keep])
    largest = rows.loc[finite[keep]].groupby("task")["n_train"].max()
    rows = rows[rows["n_train"] == rows["task"].map(largest)]
    stats = summarize(rows, ["accuracy", "bits_per_dim"])
    bound = rows.get("likelihood_is_bound", pd.Series(False, index=rows.index))
    bound = bound.astype("boolean").fillna(False).astype(bool)
    is_bound = rows.assign(_bound=bound).groupby(["task", "model"])["_bound"].any()
    stats["plotted"] = stats["bits_per_dim_count"] > 0
    tasks = sorted(stats["task"].unique())
    fig, axes = facet_axes(len(tasks), width=4.4, height=3.6)
    for ax, task in zip(axes, tasks, strict=True):
        task_rows = stats[stats["task"] == task]
        for r in task_rows[task_rows["plotted"]].itertuples():
            color = colors[r.model]
            hollow = bool(is_bound.get((task, r.model), False))
            ax.errorbar(
                r.bits_per_dim_mean,
                r.accuracy_mean,
                xerr=_yerr(r.bits_per_dim_mean, r.bits_per_dim_lo, r.bits_per_dim_hi),
                yerr=_yerr(r.accuracy_mean, r.accuracy_lo, r.accuracy_hi),
                fmt="o",
                color=color,
                markerfacecolor="white" if hollow else color,
                markeredgecolor=color,
                markeredgewidth=1.3,
                markersize=6,
                capsize=2.5,
                linewidth=1.0,
            )
            label = r.model + (f" ({r.n_not_ok} not ok)" if r.n_not_ok else "")
            ax.annotate(
                literal_text(label),
                (r.bits_per_dim_mean, r.accuracy_mean),
                xytext=(5, 3),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
        n = int(task_rows["n_train"].iloc[0])
        ax.set_title(
            literal_text(f"{task} (n_train = {n})") + _not_shown(task_rows), fontsize="medium"
        )
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel("bits per dimension (lower is better)")
        ax.set_ylabel("test accuracy")
        ax.grid(True, alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="", color="black", label="exact likelihood"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="black",
            markerfacecolor="white",
            label="hollow: bound (ELBO/IWAE), true bits/dim is lower",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle("Likelihood vs accuracy at the largest training size (95% t-intervals)")
    return fig


def crossover_plot(per_size: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Per task, the paired error difference err_generative - err_discriminative against n_train.

    `per_size` maps a task name to a frame with the columns of `CROSSOVER_COLUMNS`: `pair`
    (e.g. "gnb_shared vs logreg"), `n_train`, `mean_diff` (mean paired difference of test
    error, a fraction), its 95% interval `lo`..`hi`, and the pair's crossover size `n_star`
    with its interval `n_star_lo`..`n_star_hi` (NaN when there is none; `n_star_hi` may be
    inf). Each pair is a line with its band; a zero line marks equal error (above it the
    discriminative model has the lower error); a finite n* is a vertical dashed line with its
    interval shaded, or a legend note when it lies more than 10x outside the measured sizes.
    Writes out_dir/figures/crossover_<task>.{png,svg,pdf} for each task with rows and returns
    the paths written ([] for no rows). A missing column raises `ValueError` naming it.
    """
    written = []
    for task in sorted(per_size):
        frame = per_size[task]
        if frame is None or len(frame) == 0:
            continue
        missing = [c for c in CROSSOVER_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(
                f"crossover table of task {task!r} has no column {missing[0]!r}; "
                f"expected columns: {', '.join(CROSSOVER_COLUMNS)}"
            )
        fig = _crossover_figure(frame, str(task))
        written += save_figure(fig, out_dir, f"crossover_{safe_name(str(task))}")
    return written


def _crossover_figure(frame: pd.DataFrame, task: str) -> Figure:
    frame = frame.assign(pair=frame["pair"].astype(str))
    pairs = sorted(frame["pair"].unique())
    colors = dict(zip(pairs, sns.color_palette("colorblind", len(pairs)), strict=True))
    sizes = np.sort(frame["n_train"].astype(float).unique())
    left, right = sizes.min() / 1.25, sizes.max() * 1.25
    fig = Figure(figsize=(6.4, 4.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="black", linewidth=0.9)
    for pair in pairs:
        g = frame[frame["pair"] == pair].sort_values("n_train")
        color = colors[pair]
        x = g["n_train"].astype(float).to_numpy()
        ax.plot(
            x,
            g["mean_diff"],
            marker="o",
            markersize=3.5,
            color=color,
            label=literal_text(wrap_label(pair)),
        )
        ax.fill_between(x, g["lo"], g["hi"], color=color, alpha=0.2, linewidth=0)
        n_star, lo, hi = (_first_value(g[c]) for c in ("n_star", "n_star_lo", "n_star_hi"))
        if math.isnan(n_star):
            ax.plot([], [], linestyle="", label="  n*: no crossover found")
            continue
        n_min, n_max = sizes.min(), sizes.max()
        note = f"  n* {format_n_star(n_star, n_min, n_max)}"
        if not note.startswith(("  n* <", "  n* >")):
            note = f"  n* ≈ {format_n_star(n_star, n_min, n_max)}"
        if not (math.isnan(lo) and math.isnan(hi)):
            lo_text, hi_text = (format_n_star(v, n_min, n_max) for v in (lo, hi))
            note += f" (95% CI {lo_text}–{hi_text})"
        if n_star == 0 or math.isinf(n_star):  # censored: outside the measured sizes
            ax.plot([], [], linestyle="", label=note)
        elif sizes.min() / 10 <= n_star <= sizes.max() * 10:
            left, right = min(left, n_star / 1.25), max(right, n_star * 1.25)
            ax.axvline(n_star, color=color, linestyle="--", linewidth=1.2, label=note)
            # An open interval (inf) is shaded to beyond the right edge; the x limits clip it.
            far = sizes.max() * 100
            span_lo = n_star if math.isnan(lo) else max(lo, sizes.min() / 100)
            span_hi = n_star if math.isnan(hi) else min(hi, far)
            if span_hi > span_lo:
                ax.axvspan(span_lo, span_hi, color=color, alpha=0.1, linewidth=0)
        else:
            ax.plot([], [], linestyle="", label=note + ", outside the plotted range")
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ticks = [int(n) for n in sizes]
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training examples (n_train, log scale)")
    ax.set_ylabel("test error difference\n(generative − discriminative)")
    ax.set_title(f"{literal_text(task)}: paired error difference (mean, 95% CI over seeds)")
    ax.text(
        0.01,
        0.99,
        "above 0: discriminative has lower error",
        transform=ax.transAxes,
        va="top",
        fontsize=7,
        color="0.35",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def facet_axes(count: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with `count` axes, at most three per row."""
    cols = min(3, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), dpi=150, layout="constrained")
    return fig, [fig.add_subplot(rows, cols, k + 1) for k in range(count)]


def _not_shown(rows: pd.DataFrame) -> str:
    """A second title line naming the models of `rows` that could not be plotted."""
    hidden = sorted(rows.loc[~rows["plotted"], "model"])
    return "\n" + literal_text(f"not shown (no ok cell): {', '.join(hidden)}") if hidden else ""


def _first_value(values: pd.Series) -> float:
    """The first non-NaN value of `values` as a float (inf kept), NaN if there is none."""
    v = pd.to_numeric(values, errors="coerce").astype(float).dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def _num(value: float) -> str:
    if math.isnan(value):
        return "?"
    return "∞" if math.isinf(value) else f"{value:.3g}"


#: Widest legend line, in characters, before a model label is broken (``wrap_label``).
LABEL_WIDTH = 44


def wrap_label(text: str, width: int = LABEL_WIDTH) -> str:
    """`text` broken into lines of at most `width` characters where it can be: before " vs "
    and after the "?" and "&" of model specs (``mlp?hidden=256-256&steps=500``); a piece
    longer than `width` stays whole. Short labels come back unchanged."""
    text = str(text)
    if len(text) <= width:
        return text
    pieces = [p for p in re.split(r"(?<=[?&])|(?= vs )", text) if p]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append(piece.lstrip())
        else:
            lines[-1] += piece
    return "\n".join(lines)


def literal_text(text: str) -> str:
    """`text` with dollar signs escaped, so matplotlib shows it literally (no mathtext)."""
    return str(text).replace("$", r"\$")


def figure_markdown(paths: list[Path], out: Path) -> list[str]:
    """Markdown lines embedding each PNG of `paths` (relative to `out`), with links to its SVG
    and PDF."""
    lines = []
    for png in (p for p in paths if p.suffix == ".png"):
        rel = png.relative_to(out).with_suffix("").as_posix()
        lines += [
            f"![{png.stem}]({rel}.png)",
            "",
            f"{png.stem}: [SVG]({rel}.svg) · [PDF]({rel}.pdf)",
            "",
        ]
    return lines
