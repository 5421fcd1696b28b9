"""One (task, model) grid: a jit-compiled fit program and evaluate program over every cell.

``run_grid`` builds both programs once, compiles them ahead of time (timed apart), runs them on
all (size, seed) cells at once with ``jax.vmap`` (in equal chunks of at most ``cell_batch``
cells through ``jax.lax.map`` when the grid is large, still one program with one copy of the
cell function: ``gdbench.sharding.map_cells``), and returns one result row per cell.

Measurement (``GridTiming``):

- compile: wall seconds of lowering and compiling both programs, ahead of time;
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
- cost: ``program_cost`` reads XLA's cost analysis (FLOPs, bytes accessed) of each compiled
  program with every while-loop body counted as often as the loop runs (XLA's own
  ``cost_analysis()`` counts a loop body once, which undercounts a ``lax.scan`` of 400 steps
  400-fold), and XLA's memory analysis (peak bytes);
- achieved FLOP/s of the fit program and its fraction of ``gdbench.env.device_peak()``;
- input: wall seconds of the host→device copy of the pool, the test set and the cell arrays
  (``jax.device_put`` + ``block_until_ready``), apart from compilation and fitting.

On several local devices the cells are split over a device mesh (``gdbench.sharding``): every
program is a ``shard_map`` over the mesh's ``cells`` axis, each device mapping over its block of
cells; on one device the programs are exactly the unsharded ones.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gdbench import compile_cache, env, lowering, plan, sharding
from gdbench import quality as sample_quality
from gdbench import robustness as robustness_step
from gdbench.fit import NEWTON_CONVERGED, NEWTON_SCOPE, NEWTON_STEPS, run_plan
from gdbench.metrics import classification_metrics, example_spread
from gdbench.models.base import ClosedForm, GenerativeModel, Newton
from gdbench.models.registry import ModelSpec
from gdbench.results.schema import pack_correct
from gdbench.tasks.base import Task

lowering.use_unrolled_threefry()

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
class ProgramCost:
    """XLA's static cost of one compiled program.

    ``flops`` and ``bytes_accessed``: XLA's cost analysis (HloCostAnalysis) of the optimized
    program, every while-loop body counted as often as its known trip count (NaN when that
    cannot be computed). ``static_flops``: XLA's ``cost_analysis()`` as reported, loop bodies
    counted once. ``unknown_loops``: while loops without a known trip count, counted once
    each (``flops`` is then a lower bound). ``peak_bytes``: XLA's memory analysis, the peak
    of live buffers (arguments, outputs and temporaries), bytes; NaN if not reported.
    ``note``: why a value is NaN, else "".
    """

    flops: float
    bytes_accessed: float
    peak_bytes: float
    static_flops: float
    unknown_loops: int = 0
    note: str = ""


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
    ``cached_programs`` counts the grid's programs (of 2) that the persistent compilation cache
    supplied, in which case ``compile_s`` is mostly the time to load them. A model that samples
    has sample-quality programs as well (``run_quality``).

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


def _standardizer(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and scale of the weighted sample; zero-variance features get scale 1."""
    total = jnp.maximum(w.sum(), 1.0)
    mean = (w[:, None] * x).sum(0) / total
    var = (w[:, None] * (x - mean) ** 2).sum(0) / total
    scale = jnp.where(var > 1e-12, jnp.sqrt(var), 1.0)
    return mean, scale


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def reports_density(model, task: Task) -> bool:
    """Whether the model's log p(x) is a likelihood of this task's data (support matches)."""
    return isinstance(model, GenerativeModel) and model.input_support == task.feature_kind


def draws_samples(model, task: Task) -> bool:
    """Whether the model makes data of this task: a generative model whose density is over the
    task's kind of features, or a hybrid with a sampler of its own (``gan``, ``jem``)."""
    if isinstance(model, GenerativeModel):
        return reports_density(model, task)
    return callable(getattr(type(model), "sample", None))


