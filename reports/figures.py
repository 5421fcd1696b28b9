"""Figures of stored rows, rendered off-screen.

Figures are built as `matplotlib.figure.Figure` objects and saved through the Agg (PNG) and SVG
canvases directly, never through pyplot: no GUI backend, no global backend switch, and nothing
left open in pyplot's figure registry.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from reports.stats import check_unique_cells, summarize
from results.store import safe_name

LINESTYLES = {"discriminative": "-", "generative": "--", "hybrid": "-.", "reference": (0, (5, 1))}
FORMATS = ("png", "svg")
_RC = {"svg.hashsalt": "gdbench", "svg.fonttype": "path"}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def _dash(style) -> tuple | str:
    """A matplotlib line style as a seaborn ``dashes`` entry ("" for solid)."""
    named = {"-": "", "--": (4, 2), "-.": (4, 1.5, 1, 1.5), ":": (1, 1.5)}
    return named[style] if isinstance(style, str) else style[1]


def learning_curves(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One figure per task of test error (1 - accuracy) against n_train (log scale).

    Each model is a line of the mean over ok seeds with its 95% t-interval as a band (clipped
    to [0, 1]); colour is the model, line style the paradigm (discriminative solid, generative
    dashed); synthetic tasks get a dotted line at the Bayes error (1 - bayes_accuracy). Writes
    out_dir/figures/learning_curve_<task>.{png,svg} and returns the paths written.
    """
    check_unique_cells(df)
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    models = sorted(df["model"].unique())
    colors = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
    written = []
    for task in sorted(df["task"].unique()):
        rows = df[df["task"] == task]
        fig = _learning_curve_figure(rows, task, colors)
        stem = fig_dir / f"learning_curve_{safe_name(task)}"
        with matplotlib.rc_context(_RC):
            for ext in FORMATS:
                path = stem.with_suffix(f".{ext}")
                fig.savefig(path, format=ext, metadata=_METADATA[ext], bbox_inches="tight")
                written.append(path)
    return written


def _learning_curve_figure(rows: pd.DataFrame, task: str, colors: dict) -> Figure:
    stats = summarize(rows, ["accuracy"], by=("model", "paradigm", "n_train"))
    stats = stats[stats["accuracy_count"] > 0].sort_values(["model", "n_train"])
    stats = stats.assign(error=1.0 - stats["accuracy_mean"])
    fig = Figure(figsize=(6.0, 4.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    # Lines by seaborn (colour = model, dashes = paradigm); the bands are the t-intervals
    # computed by reports.stats, not seaborn's own bootstrap, so tables and figures agree.
    paradigms = sorted(stats["paradigm"].unique())
    sns.lineplot(
        data=stats,
        x="n_train",
        y="error",
        hue="model",
        style="paradigm",
        style_order=paradigms,
        dashes={p: _dash(LINESTYLES.get(p, "-")) for p in paradigms},
        markers=True,
        markersize=4,
        palette=colors,
        errorbar=None,
        ax=ax,
    )
    for model, g in stats.groupby("model", sort=True):
        half = g["accuracy_ci95"].fillna(0.0)
        ax.fill_between(
            g["n_train"],
            (g["error"] - half).clip(0.0, 1.0),
            (g["error"] + half).clip(0.0, 1.0),
            color=colors[model],
            alpha=0.2,
            linewidth=0,
        )
    bayes = rows["bayes_accuracy"].dropna()
    if not bayes.empty:
        ax.axhline(
            1.0 - bayes.mean(), color="black", linestyle=":", linewidth=1.2, label="Bayes error"
        )
    ax.set_xscale("log")
    sizes = sorted(int(n) for n in rows["n_train"].unique())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training examples (n_train, log scale)")
    ax.set_ylabel("test error (1 − accuracy)")
    ax.set_title(f"{task}: learning curves (mean, 95% t-interval over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def sample_grids(samples: list[dict], out_dir: str | Path) -> list[Path]:
    """Per image task, one figure: real test examples, then each generative model's samples.

    Each panel shows one row per class (``SAMPLES_PER_CLASS`` images); pixel values are drawn
    on the task's own scale, shared by all panels of the figure. Tasks without an image
    shape get no figure. Returns the PNG and SVG paths written.
    """
    fig_dir = Path(out_dir) / "figures"
    by_task: dict[str, list[dict]] = {}
    for item in samples:
        if item.get("image_shape"):
            by_task.setdefault(item["task"], []).append(item)
    written = []
    for task, items in sorted(by_task.items()):
        fig_dir.mkdir(parents=True, exist_ok=True)
        shape = tuple(items[0]["image_shape"])
        panels = [("real (test set)", items[0]["real"])]
        panels += [(f"{it['model']} (n={it['n_train']})", it["samples"]) for it in items]
        finite = np.concatenate([np.ravel(p[np.isfinite(p)]) for _, p in panels])
        low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        cols = min(4, len(panels))
        rows = -(-len(panels) // cols)
        fig = Figure(figsize=(3.0 * cols, 3.2 * rows), dpi=120, layout="constrained")
        for k, (title, x) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, k + 1)
            ax.imshow(_mosaic(x, shape), cmap="gray_r", vmin=low, vmax=high)
            ax.set_title(title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{task}: samples per class (one row per class)")
        stem = fig_dir / f"samples_{safe_name(task)}"
        with matplotlib.rc_context(_RC):
            for ext in FORMATS:
                path = stem.with_suffix(f".{ext}")
                fig.savefig(path, format=ext, metadata=_METADATA[ext], bbox_inches="tight")
                written.append(path)
    return written


def _mosaic(x: np.ndarray, shape: tuple[int, int], gap: int = 1) -> np.ndarray:
    """``[C, n, H*W]`` images as one array: C rows of n images, NaN gaps between them."""
    classes, n, _ = x.shape
    h, w = shape
    out = np.full((classes * (h + gap), n * (w + gap)), np.nan)
    for c in range(classes):
        for j in range(n):
            image = x[c, j].reshape(h, w)
            out[c * (h + gap) : c * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
    return out
