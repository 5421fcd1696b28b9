"""Benchmark 3: how the time of one gdbench grid grows with its number of cells.

For a fixed model, the warm time (fit + evaluate, median of repeats; compile apart) of one
grid of k cells, k = 1, 2, 4, ..., 64:

- seeds axis: one size, seeds 0..k-1;
- sizes axis: seed 0, k distinct sizes spread evenly over [smallest, pool].

Both axes give programs of the same shapes for the same k, so each k compiles once. Models:
``logreg?C=10000`` on ``breast_cancer`` (Newton, size 100 on the seeds axis) and the small MLP
of benchmark 2 on ``digits`` with 100 steps instead of 500 (to keep the 64-cell grid short;
size 500 on the seeds axis). Reported: t(k), time per cell t(k)/k, and t(k)/t(1); growth is
sub-linear while t(k)/t(1) < k, and 64 t(1)/t(64) says how much faster one 64-cell grid is than
64 one-cell grids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gdbench.benchmarks.common import Line, fmt_s, load_average, median

COUNTS, QUICK_COUNTS = (1, 2, 4, 8, 16, 32, 64), (1, 4, 16)
MODELS = (
    # (label, task, model spec, size on the seeds axis, smallest size on the sizes axis)
    ("logreg C=1e4", "breast_cancer", "logreg?C=10000", 100, 6),
    ("MLP 64-64 (100 steps)", "digits", "mlp?hidden=64-64&steps=100&batch_size=128", 500, 20),
)


def spread_sizes(smallest: int, pool: int, k: int) -> list[int]:
    """``k`` distinct sizes spread evenly over [smallest, pool] (needs k <= pool - smallest + 1)."""
    if k < 1 or k > pool - smallest + 1:
        raise ValueError(f"cannot pick {k} distinct sizes in [{smallest}, {pool}]")
    if k == 1:
        return [pool]
    return [int(v) for v in np.round(np.linspace(smallest, pool, k)).astype(int)]


def run(quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Run the benchmark; returns ``{"lines": [...], "detail": markdown, "raw": {...}}``."""
    from gdbench import models as model_registry
    from gdbench import tasks
    from gdbench.benchmarks.grid import CompiledGrid

    counts = QUICK_COUNTS if quick else COUNTS
    raw: dict[str, Any] = {"counts": counts, "load_average_start": load_average()}
    lines: list[Line] = []
    detail = [
        "| model | axis | " + " | ".join(f"k={k}" for k in counts) + " |",
        "|---|---|" + "---|" * len(counts),
    ]
    for label, task_name, spec_text, size, smallest in MODELS:
        task = tasks.load(task_name)
        spec = model_registry.get(spec_text)
        times: dict[str, list[float]] = {"seeds": [], "sizes": []}
        compile_s = []
        for k in counts:
            grid = CompiledGrid(task, spec, [(size, s) for s in range(k)])
            by_seed, _ = grid.time(repeats)
            sizes = spread_sizes(smallest, task.pool_size, k)
            by_size, _ = grid.with_pairs([(n, 0) for n in sizes]).time(repeats)
            times["seeds"].append(by_seed.warm_s)
            times["sizes"].append(by_size.warm_s)
            compile_s.append(by_seed.compile_s)
        raw[label] = {
            "task": task_name,
            "spec": spec.spec,
            "seeds_axis_size": size,
            "times_s": times,
            "compile_s": compile_s,
        }
        for axis, ts in times.items():
            t1, tk, k = ts[0], ts[-1], counts[-1]
            cells = [
                f"{fmt_s(t)} ({fmt_s(t / c)}/cell, {t / t1:.1f}x)"
                for c, t in zip(counts, ts, strict=True)
            ]
            detail.append(f"| {label} | {axis} | " + " | ".join(cells) + " |")
            lines.append(
                Line(
                    "3 scaling",
                    f"{label}, {axis} axis: {k} cells in one grid vs {k} grids",
                    fmt_s(tk),
                    f"{k} x {fmt_s(t1)}",
                    k * t1 / tk,
                    None,
                    f"t({k})/t(1) = {tk / t1:.1f}; per cell {fmt_s(tk / k)} vs {fmt_s(t1)}; "
                    f"compile {fmt_s(median(compile_s))} per k",
                )
            )
    raw["load_average_end"] = load_average()
    return {"lines": lines, "detail": "\n".join(detail), "raw": raw}
