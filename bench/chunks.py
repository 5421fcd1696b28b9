"""How many cells a grid's programs map at once: ``gdbench.sharding.map_cells`` runs a grid's
cells through ``jax.vmap`` in equal chunks, each chunk's size bounded by memory (each cell holds
its own standardized copy of the training pool)."""

from __future__ import annotations

import dataclasses
import os

import jax

from gdbench.models.base import ClosedForm, Newton
from gdbench.tasks.base import Task

#: Cells per vmapped chunk; larger grids are mapped chunk by chunk inside the same program.
#: Smaller chunks keep a chunk's per-cell copies of the data in cache: on a 2-core CPU, 64 fit
#: 1,000 gnb cells 2.4x faster than 256 (20 vs 49 ms on digits_2v3), 1,000 logreg cells 1.2x
#: faster, 256 MLP cells 1.5x faster, with identical results (bench/benchmarks measures it).
DEFAULT_CELL_BATCH = 64
#: Bytes of working memory one chunk of cells may take, by default (``GDBENCH_CELL_MEMORY``
#: overrides, in bytes): each cell holds its own standardized copy of the training pool and
#: its temporaries, about ``CELL_COPIES`` times the pool's float32 bytes. On an accelerator
#: that reports its memory, a quarter of it; else 2 GiB. Small tasks never reach it (a
#: 1,000 x 64 pool is 0.8 MB per cell); MNIST's 60,000 x 784 pool is 0.56 GB per cell, so a
#: CPU maps 3 of its cells at a time and an 80 GB GPU 35 (see ``chunk_cells``).
CELL_MEMORY_DEFAULT = 2 * 2**30
CELL_COPIES = 3


#: Most cells per evaluation chunk of models whose evaluation is light (``eval_chunk``).
LIGHT_EVAL_BATCH = 1024


def eval_chunk(task: Task, template, fit_chunk: int) -> int:
    """Cells per vmapped chunk of the evaluation program. Models fitted in closed form or by
    Newton (naive Bayes, LDA/QDA, linear models) evaluate a few matrix products per cell, and
    evaluating up to ``LIGHT_EVAL_BATCH`` cells at once (within the memory budget of
    ``chunk_cells``, on the test set) was 2.4x faster than chunks of 64 (1,000 gnb cells on
    digits_2v3, 2-core CPU); the others (importance-sampled VAE bounds, deep nets) keep the
    fit's chunk."""
    if not all(isinstance(stage, ClosedForm | Newton) for stage in template.fit_plan()):
        return fit_chunk
    rows = dataclasses.replace(task, x_pool=task.x_test)  # the budget, on the test set
    return max(fit_chunk, chunk_cells(rows, LIGHT_EVAL_BATCH))


def metrics_chunk(task: Task) -> int:
    """Cells per chunk of a grid's metrics program (``gdbench.engine.build_metrics_program``),
    whatever the model: ``LIGHT_EVAL_BATCH`` within the memory budget, on the test set."""
    return chunk_cells(dataclasses.replace(task, x_pool=task.x_test), LIGHT_EVAL_BATCH)


#: Most bytes of test-set predictions (every cell's logits) a grid keeps to compute its
#: metrics in a program of their own (``gdbench.engine.predictions_fit``); above it (e.g.
#: MNIST's 10,000 test images x 10 classes for 1,000 cells: 400 MB) each chunk computes its
#: metrics itself, inside the evaluate program.
PREDICTIONS_BYTES = 256 * 2**20


def chunk_cells(task: Task, requested: int = DEFAULT_CELL_BATCH) -> int:
    """Cells per vmapped chunk for ``task``: ``requested``, fewer where the chunk's per-cell
    copies of the training pool would exceed the memory budget (at least 1)."""
    budget = os.environ.get("GDBENCH_CELL_MEMORY")
    if budget:
        limit = float(budget)
    else:
        stats = jax.local_devices()[0].memory_stats() or {}
        total = stats.get("bytes_limit")
        limit = total / 4 if total else CELL_MEMORY_DEFAULT
    per_cell = CELL_COPIES * 4 * task.pool_size * task.dim
    return int(max(1, min(requested, limit // per_cell)))
