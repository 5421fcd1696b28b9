"""Shared pieces of the benchmarks: machine description, timing, result lines, Markdown.

Nothing here imports JAX at module level (the scikit-learn baseline script imports this).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

#: Libraries whose versions the benchmark output records.
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn", "torch", "threadpoolctl")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_count() -> int:
    """CPU cores this process may run on (the affinity mask where available)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes), or [] if unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def versions() -> dict[str, str]:
    """Installed versions of ``LIBRARIES`` ("not installed" for missing ones)."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on: CPU model, cores, memory, Python, library versions,
    JAX device, load average at the time of the call."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": core_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "load_average": load_average(),
    }
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import jax

        devices = jax.devices()
        info["device"] = f"{devices[0].platform} {devices[0].device_kind} x{len(devices)}"
    except Exception as error:  # noqa: BLE001 - the description must not fail
        info["device"] = f"unknown ({type(error).__name__})"
    return info


def median(values) -> float:
    """Median of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(finite) if finite else math.nan


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call of ``fn``."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def interleaved(rounds: int, measures: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Take every measurement once per round, in turn, for ``rounds`` rounds: round ``r`` calls
    ``measures[name](r)`` for each name in order. Returns each name's values, one per round.

    On a shared machine whose load drifts, the two sides of a ratio measured this way see
    about the same load (``paired_ratio``); measured one side after the other, a drift
    between them would land in the ratio."""
    out: dict[str, list[float]] = {name: [] for name in measures}
    for r in range(rounds):
        for name, measure in measures.items():
            out[name].append(float(measure(r)))
    return out


def paired_ratio(baseline: list[float], ours: list[float]) -> float:
    """The median over rounds of ``baseline[r] / ours[r]`` (NaN if no round gives one)."""
    return median(ratio(b, o) for b, o in zip(baseline, ours, strict=True))


def ratio(baseline_s: float, ours_s: float) -> float:
    """``baseline_s / ours_s`` (how many times faster gdbench is); NaN if undefined."""
    if not (ours_s > 0) or not math.isfinite(baseline_s) or not math.isfinite(ours_s):
        return math.nan
    return baseline_s / ours_s


@dataclasses.dataclass
class Line:
    """One line of the results table.

    ``ours`` and ``baseline`` are display strings (times with units); ``ratio`` is
    baseline / gdbench (or the measured quantity itself when ``target`` is not a speed-up);
    ``target`` the minimum it should reach (None: informational, no verdict).
    """

    section: str
    metric: str
    ours: str
    baseline: str
    ratio: float
    target: float | None = None
    note: str = ""
    unit: str = "x"

    @property
    def verdict(self) -> str:
        """PASS (ratio >= target), MISS, or "" without a target (or a NaN ratio: "n/a")."""
        if self.target is None:
            return ""
        if not math.isfinite(self.ratio):
            return "n/a"
        return "PASS" if self.ratio >= self.target else "MISS"

    def to_json(self) -> dict[str, Any]:
        """The line as a JSON-ready dict, its verdict included."""
        return {**dataclasses.asdict(self), "verdict": self.verdict}


def fmt_s(seconds: float) -> str:
    """Seconds with a unit chosen by size: ``1.23 s``, ``45.6 ms``, ``789 us``."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_percent(fraction: float, space: str = "", digits: int = 0) -> str:
    """A fraction as a percentage with ``digits`` decimals, more where fewer would round a part
    to all or nothing: 287 identical cells of 288 are ``99.7%``, not ``100%`` (and one of 288
    ``0.3%``, not ``0%``). ``space`` goes between the number and the sign."""
    percent = 100 * fraction

    def rounds_away(d: int) -> bool:
        shown = round(percent, d)
        return (fraction < 1 and shown >= 100) or (fraction > 0 and shown <= 0)

    while digits < 4 and rounds_away(digits):
        digits += 1
    return f"{percent:.{digits}f}{space}%"


def fmt_ratio(value: float, unit: str = "x") -> str:
    """A ratio as ``12.3x`` (or a fraction as ``45%`` when ``unit`` is "%": ``fmt_percent``)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "%":
        return fmt_percent(value)
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def markdown_table(lines: list[Line]) -> str:
    """The lines as one Markdown table (section, metric, gdbench, baseline, ratio, target,
    verdict, note)."""
    out = [
        "| benchmark | measurement | gdbench | baseline | ratio | target | result | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for line in lines:
        target = "" if line.target is None else "≥ " + fmt_ratio(line.target, line.unit)
        note = line.note.replace("|", "\\|")
        out.append(
            f"| {line.section} | {line.metric} | {line.ours} | {line.baseline} | "
            f"{fmt_ratio(line.ratio, line.unit)} | {target} | {line.verdict} | {note} |"
        )
    return "\n".join(out)
