"""The sample-quality programs of a grid (``run_quality``): the fitted cells of one training
size draw samples (the model's sampling program), and one scoring program per task computes
``gdbench.quality``'s metrics of them (Fréchet distance, classifier score, precision, recall,
CAS) against the task's data."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from gdbench import compile_cache, plan, sharding
from gdbench import quality as sample_quality
from gdbench.compile_cache import program_static
from gdbench.models.registry import ModelSpec
from gdbench.tasks.base import Task

#: Cells per batch of the sample-quality program (its distance matrices are [N_test, N_test]).
QUALITY_CELL_BATCH = 8
#: Test examples (the first ones; test sets are stored shuffled) that the feature-space metrics
#: compare samples against: precision and recall cost [N, N] distances per cell.
QUALITY_TEST_MAX = 1000
#: Sample-quality columns of the rows (``gdbench.quality``), NaN where not computed.
QUALITY_COLUMNS = ("fd", "classifier_score", "precision", "recall", "cas", "cas_real")


def build_sampling_program(task: Task, spec: ModelSpec, template):
    """The (unjitted) sampling function of the sample-quality step, mapping over fitted cells.

    Per cell: one sample per reference example (the first ``QUALITY_TEST_MAX`` test examples)
    with its label, and one per example of the training pool with its label (the cell's
    training part weighs them, so the synthetic training set has the cell's class counts);
    drawn in the model's standardized units and returned in the task's original units, where
    the feature classifier works.
    """
    graphdef, _ = nnx.split(template)

    def draw(model, key, y):
        keys = jax.random.split(key, y.shape[0])
        return jax.vmap(lambda k, c: model.sample(k, c, 1)[0])(keys, y)

    def sample_cell(state, shift, scale, key, y_ref, y_pool):
        model = nnx.merge(graphdef, state)
        k_ref, k_pool = jax.random.split(jax.random.fold_in(key, 0x0CA5))
        x_gen = draw(model, k_ref, y_ref) * scale + shift
        x_syn = draw(model, k_pool, y_pool) * scale + shift
        return x_gen, x_syn

    def sample_grid(fitted, y_ref, y_pool):
        fn = lambda c: sample_cell(*c, y_ref, y_pool)  # noqa: E731
        return sharding.map_cells(fn, tuple(fitted[:4]), QUALITY_CELL_BATCH)

    return sample_grid


def _score_grid(x_gen, x_syn, w_train, x_pool, y_pool, x_test, y_test, feat, num_classes):
    """Sample-quality columns of every cell from its samples (``build_sampling_program``):
    ``gdbench.quality.sample_quality`` against the reference examples (Fréchet distance,
    classifier score, precision, recall) and CAS with its real-data reference
    (``gdbench.quality.cas``: the same fixed logistic regression trained on the samples and on
    the cell's training part, the part the model was fitted on, both scored on the test set).
    The same for every model of a task, so one compiled program serves them all."""
    x_ref, y_ref = x_test[:QUALITY_TEST_MAX], y_test[:QUALITY_TEST_MAX]

    def score_cell(c):
        gen, syn, w = c
        out = sample_quality.sample_quality(feat, gen, y_ref, x_ref)
        cas, real = sample_quality.cas(
            syn, y_pool, w, x_pool, y_pool, w, x_test, y_test, num_classes
        )
        return {**{k: out[k] for k in QUALITY_COLUMNS[:4]}, "cas": cas, "cas_real": real}

    return sharding.map_cells(score_cell, (x_gen, x_syn, w_train), QUALITY_CELL_BATCH)


#: Compiled scoring programs by ``compile_cache.program_key``: one per task and cell count.
_SCORE_PROGRAMS: dict[str, Any] = {}


def run_quality(
    task: Task,
    spec: ModelSpec,
    template,
    cells: plan.Cells,
    fitted,
    mesh: jax.sharding.Mesh | None = None,
    size: int | None = None,
):
    """Sample quality of the cells of training size ``size`` (default: the grid's largest):
    ``({column: [cells]}, compile seconds, run seconds, cells scored)``; NaN for the other
    cells. Two programs: the model's sampling program, and the scoring program, compiled once
    per task, cell count and mesh.
    With a ``mesh`` both are split over its cells axis as the fit is (``run_cells``)."""
    idx = np.flatnonzero(cells.sizes == (cells.sizes.max() if size is None else size))
    padded = idx[sharding.pad_index(len(idx), mesh)]
    net = sample_quality.feature_net(task)
    cell_put = None if mesh is None else sharding.cell_sharding(mesh)
    shared_put = None if mesh is None else sharding.replicated(mesh)
    sub = tuple(fitted[:4])
    if mesh is None:
        sub = jax.tree.map(lambda a: a[idx], sub)
    else:  # gathered on the host, then split over the devices again
        sub = sharding.put(jax.tree.map(lambda a: _host_take(a, padded), sub), cell_put)
    y_ref, y_pool = sharding.put((task.y_test[:QUALITY_TEST_MAX], task.y_pool), shared_put)
    sample_grid = build_sampling_program(task, spec, template)
    if mesh is not None:
        sample_grid = sharding.shard_cells(sample_grid, mesh, cell_args=1, shared_args=2)
    t0 = time.perf_counter()
    static = program_static(task, spec, mesh)
    sampler, _ = compile_cache.compile_program(sample_grid, (sub, y_ref, y_pool), "sample", static)
    t1 = time.perf_counter()
    x_gen, x_syn = jax.block_until_ready(sampler(sub, y_ref, y_pool))
    t2 = time.perf_counter()
    shared = sharding.put((task.x_pool, task.x_test, task.y_test, net.params), shared_put)
    args = (
        x_gen,
        x_syn,
        sharding.put(cells.w_train[padded], cell_put),
        shared[0],
        y_pool,
        *shared[1:],
    )
    static = {"num_classes": task.num_classes, "mesh": None if mesh is None else repr(mesh)}
    key = compile_cache.program_key("score", static, args)
    if key not in _SCORE_PROGRAMS:
        score = functools.partial(_score_grid, num_classes=task.num_classes)
        if mesh is not None:
            score = sharding.shard_cells(score, mesh, cell_args=3, shared_args=5)
        _SCORE_PROGRAMS[key], _ = compile_cache.compile_program(score, args, "score", static)
    t3 = time.perf_counter()
    out = jax.block_until_ready(_SCORE_PROGRAMS[key](*args))
    t4 = time.perf_counter()
    columns = {k: np.full(cells.count, np.nan) for k in QUALITY_COLUMNS}
    for k in QUALITY_COLUMNS:
        columns[k][idx] = np.asarray(out[k], dtype=np.float64)[: len(idx)]
    return columns, (t1 - t0) + (t3 - t2), (t2 - t1) + (t4 - t3), len(idx)


def _host_take(a: jax.Array, index: np.ndarray) -> Any:
    """Rows ``index`` of a (sharded) device array, on the host; PRNG key arrays stay keys."""
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(np.asarray(jax.random.key_data(a))[index])
    return np.asarray(a)[index]
