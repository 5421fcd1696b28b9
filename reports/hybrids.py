"""Report pages for GANs, hybrid models and sample quality: training traces, samples over
training, sample-quality tables and the generative/discriminative lambda sweep.

Works from stored rows and traces only (numpy, pandas, matplotlib; no JAX), like the rest of
`reports`. Four parts, each present only when a run holds its data:

- **GAN training**: the discriminator and generator losses and the discriminator's accuracy
  on real and on generated data over optimiser steps (Goodfellow et al. 2014, "Generative
  adversarial nets"), mean over seeds with a 95% Student-t band, and a table of the final
  values. An accuracy near 0.5 on both real and generated data is the equilibrium of the
  minimax game; a discriminator that wins outright (accuracy near 1 on both) leaves the
  generator without gradient.
- **Samples over training**: for image tasks, the stored samples of the first seed at each
  trace point, one row per trace point.
- **Sample quality**: per task a table of the Fréchet distance in the task's
  feature-classifier space (the FID of Heusel et al. 2017 with gdbench's per-task classifier
  in place of Inception), the classifier score (the Inception Score of Salimans et al. 2016,
  exp E_x KL(p(y|x) || p(y)), in [1, C]), precision and recall of the samples (Kynkäänniemi
  et al. 2019, k-NN manifolds in feature space) and the Classification Accuracy Score (Ravuri
  & Vinyals 2019: test accuracy of a classifier trained on the model's class-conditional
  samples), next to the same classifier trained on real data of the same size.
- **Lambda sweep**: the `hybrid` model's blended per-example loss
  lam * (-log p(x, y)) + (1 - lam) * (-log p(y|x)) (Bouchard & Triggs 2004; Lasserre, Bishop &
  Minka 2006): test accuracy, conditional NLL and log p(x) against lam, from the
  discriminative solution (lam = 0) to the generative one (lam = 1).

Every "a ± b" is the mean over ok seeds ± the half-width of its 95% Student-t interval
(`gdbench.reports.stats`), as in every other table of a report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from gdbench.reports import latex
from gdbench.reports.figures import (
    colour_image,
    facet_axes,
    figure_markdown,
    grey_image,
    is_colour,
    literal_text,
    save_figure,
)
from gdbench.reports.stats import INTERVAL_METHOD, check_unique_cells, summarize, t_half_width
from gdbench.reports.tables import DASH, DECIMALS, fmt_interval, fmt_mean_ci, table
from gdbench.results.store import safe_name

SECTION_TITLE = "Hybrids and sample quality"
#: Sample-quality columns of the result rows, their table headers and whether higher is better.
QUALITY = ("fd", "classifier_score", "precision", "recall", "cas", "cas_real")
QUALITY_HEADERS = {
    "fd": "FD ↓",
    "classifier_score": "classifier score ↑",
    "precision": "precision ↑",
    "recall": "recall ↑",
    "cas": "CAS ↑",
    "cas_real": "CAS real data",
}
QUALITY_TEX_HEADERS = {
    "fd": r"FD $\downarrow$",
    "classifier_score": r"Cls.\ score $\uparrow$",
    "precision": r"Precision $\uparrow$",
    "recall": r"Recall $\uparrow$",
    "cas": r"CAS $\uparrow$",
    "cas_real": r"CAS (real)",
}
QUALITY_DECIMALS = 3
#: Training-trace series of a GAN, in the order drawn and tabulated; any other ``[S, T]`` trace
#: a model stores follows them (named as stored).
TRACE_SERIES = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "class_acc_real", "class_acc_fake")
TRACE_LABELS = {
    "d_loss": "discriminator loss",
    "g_loss": "generator loss",
    "d_acc_real": "D accuracy on real",
    "d_acc_fake": "D accuracy on generated",
    "class_acc_real": "class head accuracy on real",
    "class_acc_fake": "class head accuracy on generated",
}
TRACE_DECIMALS = 3
#: Model of the lambda sweep (name before "?") and the metrics drawn against lambda.
HYBRID_MODEL = "hybrid"
SWEEP_METRICS = ("accuracy", "nll", "log_lik")
SWEEP_LABELS = {
    "accuracy": "test accuracy",
    "nll": "conditional NLL (nats)",
    "log_lik": "log p(x) per example (nats)",
}


@dataclass(frozen=True)
class HybridSection:
    """The report section: its Markdown ("" when there is nothing to show), the figure files
    (png, svg, pdf of each figure) and the booktabs .tex tables written."""

    markdown: str
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def hybrid_section(
    df: pd.DataFrame, traces: Sequence[dict[str, Any]], out_dir: str | Path
) -> HybridSection:
    """Build the "Hybrids and sample quality" section of a report from rows and traces.

    `df` holds result rows (`gdbench.results.load`), `traces` the items of
    `gdbench.results.store.read_traces`
    (optionally with a `run` key naming their run). Writes figures under out_dir/figures and
    tables under out_dir/tables and returns them with the section's Markdown, whose image and
    table links are relative to `out_dir`. A part without data is left out; with no data at
    all the Markdown is "" and nothing is written.
    """
    out = Path(out_dir)
    parts: list[str] = []
    figures: list[Path] = []
    tex: list[Path] = []

    md, paths = gan_training_markdown(traces, out)
    parts.append(md)
    figures += paths
    md, paths = training_samples_markdown(traces, out)
    parts.append(md)
    figures += paths
    md, paths = sample_quality_markdown(df, out)
    parts.append(md)
    tex += paths
    md, figure_paths, table_paths = lambda_sweep_markdown(df, out)
    parts.append(md)
    figures += figure_paths
    tex += table_paths

    parts = [p for p in parts if p]
    if not parts:
        return HybridSection("")
    intro = (
        f"## {SECTION_TITLE}\n\nGAN training diagnostics, samples, sample-quality metrics and the "
        "generative/discriminative trade-off of the hybrid objective, for the models that have "
        "them. Intervals: mean ± 95% t-interval over seeds.\n"
    )
    return HybridSection("\n".join([intro, *parts]), figures, tex)


# --- GAN training ---------------------------------------------------------------------------


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, 95% t half-width and count over seeds of a trace ``[S, T]``, per step.

    Non-finite entries are left out of their step; the mean is NaN where a step has no finite
    value and the half-width NaN where it has fewer than two.
    """
    a = np.atleast_2d(np.asarray(values, dtype=float))
    finite = np.isfinite(a)
    count = finite.sum(axis=0)
    filled = np.where(finite, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
        sq = np.where(finite, (a - mean) ** 2, 0.0).sum(axis=0)
        std = np.sqrt(sq / (count - 1))
    mean = np.where(count > 0, mean, np.nan)
    return mean, t_half_width(std, count), count


def gan_final_values(traces: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per trace set: task, model, n_train, run, seeds, the last step, and for each
    ``[S, T]`` trace series (see `trace_series`) its mean (``<s>_mean``), 95% t half-width
    (``<s>_ci95``) and count (``<s>_count``) over seeds at the last trace point."""
    rows = []
    for item in _trace_items(traces):
        steps = np.asarray(item["trace_step"])
        row: dict[str, Any] = {
            "task": str(item["task"]),
            "model": str(item["model"]),
            "n_train": int(item["n_train"]),
            "run": str(item.get("run", "")),
            "seeds": len(item.get("seeds") or []),
            "step": int(steps[-1]) if steps.size else -1,
        }
        for name in trace_series(item):
            mean, half, count = seed_band(np.asarray(item[name])[:, -1:])
            row.update({f"{name}_mean": mean[0], f"{name}_ci95": half[0]})
            row[f"{name}_count"] = int(count[0])
        rows.append(row)
    return pd.DataFrame(rows)


def gan_training_markdown(
    traces: Sequence[dict[str, Any]], out_dir: str | Path
) -> tuple[str, list[Path]]:
    """The "GAN training" part: final-value table and one figure per trace set."""
    items = _trace_items(traces)
    if not items:
        return "", []
    final = gan_final_values(items)
    found = {s for item in items for s in trace_series(item)}
    series = [s for s in TRACE_SERIES if s in found] + sorted(found - set(TRACE_SERIES))
    show_run = final["run"].nunique() > 1
    header = [
        "task",
        "model",
        *(["run"] if show_run else []),
        "n_train",
        "seeds",
        "last step",
        *(TRACE_LABELS.get(s, s) for s in series),
    ]
    body = []
    for _, r in final.iterrows():
        cells = [
            fmt_mean_ci(r[f"{s}_mean"], r[f"{s}_ci95"], TRACE_DECIMALS)
            if pd.notna(r.get(f"{s}_mean"))
            else DASH
            for s in series
        ]
        run = [r["run"]] if show_run else []
        body.append(
            [r["task"], r["model"], *run, str(r["n_train"]), str(r["seeds"]), str(r["step"])]
            + cells
        )
    paths: list[Path] = []
    stems = _stems(items, "gan_training")
    for item, stem in zip(items, stems, strict=True):
        paths += save_figure(_training_figure(item), out_dir, stem)
    lines = [
        "### GAN training",
        "",
        "Training traces of the models that store them, at the training size shown: "
        "discriminator (D) and generator losses, D's accuracy at telling real training "
        "examples and generated ones apart, and (conditional GANs) the accuracy of D's class "
        "head on real examples and on generated ones against their conditioning labels, over "
        "optimiser steps. At the equilibrium of the minimax game D "
        "is at chance (0.5) on both; D near 1 on both means the generator gets little gradient, "
        "a generator loss that keeps rising with D's accuracy is the usual sign of a collapsing "
        "run. Final values at the last trace point (mean ± 95% t-interval over seeds):",
        "",
        *table(header, body),
        "",
        *figure_markdown(paths, Path(out_dir)),
    ]
    return "\n".join(lines), paths


def _trace_items(traces: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trace sets with a step axis, sorted by (task, model, n_train, run)."""
    items = [t for t in traces if "trace_step" in t and np.size(t["trace_step"]) > 0]
    key = [
        (str(t["task"]), str(t["model"]), int(t["n_train"]), str(t.get("run", ""))) for t in items
    ]
    return [items[i] for i in sorted(range(len(items)), key=key.__getitem__)]


def _stems(items: list[dict[str, Any]], prefix: str) -> list[str]:
    """A distinct file stem per trace set (the run's name added where two runs collide)."""
    keys = [f"{prefix}_{t['task']}__{t['model']}__n{int(t['n_train'])}" for t in items]
    stems = []
    for key, item in zip(keys, items, strict=True):
        if keys.count(key) > 1:
            key += f"__{item.get('run', '')}"
        stems.append(safe_name(key))
    return stems


def trace_series(item: dict[str, Any]) -> list[str]:
    """The ``[S, T]`` trace arrays of a trace set: `TRACE_SERIES` first, then others by name."""
    steps = np.size(item["trace_step"])
    names = {
        k
        for k, v in item.items()
        if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] == steps and k != "trace_step"
    }
    return [s for s in TRACE_SERIES if s in names] + sorted(names - set(TRACE_SERIES))


def _series_groups(item: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Panels of a training figure: losses, D's real/fake accuracy, the class head's accuracy,
    then one panel per other trace."""
    ordered = trace_series(item)
    losses = [s for s in ordered if "loss" in s]
    d_acc = [s for s in ordered if s.startswith("d_acc")]
    class_acc = [s for s in ordered if s.startswith("class_acc")]
    other = [s for s in ordered if s not in {*losses, *d_acc, *class_acc}]
    groups = [
        ("loss", losses),
        ("D accuracy, real vs generated", d_acc),
        ("class head accuracy", class_acc),
    ]
    groups += [(s, [s]) for s in other]
    return [(title, series) for title, series in groups if series]


def _training_figure(item: dict[str, Any]) -> Figure:
    steps = np.asarray(item["trace_step"], dtype=float)
    groups = _series_groups(item)
    fig, axes = facet_axes(max(1, len(groups)), width=4.6, height=3.4)
    palette = sns.color_palette("colorblind", 8)
    for ax, (title, series) in zip(axes, groups, strict=False):
        for k, name in enumerate(series):
            mean, half, _ = seed_band(item[name])
            color = palette[k % len(palette)]
            ax.plot(steps, mean, color=color, label=literal_text(TRACE_LABELS.get(name, name)))
            band = np.nan_to_num(half, nan=0.0)
            ax.fill_between(steps, mean - band, mean + band, color=color, alpha=0.2, linewidth=0)
        if series[0].startswith("d_acc"):
            ax.axhline(0.5, color="black", linestyle=":", linewidth=1.0, label="chance (0.5)")
        if "accuracy" in title:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(literal_text(title))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    seeds = len(item.get("seeds") or [])
    fig.suptitle(
        literal_text(
            f"{item['task']}: {item['model']} training (n_train = {int(item['n_train'])}; "
            f"mean, 95% t-interval over {seeds} seeds)"
        )
    )
    return fig


# --- samples over training ------------------------------------------------------------------


def training_samples_markdown(
    traces: Sequence[dict[str, Any]], out_dir: str | Path
) -> tuple[str, list[Path]]:
    """The "Samples over training" part: one grid figure per image trace set with samples."""
    items = [
        t
        for t in _trace_items(traces)
        if t.get("image_shape")
        and "trace_samples" in t
        and np.ndim(t["trace_samples"]) == 4
        and np.shape(t["trace_samples"])[-1] == int(np.prod(t["image_shape"]))
    ]
    if not items:
        return "", []
    paths: list[Path] = []
    for item, stem in zip(items, _stems(items, "training_samples"), strict=True):
        paths += save_figure(training_samples_figure(item), out_dir, stem)
    lines = [
        "### Samples over training",
        "",
        "Samples of the first seed at each trace point (one row per trace point, labelled by "
        "its optimiser step); columns are the classes, each with its draws, on the task's own "
        "pixel scale.",
        "",
        *figure_markdown(paths, Path(out_dir)),
    ]
    return "\n".join(lines), paths


def training_samples_figure(item: dict[str, Any]) -> Figure:
    """A grid of ``trace_samples [T, C, k, D]``: row t holds, class by class, the k samples of
    trace point t, each reshaped to `image_shape`; rows labelled by their step. Grey images
    share the figure's pixel scale; colour ones, (H, W, 3), are each rescaled to [0, 1]."""
    x = np.asarray(item["trace_samples"], dtype=float)
    shape = tuple(int(s) for s in item["image_shape"])
    mosaic, row_centres, class_centres = sample_mosaic(x, shape)
    finite = x[np.isfinite(x)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    height, width = mosaic.shape[:2]
    fig_w = float(np.clip(width / 40.0, 5.0, 16.0))
    fig_h = float(np.clip(fig_w * height / width + 0.9, 2.0, 22.0))
    fig = Figure(figsize=(fig_w, fig_h), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    if is_colour(shape):
        ax.imshow(mosaic, interpolation="nearest")
    else:
        ax.imshow(mosaic, cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
    steps = np.asarray(item["trace_step"]).astype(int)
    ax.set_yticks(row_centres, [f"step {s}" for s in steps[: len(row_centres)]])
    ax.xaxis.tick_top()
    ax.set_xticks(class_centres, [f"class {c}" for c in range(len(class_centres))])
    ax.tick_params(length=0, labelsize="small")
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(
        literal_text(
            f"{item['task']}: {item['model']} samples over training (n_train = "
            f"{int(item['n_train'])}, first seed)"
        ),
        fontsize="medium",
    )
    return fig


def sample_mosaic(
    x: np.ndarray, shape: tuple[int, ...], gap: int = 1, class_gap: int = 3
) -> tuple[np.ndarray, list[float], list[float]]:
    """``[T, C, k, D]`` images of `shape` (H, W) or (H, W, C) as one array of T rows, each C
    blocks of k images.

    Images are separated by `gap` NaN pixels, class blocks by `class_gap`; colour images
    (H, W, 3) give an RGBA mosaic (``gdbench.reports.figures.colour_image``, each image rescaled to
    [0, 1]) whose gaps are transparent. Returns the mosaic and the centres (in pixels) of its
    rows and of its class blocks, for axis labels.
    """
    steps, classes, k, _ = x.shape
    h, w = int(shape[0]), int(shape[1])
    colour = is_colour(shape)
    block = k * (w + gap) - gap
    width = classes * block + (classes - 1) * class_gap
    size = (steps * (h + gap) - gap, width)
    out = np.zeros((*size, 4)) if colour else np.full(size, np.nan)
    for t in range(steps):
        top = t * (h + gap)
        for c in range(classes):
            left = c * (block + class_gap)
            for j in range(k):
                col = left + j * (w + gap)
                image = colour_image(x[t, c, j], shape) if colour else grey_image(x[t, c, j], shape)
                out[top : top + h, col : col + w] = image
    rows = [t * (h + gap) + (h - 1) / 2 for t in range(steps)]
    cols = [c * (block + class_gap) + (block - 1) / 2 for c in range(classes)]
    return out, rows, cols


# --- sample quality -------------------------------------------------------------------------


def quality_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model) with a sample-quality value: the statistics at the size they were
    computed (the largest n_train of the pair with a finite value; in practice the grid's
    largest size). Columns: task, model, paradigm, n_train, then per metric of `QUALITY`
    ``<m>_mean``, ``<m>_std``, ``<m>_count``, ``<m>_ci95``, then n_ok, n_not_ok. Empty when
    no row has any quality value."""
    present = [m for m in QUALITY if m in df.columns]
    if df.empty or not present:
        return pd.DataFrame()
    check_unique_cells(df)
    frame = df.assign(**{m: np.nan for m in QUALITY if m not in df.columns})
    values = frame[list(QUALITY)].apply(pd.to_numeric, errors="coerce").astype(float)
    has = np.isfinite(values.to_numpy()).any(axis=1) & (frame["status"] == "ok").to_numpy()
    if not has.any():
        return pd.DataFrame()
    sizes = frame[has].groupby(["task", "model"])["n_train"].max()
    key = pd.MultiIndex.from_frame(frame[["task", "model"]])
    at = frame["n_train"].to_numpy() == sizes.reindex(key).to_numpy()
    rows = frame[at].assign(**{m: values.loc[at, m] for m in QUALITY})
    return summarize(rows, QUALITY, by=("task", "model", "paradigm", "n_train"))


def sample_quality_markdown(df: pd.DataFrame, out_dir: str | Path) -> tuple[str, list[Path]]:
    """The "Sample quality" part: a Markdown table per task, each also written as
    tables/sample_quality_<task>.tex."""
    stats = quality_stats(df)
    if stats.empty:
        return "", []
    lines = [
        "### Sample quality",
        "",
        "Samples of each model that can generate, scored in the feature space of gdbench's "
        "per-task feature classifier, at the training size shown (the grid's largest): FD, "
        "the Fréchet distance between Gaussians fitted to real test features and to generated "
        "features (FID, Heusel et al. 2017; lower is better); classifier score, exp E KL(p(y|x) "
        "|| p(y)) of the same classifier (Inception Score, Salimans et al. 2016; in [1, C], "
        "higher is better); precision (fraction of samples inside the k-NN manifold of real "
        "data: fidelity) and recall (fraction of real data inside the samples' manifold: "
        "coverage) (Kynkäänniemi et al. 2019); CAS, test accuracy of a fixed logistic "
        "regression trained on the model's class-conditional samples (Ravuri & Vinyals 2019), "
        "next to the same classifier trained on the cell's real training subset of the same "
        "size (CAS real data): the gap is what the samples fail to teach.",
        "",
    ]
    tex: list[Path] = []
    table_dir = Path(out_dir) / "tables"
    for task in sorted(stats["task"].unique()):
        rows = stats[stats["task"] == task].sort_values(["model", "n_train"])
        sizes = sorted(int(n) for n in rows["n_train"].unique())
        size_text = " / ".join(str(n) for n in sizes)
        lines += [
            f"#### {task}",
            "",
            f"At n_train = {size_text} (mean ± 95% t-interval over seeds):",
            "",
        ]
        body = []
        for _, r in rows.iterrows():
            cells = [fmt_mean_ci(r[f"{m}_mean"], r[f"{m}_ci95"], QUALITY_DECIMALS) for m in QUALITY]
            seeds = str(int(r["n_ok"])) + (
                f" (+{int(r['n_not_ok'])} not ok)" if r["n_not_ok"] else ""
            )
            body.append([r["model"], r["paradigm"], str(int(r["n_train"])), seeds, *cells])
        lines += [
            *table(["model", "paradigm", "n_train", "seeds", *QUALITY_HEADERS.values()], body),
            "",
        ]
        table_dir.mkdir(parents=True, exist_ok=True)
        path = table_dir / f"sample_quality_{safe_name(str(task))}.tex"
        path.write_text(_quality_tex(rows, str(task), size_text))
        tex.append(path)
    return "\n".join(lines), tex


def _quality_tex(rows: pd.DataFrame, task: str, size_text: str) -> str:
    frame = pd.DataFrame(
        {
            "Model": [latex.model_tex(m) for m in rows["model"]],
            "Paradigm": [latex.paradigm_tex(p) for p in rows["paradigm"]],
            r"$n_{\mathrm{train}}$": [str(int(n)) for n in rows["n_train"]],
            "Seeds": [str(int(n)) for n in rows["n_ok"]],
        }
    )
    for m in QUALITY:
        frame[QUALITY_TEX_HEADERS[m]] = [
            _tex_mean_ci(mean, ci, QUALITY_DECIMALS)
            for mean, ci in zip(rows[f"{m}_mean"], rows[f"{m}_ci95"], strict=True)
        ]
    caption = (
        f"Sample quality on {latex.task_tex(task)} at "
        f"$n_{{\\mathrm{{train}}}}={latex.escape_latex(size_text)}$: mean $\\pm$ half-width of "
        r"the 95\% Student-$t$ interval over seeds. FD: Fr\'echet distance in the task's "
        "feature-classifier space; classifier score: "
        "$\\exp \\mathrm{E}_x \\mathrm{KL}(p(y \\mid x) \\,\\|\\, p(y))$; precision "
        'and recall: k-NN manifolds (Kynk\\"a\\"anniemi et al.\\ 2019); CAS: accuracy of a '
        "classifier trained on samples, CAS (real): trained on real data of the same size "
        "(gdbench)."
    )
    return latex.dataframe_to_booktabs(
        frame,
        caption,
        latex.label(f"quality-{safe_name(task)}"),
        escape=False,
        index=False,
        column_format="llrr" + "r" * len(QUALITY),
        repeat=4,
    )


def _tex_mean_ci(mean: float, ci: float, decimals: int) -> str:
    text = fmt_mean_ci(mean, ci, decimals)
    return latex.NA if text == DASH else text.replace(" ± ", r" $\pm$ ")


# --- lambda sweep ---------------------------------------------------------------------------


def model_lam(model: str, model_config: str | None) -> float:
    """The blend weight lam of a hybrid row: ``lam`` of its model_config JSON, else the
    ``lam=`` of its spec (``hybrid?lam=0.25``); NaN when neither gives one."""
    try:
        config = json.loads(model_config) if model_config else {}
    except (TypeError, json.JSONDecodeError):
        config = {}
    value = config.get("lam") if isinstance(config, dict) else None
    if value is None:
        query = str(model).partition("?")[2]
        value = dict(p.partition("=")[::2] for p in query.split("&") if p).get("lam")
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def lambda_sweep_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per task with `HYBRID_MODEL` rows at two or more lam values: statistics at the largest
    n_train of those rows, one row per (lam, model). Columns: task, lam, model, n_train, then
    ``<m>_mean``, ``<m>_std``, ``<m>_count``, ``<m>_ci95`` of each of `SWEEP_METRICS`, then
    n_ok, n_not_ok; sorted by task, lam, model. Empty when no task has a sweep."""
    if df.empty:
        return pd.DataFrame()
    base = df["model"].astype(str).str.partition("?")[0]
    rows = df[base == HYBRID_MODEL]
    if rows.empty:
        return pd.DataFrame()
    check_unique_cells(rows)
    config = rows["model_config"] if "model_config" in rows else pd.Series("", index=rows.index)
    lam = [model_lam(m, c) for m, c in zip(rows["model"], config, strict=True)]
    rows = rows.assign(lam=lam, **{m: np.nan for m in SWEEP_METRICS if m not in rows.columns})
    rows = rows[np.isfinite(rows["lam"])]
    frames = []
    for _, task_rows in rows.groupby("task", sort=True):
        if task_rows["lam"].nunique() < 2:
            continue
        largest = task_rows[task_rows["n_train"] == task_rows["n_train"].max()]
        frames.append(summarize(largest, SWEEP_METRICS, by=("task", "lam", "model", "n_train")))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["task", "lam", "model"], kind="stable").reset_index(drop=True)


def lambda_sweep_markdown(
    df: pd.DataFrame, out_dir: str | Path
) -> tuple[str, list[Path], list[Path]]:
    """The "Lambda sweep" part: a table ordered by lam, tables/lambda_sweep.tex and the
    figure lambda_sweep.{png,svg,pdf}."""
    stats = lambda_sweep_stats(df)
    if stats.empty:
        return "", [], []
    metrics = [m for m in SWEEP_METRICS if stats[f"{m}_count"].sum() > 0]
    headers = {"accuracy": "accuracy", "nll": "NLL (nats)", "log_lik": "log p(x) (nats)"}
    body = []
    for _, r in stats.iterrows():
        cells = [
            fmt_interval(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"], DECIMALS[m], m == "accuracy")
            for m in metrics
        ]
        seeds = str(int(r["n_ok"])) + (f" (+{int(r['n_not_ok'])} not ok)" if r["n_not_ok"] else "")
        body.append([r["task"], f"{r['lam']:g}", r["model"], str(int(r["n_train"])), seeds, *cells])
    figure_paths = save_figure(_sweep_figure(stats, metrics), out_dir, "lambda_sweep")
    table_dir = Path(out_dir) / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    tex_path = table_dir / "lambda_sweep.tex"
    tex_path.write_text(_sweep_tex(stats, metrics))
    lines = [
        "### Lambda sweep",
        "",
        "The hybrid model fits one classifier by minimising the blended loss lam · (−log p(x, "
        "y)) + (1 − lam) · (−log p(y|x)) per example (Bouchard & Triggs 2004; Lasserre, "
        "Bishop & Minka 2006): lam = 1 is the generative solution (maximum joint likelihood, "
        "classification by Bayes' rule), lam = 0 the discriminative one (maximum conditional "
        "likelihood); in between, the generative term regularizes the discriminative fit, "
        "trading conditional NLL for log p(x). log p(x, y) sums one term per feature, so on "
        "D-dimensional data the generative term dominates unless lam is small (of order 1/D). "
        f"At each task's largest training size (mean and its {INTERVAL_METHOD}), ordered by "
        "lam:",
        "",
        *table(["task", "lam", "model", "n_train", "seeds", *(headers[m] for m in metrics)], body),
        "",
        *figure_markdown(figure_paths, Path(out_dir)),
    ]
    return "\n".join(lines), figure_paths, [tex_path]


def _sweep_figure(stats: pd.DataFrame, metrics: list[str]) -> Figure:
    tasks = sorted(stats["task"].unique())
    colors = dict(zip(tasks, sns.color_palette("colorblind", len(tasks)), strict=True))
    fig, axes = facet_axes(len(metrics), width=4.4, height=3.4)
    for ax, metric in zip(axes, metrics, strict=True):
        for task in tasks:
            g = stats[(stats["task"] == task) & (stats[f"{metric}_count"] > 0)]
            if g.empty:
                continue
            n = int(g["n_train"].iloc[0])
            mean = g[f"{metric}_mean"].to_numpy(dtype=float)
            half = np.nan_to_num(g[f"{metric}_ci95"].to_numpy(dtype=float), nan=0.0)
            low, high = mean - half, mean + half
            if metric == "accuracy":
                low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
            ax.errorbar(
                g["lam"],
                mean,
                yerr=np.vstack([mean - low, high - mean]),
                marker="o",
                markersize=4,
                capsize=2.5,
                linewidth=1.2,
                color=colors[task],
                label=literal_text(f"{task} (n={n})"),
            )
        _lam_axis(ax, stats["lam"].to_numpy(dtype=float))
        ax.set_ylabel(SWEEP_LABELS[metric])
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(4, len(handles)),
            frameon=False,
            fontsize="small",
        )
    fig.suptitle("Hybrid objective: metrics against lam (largest n_train, 95% t-interval)")
    return fig


def _lam_axis(ax, lams: np.ndarray) -> None:
    """A lam x axis: symmetric-log (linear near 0) when the positive values span more than a
    factor of 10 (sweeps dense near 0), else linear; ticks at the swept values."""
    values = np.unique(lams)
    positive = values[values > 0]
    if positive.size >= 2 and positive.max() / positive.min() > 10:
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
        ax.set_xlabel("lam (symmetric log scale; 0: discriminative, 1: generative)")
    else:
        ax.set_xlabel("lam (0: discriminative, 1: generative)")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def _sweep_tex(stats: pd.DataFrame, metrics: list[str]) -> str:
    headers = {
        "accuracy": r"Accuracy $\uparrow$",
        "nll": r"NLL $\downarrow$",
        "log_lik": r"$\log p(x)$ $\uparrow$",
    }
    frame = pd.DataFrame(
        {
            "Task": [latex.task_tex(t) for t in stats["task"]],
            r"$\lambda$": [f"{v:g}" for v in stats["lam"]],
            "Model": [latex.model_tex(m) for m in stats["model"]],
            r"$n_{\mathrm{train}}$": [str(int(n)) for n in stats["n_train"]],
        }
    )
    for m in metrics:
        frame[headers[m]] = [
            _tex_mean_ci(mean, ci, DECIMALS[m])
            for mean, ci in zip(stats[f"{m}_mean"], stats[f"{m}_ci95"], strict=True)
        ]
    caption = (
        r"Hybrid objective: per-example loss $-\lambda \log p(x,y) - (1-\lambda) \log p(y|x)$; "
        r"$\lambda=1$ is the "
        r"generative solution, $\lambda=0$ the discriminative one. Mean $\pm$ half-width of the "
        r"95\% Student-$t$ interval over seeds at each task's largest training size; NLL and "
        r"$\log p(x)$ in nats (gdbench)."
    )
    return latex.dataframe_to_booktabs(
        frame,
        caption,
        latex.label("lambda-sweep"),
        escape=False,
        index=False,
        column_format="lrlr" + "r" * len(metrics),
    )


# --- shared ---------------------------------------------------------------------------------
