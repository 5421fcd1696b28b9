"""One gdbench grid, compiled once and timed warm: what the engine runs, without the store.

``CompiledGrid`` builds the engine's own fit and evaluate programs (``gdbench.engine.
build_programs``) for the given (size, seed) cells, with the cells' weights and PRNG keys made
as ``gdbench.engine.run_cells`` makes them, compiles both ahead of time (compile time measured
apart) and then times executions of the compiled programs with ``jax.block_until_ready``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gdbench import chunks, engine, plan
from gdbench.benchmarks.common import median
from gdbench.models.registry import ModelSpec
from gdbench.tasks.base import Task


@dataclasses.dataclass
class WarmTiming:
    """Seconds of the compiled programs: ``compile_s`` (lower + compile, both programs),
    ``first_s`` (first fit + evaluate execution after compiling), ``fit_s``/``predict_s``
    (every timed repeat, seconds each) and their medians."""

    compile_s: float
    first_s: float
    fit_s: list[float]
    predict_s: list[float]

    @property
    def fit_median_s(self) -> float:
        return median(self.fit_s)

    @property
    def predict_median_s(self) -> float:
        return median(self.predict_s)

    @property
    def warm_s(self) -> float:
        """Median of fit + evaluate over the repeats, seconds."""
        return median([f + p for f, p in zip(self.fit_s, self.predict_s, strict=True)])


def cell_keys(cells: plan.Cells) -> jax.Array:
    """The cells' PRNG keys, as ``gdbench.engine.run_cells`` makes them (seed, then size)."""
    keys = jax.vmap(jax.random.key)(jnp.asarray(cells.seeds, dtype=jnp.uint32))
    return jax.vmap(jax.random.fold_in)(keys, jnp.asarray(cells.sizes, dtype=jnp.uint32))


class CompiledGrid:
    """The fit and evaluate programs of ``spec`` on ``task`` for the cells ``pairs``.

    ``cells`` is the plan's ``Cells`` (weights over the task's pool, size-major in the order of
    ``pairs``); the programs are compiled on construction, and ``compile_s`` is the wall time
    of lowering + compiling the fit program (the evaluate program is compiled on the first
    ``run``, and its compile time is added there).
    """

    def __init__(
        self,
        task: Task,
        spec: ModelSpec,
        pairs: list[tuple[int, int]],
        cell_batch: int = chunks.DEFAULT_CELL_BATCH,
    ):
        self.task, self.spec, self.pairs = task, spec, list(pairs)
        self.cells = plan.make_cells_for(
            task.y_pool, task.num_classes, self.pairs, validation=spec.cls.needs_validation
        )
        template = engine.build_template(task, spec)
        # The chunks run_cells uses: bounded by memory, light evaluations in larger chunks.
        fit_chunk = chunks.chunk_cells(task, cell_batch)
        fit_grid, eval_grid = engine.build_programs(
            task, spec, template, fit_chunk, chunks.eval_chunk(task, template, fit_chunk)
        )
        self._eval_grid = eval_grid
        self.fit_args = (
            cell_keys(self.cells),
            jnp.asarray(self.cells.w_train),
            jnp.asarray(self.cells.w_val),
            jnp.asarray(task.x_pool),
            jnp.asarray(task.y_pool),
        )
        self.test = (jnp.asarray(task.x_test), jnp.asarray(task.y_test))
        t = time.perf_counter()
        self.fit_compiled = jax.jit(fit_grid).lower(*self.fit_args).compile()
        self.compile_s = time.perf_counter() - t
        self.eval_compiled = None

    def with_pairs(self, pairs: list[tuple[int, int]]) -> CompiledGrid:
        """The same compiled programs on other cells of the same count (no recompilation:
        a program depends on the number of cells, not on their sizes or seeds)."""
        if len(pairs) != len(self.pairs):
            raise ValueError(
                f"need {len(self.pairs)} cells to reuse the programs, got {len(pairs)}"
            )
        other = copy.copy(self)
        other.pairs = list(pairs)
        other.cells = plan.make_cells_for(
            self.task.y_pool,
            self.task.num_classes,
            other.pairs,
            validation=self.spec.cls.needs_validation,
        )
        other.fit_args = (
            cell_keys(other.cells),
            jnp.asarray(other.cells.w_train),
            jnp.asarray(other.cells.w_val),
            *self.fit_args[3:],
        )
        return other

    def fit(self) -> Any:
        """Run the compiled fit program once; returns the fitted states (ready)."""
        return jax.block_until_ready(self.fit_compiled(*self.fit_args))

    def evaluate(self, fitted) -> dict[str, np.ndarray]:
        """Run the evaluate program on ``fitted``; returns the metrics per cell (NumPy)."""
        if self.eval_compiled is None:
            t = time.perf_counter()
            self.eval_compiled = jax.jit(self._eval_grid).lower(fitted, *self.test).compile()
            self.compile_s += time.perf_counter() - t
        return jax.block_until_ready(self.eval_compiled(fitted, *self.test))

    def time(self, repeats: int) -> tuple[WarmTiming, dict[str, np.ndarray]]:
        """First run (which compiles the evaluate program), then ``repeats`` timed runs of fit
        and evaluate. Returns the timing and the metrics of the last run (NumPy arrays)."""
        t = time.perf_counter()
        fitted = self.fit()
        first = time.perf_counter() - t
        compiled_before = self.compile_s
        t = time.perf_counter()
        metrics = self.evaluate(fitted)  # compiles the evaluate program (timed apart)
        first += time.perf_counter() - t - (self.compile_s - compiled_before)
        fit_s, predict_s, last = self.repeat(repeats)
        metrics = {k: np.asarray(v) for k, v in (last or metrics).items()}
        return WarmTiming(self.compile_s, first, fit_s, predict_s), metrics

    def repeat(self, count: int) -> tuple[list[float], list[float], dict | None]:
        """``count`` timed runs of fit then evaluate, after a first run (``time``) compiled the
        evaluate program. Returns their fit and evaluate seconds and the last run's metrics
        (None when ``count`` is 0)."""
        fit_s, predict_s, metrics = [], [], None
        for _ in range(count):
            t0 = time.perf_counter()
            fitted = self.fit()
            t1 = time.perf_counter()
            metrics = self.evaluate(fitted)
            t2 = time.perf_counter()
            fit_s.append(t1 - t0)
            predict_s.append(t2 - t1)
        return fit_s, predict_s, metrics