#: Samples drawn per class from every fitted generative model (stored for the report).
SAMPLES_PER_CLASS = 10


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Rows of a grid, its timing, and samples of its generative model (or None).

    ``samples`` maps ``n_train``, ``seed`` (the cell sampled: the largest size, first seed) and
    ``x`` (``[C, SAMPLES_PER_CLASS, D]`` in the task's original units).
    """

    rows: list[dict[str, Any]]
    timing: GridTiming
    samples: dict[str, Any] | None
    #: Training traces of the grid's largest size (see ``grid_traces``), or None.
    traces: dict[str, Any] | None = None


def build_template(task: Task, spec: ModelSpec):
    """A model instance for this task, for its graph structure and declared properties: traced
    only (``nnx.eval_shape``: its variables hold shapes, not values), since building it eagerly
    compiled every initializer op by op (1 to 3 s for an MLP or a convolutional VAE on a CPU)."""
    return nnx.eval_shape(
        lambda: spec.build(
            task.dim, task.num_classes, nnx.Rngs(0), task.feature_kind, task.image_shape
        )
    )


def build_programs(
    task: Task,
    spec: ModelSpec,
    template,
    cell_batch: int = DEFAULT_CELL_BATCH,
    eval_batch: int | None = None,
):
    """The (unjitted) fit and evaluate functions of a grid, each mapping over cells, in equal
    chunks of at most ``cell_batch`` cells (the evaluation: ``eval_batch``, default the same;
    ``gdbench.sharding.map_cells``).

    ``template`` is ``build_template(task, spec)``: its graph and declared properties."""
    eval_batch = eval_batch or cell_batch
    dim, num_classes = task.dim, task.num_classes
    graphdef, _ = nnx.split(template)
    standardize = task.preprocess == "standardize"
    density = reports_density(template, task)
    sampler = draws_samples(template, task)

    def fit_cell(key, w_train, w_val, x_pool, y_pool):
        if standardize:
            shift, scale = _standardizer(x_pool, w_train + w_val)
        else:
            shift, scale = jnp.zeros(dim), jnp.ones(dim)
        z = (x_pool - shift) / scale
        k_init, k_fit = jax.random.split(key)
        model = spec.build(dim, num_classes, nnx.Rngs(k_init), task.feature_kind, task.image_shape)
        affine = (x_pool, shift, scale)  # z as the shared pool: see bench.fit.newton
        traces = run_plan(model, z, y_pool, w_train, w_val, k_fit, affine) or {}
        return nnx.state(model), shift, scale, key, traces

    def eval_cell(state, shift, scale, key, x_test, y_test):
        model = nnx.merge(graphdef, state)
        z = (x_test - shift) / scale
        nan = jnp.asarray(jnp.nan)
        elbo_joint = None
        if hasattr(model, "class_log_bounds"):
            # One pass of importance samples gives both bounds (IWAE and ELBO).
            iwae, elbo = model.class_log_bounds(z)
            logits = iwae + model.log_prior()[None, :]
            elbo_joint = elbo + model.log_prior()[None, :]
        else:
            logits = model.predict_logits(z)
        out = {**classification_metrics(logits, y_test), **example_spread(logits, y_test)}
        # Log-likelihoods in original units: change of variables through the standardization.
        # For generative models log p(x) = logsumexp of the log joint (protocol).
        jacobian = jnp.log(scale).sum()
        per_example = jax.nn.logsumexp(logits, axis=-1)
        out["log_lik"] = per_example.mean() - jacobian if density else nan
        out["log_lik_sd"] = jnp.std(per_example, ddof=1) if density else nan
        out["elbo"] = nan
        if density and elbo_joint is not None:
            out["elbo"] = jax.nn.logsumexp(elbo_joint, axis=-1).mean() - jacobian
        if sampler and task.image_shape is not None:  # shown for image tasks
            k = jax.random.fold_in(key, 0x5A3)
            draw = lambda c: model.sample(jax.random.fold_in(k, c), c, SAMPLES_PER_CLASS)  # noqa: E731
            out["samples"] = jax.vmap(draw)(jnp.arange(num_classes)) * scale + shift
        out["params_finite"] = _all_finite(state)
        return out

    def fit_grid(keys, w_train, w_val, x_pool, y_pool):
        cells = (keys, w_train, w_val)
        fn = lambda c: fit_cell(*c, x_pool, y_pool)  # noqa: E731
        return sharding.map_cells(fn, cells, cell_batch)

    def eval_grid(fitted, x_test, y_test):
        fn = lambda c: eval_cell(*c, x_test, y_test)  # noqa: E731
        cells = fitted[:4]  # the fit program's traces are not needed here
        return sharding.map_cells(fn, cells, eval_batch)

    return fit_grid, eval_grid


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


_COMPUTATION = re.compile(r"^(ENTRY\s+)?%(\S+)\s+\(.*\{\s*$")
_WHILE_BODY = re.compile(r"\swhile\(.*?\bbody=%([\w.\-]+)")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
#: A while loop of the ``i``-th fit stage's Newton solve (``gdbench.fit.NEWTON_SCOPE``): its
#: trip count is data-dependent (a convergence stop); the op name ends with the loop's own
#: "/while" inside the stage's scope (a loop nested deeper would show more components).
_NEWTON_LOOP = re.compile(r'op_name="[^"]*\b' + re.escape(NEWTON_SCOPE) + r'(\d+)\)?/while"')
#: Attributes of an HLO instruction that name the computations it calls.
_CALLED = re.compile(
    r"\b(?:calls|to_apply|body|condition|branch_computations|true_computation"
    r"|false_computation|called_computations)=(\{[^}]*\}|%[\w.\-]+)"
)
_NAME = re.compile(r"%([\w.\-]+)")


def _called(line: str) -> list[str]:
    """Names of the computations an HLO instruction line calls."""
    return [name for group in _CALLED.findall(line) for name in _NAME.findall(group)]


def _static_cost(compiled) -> dict:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return {}
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _peak_bytes(compiled) -> float:
    """Peak bytes of live buffers from XLA's memory analysis; NaN if the backend has none.

    ``peak_memory_in_bytes`` (XLA's heap simulation over the buffer assignment) when reported,
    else argument + output + temporary - aliased bytes (all buffers live at once)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports memory
        return math.nan
    if stats is None:
        return math.nan
    peak = getattr(stats, "peak_memory_in_bytes", 0) or 0
    if peak > 0:
        return float(peak)
    parts = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    total = sum(getattr(stats, p, 0) or 0 for p in parts) - (stats.alias_size_in_bytes or 0)
    return float(total) if total > 0 else math.nan


def _module_text(compiled, metadata: bool = False) -> tuple[str, Any]:
    """Optimized HLO text of the program (constants in full; op metadata if ``metadata``) and
    its client."""
    from jaxlib import _hlo

    options = _hlo.HloPrintOptions()
    options.print_metadata = metadata
    options.print_large_constants = True
    executable = compiled.runtime_executable()
    return executable.hlo_modules()[0].to_string(options), executable.client


def _loop_aware_cost(compiled, newton_steps: dict[int, float] | None = None):
    """(FLOPs, bytes accessed, loops without known trip count) of a compiled program.

    XLA's HloCostAnalysis visits a while loop's body once. Here the optimized module is split
    into its computations; the cost of a loop body (itself a module with the body as entry)
    is added (trip count - 1) more times, recursively for nested loops. The trip count is the
    ``known_trip_count`` XLA's loop analysis annotates (every ``lax.scan`` has one), or for
    the convergence loop of fit stage ``i``'s Newton solve ``newton_steps[i]``: the steps its
    cells took, on average (``newton_step_counts``). Other loops count once (a lower bound).
    """
    from jax._src.lib import _jax
    from jaxlib import _hlo

    text, client = _module_text(compiled)
    lines = text.splitlines()
    newton_steps = newton_steps or {}
    newton_bodies: dict[str, int] = {}  # loop body -> fit stage, from the ops' metadata
    unknown_trip = any(" while(" in line and not _TRIP_COUNT.search(line) for line in lines)
    if newton_steps and unknown_trip:  # else every loop has its count: no metadata pass
        for line in _module_text(compiled, metadata=True)[0].splitlines():
            body, stage = _WHILE_BODY.search(line), _NEWTON_LOOP.search(line)
            if body and stage and int(stage.group(1)) in newton_steps:
                newton_bodies[body.group(1)] = int(stage.group(1))
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in lines[1:]:
        if current is None:
            m = _COMPUTATION.match(line)
            if m:
                current = m.group(2)
                comps[current] = [line]
                entry = current if m.group(1) else entry
            continue
        comps[current].append(line)
        if line == "}":
            current = None
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO module text")
    calls = {
        name: {r for line in body[1:] for r in _called(line) if r in comps}
        for name, body in comps.items()
    }
    head = lines[0].split(",")[0]  # "HloModule <name>": layouts and schedule belong to entry

    def reachable(root: str) -> list[str]:
        seen, stack = [], [root]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.append(name)
                stack.extend(sorted(calls[name] - {name}))
        return seen

    loop_once: dict[str, tuple[float, float]] = {}

    def cost_once(root: str) -> tuple[float, float]:
        """XLA's cost of computation ``root`` as a module's entry (its loops counted once)."""
        if root not in loop_once:
            parts = [head, ""]
            for name in reversed(reachable(root)):
                body = comps[name]
                first = re.sub(r"^ENTRY\s+", "", body[0])
                parts += [("ENTRY " if name == root else "") + first, *body[1:], ""]
            module = _hlo.hlo_module_from_text("\n".join(parts))
            cost = _jax.hlo_module_cost_analysis(client, module)
            loop_once[root] = (
                float(cost.get("flops", 0.0)),
                float(cost.get("bytes accessed", 0.0)),
            )
        return loop_once[root]

    extra_memo: dict[str, tuple[float, float, int]] = {}

    def extra(name: str) -> tuple[float, float, int]:
        """Cost of ``name`` with loops run their trip counts, minus its loop-once cost."""
        if name in extra_memo:
            return extra_memo[name]
        flops, nbytes, unknown = 0.0, 0.0, 0
        for line in comps[name][1:]:
            m = _WHILE_BODY.search(line)
            if m is None:
                for ref in {r for r in _called(line) if r in comps and r != name}:
                    f, b, u = extra(ref)
                    flops, nbytes, unknown = flops + f, nbytes + b, unknown + u
                continue
            body = m.group(1)
            trip = _TRIP_COUNT.search(line)
            if trip:
                n = int(trip.group(1))
            elif body in newton_bodies:
                n = newton_steps[newton_bodies[body]]
            else:
                n, unknown = 1, unknown + 1
            once_f, once_b = cost_once(body)
            f, b, u = extra(body)
            flops += n * (once_f + f) - once_f
            nbytes += n * (once_b + b) - once_b
            unknown += u
        extra_memo[name] = (flops, nbytes, unknown)
        return extra_memo[name]

    once_f, once_b = cost_once(entry)
    f, b, unknown = extra(entry)
    return once_f + f, once_b + b, unknown


def program_cost(compiled, newton_steps: dict[int, float] | None = None) -> ProgramCost:
    """FLOPs, bytes accessed and peak memory of a compiled program (``jax.stages.Compiled``).

    See ``ProgramCost``; ``newton_steps``: the Newton stages' mean steps taken, for a fit
    program (``newton_step_counts``). A program without while loops gets XLA's
    ``cost_analysis()`` numbers directly; if the loop-aware analysis fails for a program with
    loops, its FLOPs and bytes are NaN (with the reason in ``note``) rather than the
    loop-once undercount."""
    static = _static_cost(compiled)
    static_flops = float(static.get("flops", math.nan)) if static else math.nan
    static_bytes = float(static.get("bytes accessed", math.nan)) if static else math.nan
    peak = _peak_bytes(compiled)
    try:
        flops, nbytes, unknown = _loop_aware_cost(compiled, newton_steps)
    except Exception as error:  # noqa: BLE001 - an unparsable module: report, do not crash
        note = f"loop-aware cost analysis failed: {type(error).__name__}: {error}"[:300]
        try:
            has_loops = " while(" in _module_text(compiled)[0]
        except Exception:  # noqa: BLE001
            has_loops = True
        if has_loops:
            return ProgramCost(math.nan, math.nan, peak, static_flops, 0, note)
        return ProgramCost(static_flops, static_bytes, peak, static_flops, 0, "")
    return ProgramCost(flops, nbytes, peak, static_flops, unknown)


def run_grid(
    task: Task,
    spec: ModelSpec,
    sizes: tuple[int, ...],
    seeds: tuple[int, ...],
    cell_batch: int = DEFAULT_CELL_BATCH,
    steady: bool = False,
) -> tuple[list[dict[str, Any]], GridTiming]:
    """Fit and evaluate every (size, seed) cell of one (task, model); one row per cell.
    ``steady``: steady-state timing repeats (``run_cells``)."""
    plan.check_sizes(sizes, seeds, task.pool_size, task.num_classes, task.name)
    pairs = [(n, s) for n in sizes for s in seeds]
    result = run_cells(task, spec, pairs, cell_batch, steady=steady)
    return result.rows, result.timing


def run_cells(
    task: Task,
    spec: ModelSpec,
    pairs: list[tuple[int, int]],
    cell_batch: int = DEFAULT_CELL_BATCH,
    quality: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    devices: int | None = None,
    robustness: bool = False,
    ood: str | None = None,
    data: int = 1,
    scored_size: int | None = None,
    steady: bool = False,
) -> GridResult:
    """Fit and evaluate the given (size, seed) cells of one (task, model) in one program.

    ``quality``: also score the samples of a model that samples (``run_quality``; the
    sample-quality columns stay NaN without it). ``mesh``: the device mesh the cells are split
    over (``gdbench.sharding.make_mesh``); None: a mesh over the first ``devices`` local devices
    (all when None), or no mesh (the unsharded programs) when that is one device. Results do
    not depend on the mesh beyond float round-off (see tests/test_sharding.py).
    ``robustness``: also compute the robustness columns (``gdbench.robustness``: accuracy with
    missing features and, when ``ood`` names an OOD set, OOD-detection AUROCs) on the cells
    of ``scored_size``; they stay NaN / '' without it. ``data``: devices per cell, over which
    each cell's examples are split (``gdbench.sharding``; with ``mesh`` None). ``scored_size``:
    the training size whose cells get the sample-quality and robustness columns and the
    traces (default: the largest among ``pairs``; the runner passes the grid's largest, so
    that a resumed grid does not score a smaller size); none when no cell has it.
    ``steady``: time the fit and evaluate programs by steady-state repeats (``time_program``);
    default: by their result-producing executions (repeats only of programs shorter than
    ``SHORT_S``)."""
    plan.check_pairs(pairs, task)
    cells = plan.make_cells_for(
        task.y_pool, task.num_classes, pairs, validation=spec.cls.needs_validation
    )
    if mesh is None:
        mesh = sharding.make_mesh(devices, data)
    template = build_template(task, spec)
    fit_chunk = chunk_cells(task, cell_batch)
    chunks = (fit_chunk, eval_chunk(task, template, fit_chunk))
    fit_grid, eval_grid = build_programs(task, spec, template, *chunks)
    static = {**program_static(task, spec, mesh), "chunks": chunks}
    index = sharding.pad_index(cells.count, mesh)  # 0..count-1, then copies of cell 0
    keys = jax.vmap(jax.random.key)(jnp.asarray(cells.seeds, dtype=jnp.uint32))
    keys = jax.vmap(jax.random.fold_in)(keys, jnp.asarray(cells.sizes, dtype=jnp.uint32))
    cell_put, shared_put = None, None
    if mesh is not None:
        # Keys travel as raw key data (host arrays: resharding typed key arrays compiles a
        # program of its own) and become keys again inside the program.
        keys = np.asarray(jax.random.key_data(keys))[index]
        fit_grid = sharding.shard_cells(_with_key_data(fit_grid), mesh, 3, 2)
        eval_grid = sharding.shard_cells(eval_grid, mesh, cell_args=1, shared_args=2)
        n_pool, n_test = task.pool_size, len(task.y_test)
        by_cell = sharding.cell_sharding(mesh)
        by_example = sharding.rows_sharding(mesh, n_pool, cells=True)
        cell_put = (by_cell, by_example, by_example)
        pool, test_rows = (sharding.rows_sharding(mesh, n) for n in (n_pool, n_test))
        shared_put = (pool, pool, test_rows, test_rows)
    cell_in = sharding.timed_put((keys, cells.w_train[index], cells.w_val[index]), cell_put)
    shared_in = sharding.timed_put((task.x_pool, task.y_pool, task.x_test, task.y_test), shared_put)
    input_s = cell_in.seconds + shared_in.seconds
    fit_args = (*cell_in.arrays, *shared_in.arrays[:2])
    test = shared_in.arrays[2:]

    t0 = time.perf_counter()
    fit_compiled, fit_cached = compile_cache.compile_program(fit_grid, fit_args, "fit", static)
    t1 = time.perf_counter()
    fitted = jax.block_until_ready(fit_compiled(*fit_args))  # timed: these are the results
    t2 = time.perf_counter()
    fit_rep = time_program(lambda: fit_compiled(*fit_args), t2 - t1, steady)
    t3 = time.perf_counter()
    eval_compiled, eval_cached = compile_cache.compile_program(
        eval_grid, (fitted, *test), "evaluate", static
    )
    cached = int(fit_cached) + int(eval_cached)
    t4 = time.perf_counter()
    metrics = jax.block_until_ready(eval_compiled(fitted, *test))
    t5 = time.perf_counter()
    eval_rep = time_program(lambda: eval_compiled(fitted, *test), t5 - t4, steady)
    t6 = time.perf_counter()
    # XLA analyses the per-device program: scale to all devices' real cells.
    per_device = sharding.device_count(mesh) * cells.count / len(index)
    fit_cost = _scaled(
        program_cost(fit_compiled, newton_step_counts(fitted, cells.count)), per_device
    )
    eval_cost = _scaled(program_cost(eval_compiled), per_device)
    peak = env.device_peak()
    t7 = time.perf_counter()
    metrics = jax.tree.map(lambda a: np.asarray(a)[: cells.count], metrics)
    score_size = int(cells.sizes.max()) if scored_size is None else int(scored_size)
    scored = bool((cells.sizes == score_size).any())
    quality_cols, q_compile, q_run, q_cells, q_error = None, 0.0, 0.0, 0, ""
    if quality and scored and draws_samples(template, task):
        try:
            quality_cols, q_compile, q_run, q_cells = run_quality(
                task, spec, template, cells, fitted, mesh, score_size
            )
        except Exception as err:  # noqa: BLE001 - the grid's results stand without it
            q_error = f"sample quality not computed: {type(err).__name__}: {err}"[:300]
    robust, r_compile, r_error = robustness_step.empty_columns(cells.count), 0.0, ""
    if robustness and scored:
        try:
            robust, r_compile, _ = robustness_step.run_robustness(
                task, spec, template, cells, fitted, ood_task=ood, size=score_size
            )
        except Exception as err:  # noqa: BLE001 - the grid's results stand without it
            r_error = f"robustness not computed: {type(err).__name__}: {err}"[:300]
    timing = GridTiming(
        compile_s=(t1 - t0) + (t4 - t3) + q_compile + r_compile,
        fit_s=fit_rep.median_s,
        predict_s=eval_rep.median_s,
        flops=fit_cost.flops + eval_cost.flops,
        cached_programs=cached,
        fit_first_s=fit_rep.first_s,
        fit_min_s=fit_rep.min_s,
        fit_max_s=fit_rep.max_s,
        fit_repeats=fit_rep.count,
        fit_times_s=fit_rep.times_s,
        predict_first_s=eval_rep.first_s,
        predict_min_s=eval_rep.min_s,
        predict_max_s=eval_rep.max_s,
        predict_repeats=eval_rep.count,
        predict_times_s=eval_rep.times_s,
        fit_flops=fit_cost.flops,
        static_flops=fit_cost.static_flops + eval_cost.static_flops,
        bytes_accessed=fit_cost.bytes_accessed + eval_cost.bytes_accessed,
        peak_bytes=float(np.fmax(fit_cost.peak_bytes, eval_cost.peak_bytes)),
        unknown_loops=fit_cost.unknown_loops + eval_cost.unknown_loops,
        cost_note="; ".join(filter(None, [fit_cost.note, eval_cost.note])),
        device_peak=peak.to_json(),
        measure_s=(t3 - t2) + (t6 - t5) + (t7 - t6),
        quality_compile_s=q_compile,
        quality_s=q_run,
        quality_cells=q_cells,
        input_s=input_s,
        devices=sharding.device_count(mesh),
        padded_cells=len(index),
    )
    samples = None
    if "samples" in metrics:
        # The largest cell of the first seed: the model a reader would look at.
        i = int(np.lexsort((cells.seeds, -cells.sizes))[0])
        samples = {
            "n_train": int(cells.sizes[i]),
            "seed": int(cells.seeds[i]),
            "x": metrics.pop("samples")[i],
        }
    traces = grid_traces(cells, fitted, score_size)
    if quality_cols is not None:
        metrics.update(quality_cols)
    rows = _rows(task, spec, template, cells, metrics, timing)
    converged = newton_converged(fitted, cells.count)
    for i, row in enumerate(rows):
        row.update({k: v[i] for k, v in robust.items()})
        mark_convergence(row, None if converged is None else converged[i])
    for error in (q_error, r_error):  # on the cells it would have scored
        if not error:
            continue
        for row in rows:
            if row["n_train"] == score_size:
                row["message"] = "; ".join(filter(None, [row["message"], error]))
    return GridResult(rows, timing, samples, traces)


def program_static(task: Task, spec: ModelSpec, mesh: jax.sharding.Mesh | None) -> dict:
    """What a grid's programs are built from besides their arguments, for
    ``compile_cache.compile_program``: the task (its data checksum, shapes, preprocessing), the
    model and its hyperparameters, and the device mesh."""
    return {
        "task": {**task.metadata(), "image_shape": task.image_shape},
        "model": [spec.name, spec.spec, spec.paradigm, spec.config_json()],
        "mesh": None if mesh is None else repr(mesh),
    }


def _with_key_data(fit_grid: Callable) -> Callable:
    """``fit_grid`` taking raw PRNG key data (``jax.random.key_data``) instead of keys."""

    def fit(key_data, *args):
        return fit_grid(jax.random.wrap_key_data(key_data), *args)

    return fit


def _scaled(cost: ProgramCost, factor: float) -> ProgramCost:
    """``cost`` with its FLOPs and bytes multiplied by ``factor`` (peak memory unchanged)."""
    if factor == 1:
        return cost
    return dataclasses.replace(
        cost,
        flops=cost.flops * factor,
        bytes_accessed=cost.bytes_accessed * factor,
        static_flops=cost.static_flops * factor,
    )


def newton_step_counts(fitted, count: int) -> dict[int, float]:
    """Mean Newton steps taken per fit stage over the grid's ``count`` cells (the fit
    program's ``gdbench.fit.NEWTON_STEPS`` traces; padding cells after them left out)."""
    return {
        int(name[len(NEWTON_STEPS) :]): float(np.mean(np.asarray(value)[:count]))
        for name, value in fitted[4].items()
        if name.startswith(NEWTON_STEPS)
    }


def newton_converged(fitted, count: int) -> np.ndarray | None:
    """Per cell (the first ``count``), whether every Newton stage of the fit converged
    (``gdbench.fit.NEWTON_CONVERGED`` traces); None when the model has no Newton stage."""
    flags = [
        np.asarray(value)[:count].astype(bool)
        for name, value in fitted[4].items()
        if name.startswith(NEWTON_CONVERGED)
    ]
    return np.logical_and.reduce(flags) if flags else None


def mark_convergence(row: dict[str, Any], converged: bool | None) -> None:
    """Set the row's ``converged`` column; the message of a cell whose convex solve did not
    converge says so (its status is kept: its metrics are those of the parameters reached)."""
    row["converged"] = None if converged is None else bool(converged)
    if converged is None or converged:
        return
    note = "solver did not converge (bench.fit convergence test)"
    row["message"] = "; ".join(filter(None, [row["message"], note]))


def grid_traces(cells: plan.Cells, fitted, size: int | None = None) -> dict[str, Any] | None:
    """The fit program's training traces (e.g. a GAN's losses) for training size ``size``
    (default: the grid's largest).

    Returns None when the model records none or no cell has that size, else ``{"n_train",
    "seeds", "arrays"}`` where ``arrays`` holds ``trace_step`` ``[T]``, every other trace as
    ``[S, T]`` over the ``seeds`` (ascending), and ``trace_samples`` ``[T, C, k, D]`` of the
    first seed in the task's original units when the model records samples.
    """
    traces = {
        k: v for k, v in fitted[4].items() if not k.startswith((NEWTON_STEPS, NEWTON_CONVERGED))
    }
    if not traces:
        return None
    n = int(cells.sizes.max() if size is None else size)
    idx = np.flatnonzero(cells.sizes == n)
    if idx.size == 0:
        return None
    idx = idx[np.argsort(cells.seeds[idx], kind="stable")]
    arrays: dict[str, np.ndarray] = {}
    for name, value in traces.items():
        value = np.asarray(value)
        if name == "trace_step":
            arrays[name] = value[idx[0]]
        elif name == "trace_samples":
            shift, scale = np.asarray(fitted[1][idx[0]]), np.asarray(fitted[2][idx[0]])
            arrays[name] = value[idx[0]] * scale + shift
        else:
            arrays[name] = value[idx]
    return {"n_train": n, "seeds": [int(s) for s in cells.seeds[idx]], "arrays": arrays}


def failed_rows(
    task: Task, spec: ModelSpec, pairs: list[tuple[int, int]], error: BaseException
) -> list[dict[str, Any]]:
    """Rows recording that a grid could not be computed (status ``failed``, metrics empty)."""
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    message = f"{type(error).__name__}: {first_line}"
    nan = math.nan
    return [
        {
            **_cell_identity(task, spec, n, seed, 0),
            **dict.fromkeys(
                ("accuracy", "nll", "ece", "brier", "log_lik", "bits_per_dim", "elbo"), nan
            ),
            "likelihood_is_bound": None,
            **dict.fromkeys(("fit_s", "predict_s", "compile_s", "flops"), nan),
            "grid_cells": len(pairs),
            "status": "failed",
            "message": message,
        }
        for n, seed in pairs
    ]


def _cell_identity(task: Task, spec: ModelSpec, n: int, seed: int, n_val: int) -> dict:
    return {
        "task": task.name,
        "model": spec.spec,
        "paradigm": spec.paradigm,
        "n_train": int(n),
        "n_val": int(n_val),
        "seed": int(seed),
        "bayes_accuracy": task.bayes_accuracy if task.bayes_accuracy is not None else math.nan,
        "true_log_lik": task.true_log_lik if task.true_log_lik is not None else math.nan,
        "model_config": spec.config_json(),
        "preprocess": task.preprocessing,
    }


def _status(m: dict[str, float], density: bool) -> tuple[str, str]:
    bad = [k for k in ("accuracy", "nll", "brier", "ece") if not np.isfinite(m[k])]
    if density and not np.isfinite(m["log_lik"]):
        bad.append("log_lik")
    if not m["params_finite"]:
        return "diverged", "non-finite fitted parameters" + (
            f"; non-finite {', '.join(bad)}" if bad else ""
        )
    if bad:
        return "diverged", f"non-finite {', '.join(bad)}"
    return "ok", ""


def _rows(task, spec, template, cells, metrics, timing) -> list[dict[str, Any]]:
    m_cells = cells.count
    density = reports_density(template, task)
    note = ""
    if isinstance(template, GenerativeModel) and not density:
        note = (
            f"log_lik n/a: {spec.name} is a density on {template.input_support} data, "
            f"task features are {task.feature_kind}"
        )
    rows = []
    n_val = cells.n_val
    measured = _measurement_columns(timing, m_cells, len(task.y_test))
    correct = metrics["correct"]
    for i in range(m_cells):
        m = {k: float(v[i]) for k, v in metrics.items() if k != "correct"}
        status, message = _status(m, density)
        log_lik = m["log_lik"] if density else math.nan
        rows.append(
            {
                **_cell_identity(task, spec, cells.sizes[i], cells.seeds[i], n_val[i]),
                "accuracy": m["accuracy"],
                "nll": m["nll"],
                "ece": m["ece"],
                "brier": m["brier"],
                "n_test": correct.shape[1],
                "test_correct": pack_correct(correct[i]),
                **{f"{k}_sd": m[f"{k}_sd"] for k in ("nll", "brier", "ece")},
                "log_lik_sd": m["log_lik_sd"] if density else math.nan,
                "log_lik": log_lik,
                "bits_per_dim": -log_lik / (task.dim * math.log(2.0)),
                "likelihood_is_bound": bool(template.likelihood_is_bound) if density else None,
                "elbo": m["elbo"] if density else math.nan,
                **{k: m.get(k, math.nan) for k in QUALITY_COLUMNS},
                **measured,
                "grid_cells": m_cells,
                "status": status,
                "message": "; ".join(filter(None, [message, note])),
            }
        )
    return rows


def _measurement_columns(timing: GridTiming, cells: int, n_test: int) -> dict[str, float]:
    """The timing and cost columns of every row of a grid (results.schema says the units):
    grid seconds, FLOPs and bytes divided by the grid's cells; rates and peaks per grid."""
    return {
        "fit_s": timing.fit_s / cells,
        "fit_s_min": timing.fit_min_s / cells,
        "fit_s_max": timing.fit_max_s / cells,
        "fit_repeats": float(timing.fit_repeats),
        "predict_s": timing.predict_s / cells,
        "predict_s_min": timing.predict_min_s / cells,
        "predict_s_max": timing.predict_max_s / cells,
        "predict_repeats": float(timing.predict_repeats),
        "predict_per_s": n_test * cells / timing.predict_s if timing.predict_s > 0 else math.nan,
        "compile_s": timing.compile_s,
        "input_s": timing.input_s,
        "flops": timing.flops / cells,
        "fit_flops": timing.fit_flops / cells,
        "bytes": timing.bytes_accessed / cells,
        "peak_bytes": timing.peak_bytes,
        "flop_rate": timing.flop_rate,
        "peak_fraction": timing.peak_fraction,
    }
