"""Timing of a grid's compiled programs, and the grid's measurements (``GridTiming``).

- compile: wall seconds of lowering and compiling the fit and evaluate programs, ahead of time;
- run time (``time_program``): each program is compiled ahead of time, then executed once;
  that execution's outputs are the results kept, and by default its wall seconds (dispatch to
  ``jax.block_until_ready`` on every output) are the measurement. Only a program whose
  result-producing execution took under ``SHORT_S`` seconds, too short to time once against
  the clock and dispatch noise, is executed again, a few times (``steady_state`` with
  ``SHORT_S`` as budget), and its median is reported. With ``steady=True`` (``gdbench run
  --steady-state``) every program not slower than ``SLOW_S`` gets the steady-state repeats
  instead (``REPEAT_BUDGET_S``, ``MAX_REPEATS``): the median of repeats, leaving out the first
  execution's one-time costs (buffer allocation, thread start-up), at the price of running
  each program again;
- cost: ``gdbench.cost.program_cost`` (FLOPs with loops counted by trip count, bytes, peak
  memory);
- achieved FLOP/s of the fit program and its fraction of ``gdbench.env.device_peak()``;
- input: wall seconds of the host→device copy of the pool, the test set and the cell arrays
  (``jax.device_put`` + ``block_until_ready``), apart from compilation and fitting.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gdbench.cost import ProgramCost

#: Steady-state timing policy of ``run_cells(steady=True)`` (see ``steady_state``; read at call
#: time): timed repeats after the result-producing run continue while their total is under
#: REPEAT_BUDGET_S seconds, at least once and at most MAX_REPEATS times; a program whose first
#: run took longer than SLOW_S seconds is not repeated (its first run is the measurement,
#: repeats = 0). The extra time per program is then at most about REPEAT_BUDGET_S + SLOW_S:
#: on the breast_cancer Ng & Jordan grid (gnb + logreg, 2,000 cells) 1.6 of a warm process's
#: 7.9 seconds (2-core CPU), hence not the default.
REPEAT_BUDGET_S = 0.5
MAX_REPEATS = 5
SLOW_S = 2.0
#: Default timing policy of ``run_cells`` (``time_program``): a program whose result-producing
#: run took less than SHORT_S seconds is repeated while the repeats' total is under SHORT_S
#: (at most MAX_REPEATS times), so that a program of a few milliseconds is not measured by one
#: noisy execution; every other program is measured by its result-producing run alone. What
#: timing adds is then at most about 2 x SHORT_S per program.
SHORT_S = 0.01


def time_program(run: Callable[[], Any], first_s: float, steady: bool = False) -> Repeats:
    """The measurement of one compiled program whose result-producing execution took
    ``first_s`` wall seconds (``run`` executes it again; its outputs are dropped).

    Default: ``Repeats(first_s)`` (no repeats: the result-producing run is the measurement),
    unless ``first_s < SHORT_S``; then repeats within a ``SHORT_S`` budget (``steady_state``).
    ``steady``: the steady-state policy (``REPEAT_BUDGET_S``, ``MAX_REPEATS``, ``SLOW_S``)."""
    if steady:
        return steady_state(run, first_s, REPEAT_BUDGET_S, MAX_REPEATS, SLOW_S)
    if first_s >= SHORT_S:
        return Repeats(float(first_s))
    return steady_state(run, first_s, SHORT_S, MAX_REPEATS, SHORT_S)


@dataclasses.dataclass(frozen=True)
class Repeats:
    """Wall seconds of one compiled program: its first, result-producing execution (run after
    ahead-of-time compilation; ``first_s``) and the timed repeats, if any.

    ``median_s``, ``min_s`` and ``max_s`` are over the repeats; with no repeats they are the
    first execution's time (which includes first-run costs: buffer allocation, thread
    start-up)."""

    first_s: float
    times_s: tuple[float, ...] = ()

    @property
    def count(self) -> int:
        """Number of timed repeats (0: the first, result-producing run is the only measurement)."""
        return len(self.times_s)

    @property
    def median_s(self) -> float:
        """Median seconds of one execution over the repeats (the first run if none)."""
        return statistics.median(self.times_s) if self.times_s else self.first_s

    @property
    def min_s(self) -> float:
        """Fastest repeat, seconds (the first run if none)."""
        return min(self.times_s) if self.times_s else self.first_s

    @property
    def max_s(self) -> float:
        """Slowest repeat, seconds (the first run if none)."""
        return max(self.times_s) if self.times_s else self.first_s


def steady_state(
    run: Callable[[], Any],
    first_s: float,
    budget_s: float = REPEAT_BUDGET_S,
    max_repeats: int = MAX_REPEATS,
    slow_s: float = SLOW_S,
) -> Repeats:
    """Time repeats of ``run`` (one execution of a compiled program) after its first run.

    ``first_s`` is the first (result-producing) run's wall seconds. If it exceeds ``slow_s``
    there are no repeats; otherwise ``run`` is timed (``jax.block_until_ready`` on its
    outputs, which are then dropped) at least once, and again while the repeats' total stays
    under ``budget_s``, at most ``max_repeats`` times. Returns the first-run and repeat times
    in seconds.
    """
    if max_repeats < 1:
        raise ValueError(f"max_repeats must be at least 1, got {max_repeats}")
    if budget_s < 0 or slow_s < 0:
        raise ValueError(f"budget_s and slow_s must be >= 0, got {budget_s} and {slow_s}")
    times: list[float] = []
    if first_s > slow_s:
        return Repeats(float(first_s))
    while len(times) < max_repeats and (not times or sum(times) < budget_s):
        t = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - t)
    return Repeats(float(first_s), tuple(times))


@dataclasses.dataclass(frozen=True)
class GridTiming:
    """Measurements of one grid (all its cells together): seconds, FLOPs, bytes.

    ``compile_s``: lowering + compiling the grid's programs ahead of time, or loading them
    from the programs cache: fit and evaluate, plus sampling and sample scoring
    (``quality_compile_s``) and robustness when they run. ``fit_s`` and
    ``predict_s``: seconds of one execution of the fit and evaluate programs
    (``time_program``): by default the wall seconds of the result-producing execution after
    ahead-of-time compilation (``*_repeats`` 0), or the median of a few repeats for a program
    shorter than ``SHORT_S``; with ``run_cells(steady=True)`` the steady-state median of
    ``steady_state``'s repeats. With ``*_first_s`` (the result-producing run), ``*_min_s``,
    ``*_max_s``, ``*_repeats`` and the repeat times ``*_times_s``.
    ``flops``: fit + evaluate FLOPs and ``fit_flops`` the fit program's (``program_cost``,
    loops counted by trip count); ``static_flops``: XLA's loop-once count of both;
    ``bytes_accessed``: fit + evaluate bytes accessed; ``peak_bytes``: the larger of the two
    programs' peak memory. ``device_peak``: ``gdbench.env.DevicePeak.to_json()`` of the device.
    ``measure_s``: seconds spent on repeats, cost analysis and the device peak (not part of any
    time above).
    ``cached_programs`` counts the grid's programs (of 2: fit and evaluate) that the persistent
    compilation cache supplied, in which case ``compile_s`` is mostly the time to load them;
    an evaluation whose metrics are a program of their own (shared by the task's models:
    ``gdbench.engine.build_metrics_program``) counts when both of its programs came from it.
    A model that samples has sample-quality programs as well (``run_quality``).

    Sharded over ``devices`` > 1: seconds are wall seconds of the whole (all-device) program;
    XLA's cost and memory analyses describe the per-device SPMD program, so ``flops``,
    ``fit_flops``, ``static_flops`` and ``bytes_accessed`` are that times ``devices`` scaled by
    real / padded cells (the pad cells' work left out), and ``peak_bytes`` is per device."""

    compile_s: float
    fit_s: float
    predict_s: float
    flops: float
    cached_programs: int = 0
    fit_first_s: float = math.nan
    fit_min_s: float = math.nan
    fit_max_s: float = math.nan
    fit_repeats: int = 0
    fit_times_s: tuple[float, ...] = ()
    predict_first_s: float = math.nan
    predict_min_s: float = math.nan
    predict_max_s: float = math.nan
    predict_repeats: int = 0
    predict_times_s: tuple[float, ...] = ()
    fit_flops: float = math.nan
    static_flops: float = math.nan
    bytes_accessed: float = math.nan
    peak_bytes: float = math.nan
    unknown_loops: int = 0
    cost_note: str = ""
    device_peak: dict | None = None
    measure_s: float = 0.0
    #: The sample-quality program (models that sample; cells of the grid's largest size):
    #: compile seconds (included in ``compile_s``) and one execution's seconds.
    quality_compile_s: float = 0.0
    quality_s: float = 0.0
    quality_cells: int = 0
    #: Wall seconds of the host→device copy of the grid's inputs (pool, test set, cell arrays),
    #: not part of compile or fit time.
    input_s: float = 0.0
    #: Devices the grid's cells were split over (1: unsharded programs), and the cell count
    #: the programs ran (the grid's cells padded to a multiple of ``devices``).
    devices: int = 1
    padded_cells: int = 0
    #: The cells the fit program ran: fewer than the grid's when cells with the same training
    #: subset share one fit (a fit that does not depend on the seed: ``gdbench.engine.
    #: seed_free_fit``, e.g. every seed at the pool's size); ``fit_s`` is then the distinct
    #: fits' time (per cell in the rows: over all the grid's cells). 0: not recorded.
    fitted_cells: int = 0

    @classmethod
    def of_programs(
        cls, fit: Repeats, evaluate: Repeats, fit_cost: ProgramCost, eval_cost: ProgramCost, **rest
    ) -> GridTiming:
        """The grid's measurements from its fit and evaluate programs' times and costs
        (``time_program``, ``gdbench.cost.program_cost``); ``rest``: the other fields."""
        return cls(
            fit_s=fit.median_s,
            predict_s=evaluate.median_s,
            flops=fit_cost.flops + eval_cost.flops,
            fit_first_s=fit.first_s,
            fit_min_s=fit.min_s,
            fit_max_s=fit.max_s,
            fit_repeats=fit.count,
            fit_times_s=fit.times_s,
            predict_first_s=evaluate.first_s,
            predict_min_s=evaluate.min_s,
            predict_max_s=evaluate.max_s,
            predict_repeats=evaluate.count,
            predict_times_s=evaluate.times_s,
            fit_flops=fit_cost.flops,
            static_flops=fit_cost.static_flops + eval_cost.static_flops,
            bytes_accessed=fit_cost.bytes_accessed + eval_cost.bytes_accessed,
            peak_bytes=float(np.fmax(fit_cost.peak_bytes, eval_cost.peak_bytes)),
            unknown_loops=fit_cost.unknown_loops + eval_cost.unknown_loops,
            cost_note="; ".join(filter(None, [fit_cost.note, eval_cost.note])),
            **rest,
        )

    @property
    def flop_rate(self) -> float:
        """Achieved FLOP/s of the fit program: ``fit_flops / fit_s`` (NaN if unknown)."""
        if not (self.fit_s > 0) or not math.isfinite(self.fit_flops):
            return math.nan
        return self.fit_flops / self.fit_s

    @property
    def peak_fraction(self) -> float:
        """``flop_rate`` as a fraction of the device's peak FLOP/s (NaN if either unknown)."""
        peak = (self.device_peak or {}).get("flops", math.nan)
        return self.flop_rate / peak if peak and peak > 0 else math.nan
