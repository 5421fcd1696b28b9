"""One (task, model) grid: a jit-compiled fit program and evaluate program over every cell.

``run_grid`` builds both programs once (``build_programs``), compiles them ahead of time (timed
apart), runs them on all (size, seed) cells at once with ``jax.vmap`` (in equal chunks of at
most ``cell_batch`` cells through ``jax.lax.map`` when the grid is large, still one program with
one copy of the cell function: ``gdbench.sharding.map_cells``; chunk sizes from
``gdbench.chunks``), and returns one result row per cell (``gdbench.rows``). The evaluation's
metrics may be a third program, shared by every model on tasks of the same shapes
(``build_metrics_program``).

Around the two programs, each in a module of its own: how they are timed and what a grid's
measurements are (``gdbench.timing``: ``time_program``, ``GridTiming``), XLA's cost of each
compiled program (``gdbench.cost.program_cost``), the sample-quality programs of models that
sample (``gdbench.quality_programs.run_quality``) and the robustness step
(``gdbench.robustness``).

On several local devices the cells are split over a device mesh (``gdbench.sharding``): every
program is a ``shard_map`` over the mesh's ``cells`` axis, each device mapping over its block of
cells; on one device the programs are exactly the unsharded ones.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend.core import Literal

from gdbench import compile_cache, env, lowering, plan, sharding
from gdbench import robustness as robustness_step
from gdbench.abilities import draws_samples, reports_density
from gdbench.chunks import (
    DEFAULT_CELL_BATCH,
    PREDICTIONS_BYTES,
    chunk_cells,
    eval_chunk,
    metrics_chunk,
)
from gdbench.compile_cache import grid_static
from gdbench.cost import newton_step_counts, scaled, summed
from gdbench.fit import run_plan
from gdbench.metrics import classification_metrics, example_spread
from gdbench.models.base import ClosedForm, Newton
from gdbench.models.registry import ModelSpec
from gdbench.quality_programs import run_quality
from gdbench.rows import (
    add_cell_columns,
    add_step_errors,
    cell_rows,
    grid_traces,
    newton_converged,
)
from gdbench.tasks.base import Task
from gdbench.timing import GridTiming, time_program

lowering.use_unrolled_threefry()


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


def seed_free_fit(task: Task, spec: ModelSpec, template) -> bool:
    """Whether a cell's fit is a function of its training (and validation) weights alone, not
    of its seed: every stage of the model's ``fit_plan`` is a ``ClosedForm`` or ``Newton`` one
    (``run_plan`` gives neither a key) and the model's initial state does not depend on the key
    it is built with (its traced initializer, followed from the key to the state's leaves;
    any operation that takes the key, or a value computed from it, counts as depending on it).
    Then cells with the same subset have the same fit (``run_cells`` fits them once): at the
    pool's size every seed trains on the whole pool."""
    if not all(isinstance(stage, ClosedForm | Newton) for stage in template.fit_plan()):
        return False

    def initial_state(key):
        rngs = nnx.Rngs(key)
        model = spec.build(task.dim, task.num_classes, rngs, task.feature_kind, task.image_shape)
        return jax.tree.leaves(nnx.state(model))

    closed = jax.make_jaxpr(initial_state)(jax.random.key(0))
    return not _reaches_outputs(closed.jaxpr, closed.jaxpr.invars[0])


def _reaches_outputs(jaxpr, var) -> bool:
    """Whether any output of ``jaxpr`` is computed from ``var``: every output of an equation
    with a reached input is reached (conservative for equations with sub-programs)."""
    reached = {var}
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in reached for v in eqn.invars):
            reached.update(eqn.outvars)
    return any(not isinstance(v, Literal) and v in reached for v in jaxpr.outvars)


def distinct_fits(w_train: np.ndarray, w_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the first cell of each distinct (training, validation) weight row,
    in cell order, and for every cell the position in ``first`` of the cell with its weights."""
    rows = np.ascontiguousarray(np.concatenate([w_train, w_val], axis=1))
    # Each row as one opaque value (its bytes): 1-d ``unique`` sorts them by memcmp, about 7
    # times faster than ``unique(axis=0)``'s column-by-column sort (83 ms a grid on digits_bin).
    whole = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(whole, return_index=True, return_inverse=True)
    order = np.argsort(first)  # first occurrences in cell order
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return first[order], position[inverse.reshape(-1)]


def build_programs(
    task: Task,
    spec: ModelSpec,
    template,
    cell_batch: int = DEFAULT_CELL_BATCH,
    eval_batch: int | None = None,
    predict_only: bool = False,
):
    """The (unjitted) fit and evaluate functions of a grid, each mapping over cells, in equal
    chunks of at most ``cell_batch`` cells (the evaluation: ``eval_batch``, default the same;
    ``gdbench.sharding.map_cells``).

    ``template`` is ``build_template(task, spec)``: its graph and declared properties.
    ``predict_only``: the evaluate function returns each cell's predictions (``cell_metrics``'s
    input, with ``samples`` and ``params_finite``) instead of its metrics, for the grid's
    metrics program (``build_metrics_program``), which every model of the task's shapes
    shares; else it computes the metrics itself."""
    eval_batch = eval_batch or cell_batch
    dim, num_classes = task.dim, task.num_classes
    graphdef, _ = nnx.split(template)
    standardize = task.preprocess == "standardize"
    sampler = draws_samples(template, task)

    def fit_cell(key, w_train, w_val, x_pool, y_pool, traced):
        if standardize:
            shift, scale = _standardizer(x_pool, w_train + w_val)
        else:
            shift, scale = jnp.zeros(dim), jnp.ones(dim)
        z = (x_pool - shift) / scale
        k_init, k_fit = jax.random.split(key)
        model = spec.build(
            dim, num_classes, nnx.Rngs(k_init), task.feature_kind, task.image_shape, traced
        )
        affine = (x_pool, shift, scale)  # z as the shared pool: see bench.fit.newton
        traces = run_plan(model, z, y_pool, w_train, w_val, k_fit, affine) or {}
        return nnx.state(model), shift, scale, key, traces

    def eval_cell(state, shift, scale, key, x_test, y_test=None):
        model = nnx.merge(graphdef, state)
        z = (x_test - shift) / scale
        # Log-likelihoods in original units: change of variables through the standardization.
        out = {"log_scale": jnp.log(scale).sum()}
        if hasattr(model, "class_log_bounds"):
            # One pass of importance samples gives both bounds (IWAE and ELBO).
            iwae, elbo = model.class_log_bounds(z)
            out["logits"] = iwae + model.log_prior()[None, :]
            out["elbo_joint"] = elbo + model.log_prior()[None, :]
        else:
            out["logits"] = model.predict_logits(z)
        if not predict_only:
            out = cell_metrics(out, y_test)
        if sampler and task.image_shape is not None:  # shown for image tasks
            k = jax.random.fold_in(key, 0x5A3)
            draw = lambda c: model.sample(jax.random.fold_in(k, c), c, SAMPLES_PER_CLASS)  # noqa: E731
            out["samples"] = jax.vmap(draw)(jnp.arange(num_classes)) * scale + shift
        out["params_finite"] = _all_finite(state)
        return out

    def fit_grid(keys, w_train, w_val, x_pool, y_pool, traced=None):
        """``traced``: the model's ``traced_hyperparameters`` as arrays (``traced_args``);
        None bakes the spec's values into the program as constants."""
        cells = (keys, w_train, w_val)
        fn = lambda c: fit_cell(*c, x_pool, y_pool, traced)  # noqa: E731
        return sharding.map_cells(fn, cells, cell_batch)

    def eval_grid(fitted, x_test, y_test=None):
        """``y_test``: None with ``predict_only`` (the labels are the metrics program's)."""
        fn = lambda c: eval_cell(*c, x_test, y_test)  # noqa: E731
        cells = fitted[:4]  # the fit program's traces are not needed here
        return sharding.map_cells(fn, cells, eval_batch)

    return fit_grid, eval_grid


def cell_metrics(predicted: dict, y_test: jax.Array) -> dict:
    """One cell's test metrics from its predictions: ``logits`` (class logits ``[T, C]``; the
    log joint for generative models), ``log_scale`` (the log-determinant of the
    standardization, for log-likelihoods in the task's units) and, for models with an ELBO,
    ``elbo_joint``. The log-likelihoods are computed for every model; ``run_cells`` blanks
    those of models that report no density."""
    logits, jacobian = predicted["logits"], predicted["log_scale"]
    out = {**classification_metrics(logits, y_test), **example_spread(logits, y_test)}
    nan = jnp.asarray(jnp.nan)
    # For generative models log p(x) = logsumexp of the log joint (protocol).
    per_example = jax.nn.logsumexp(logits, axis=-1)
    out["log_lik"] = per_example.mean() - jacobian
    out["log_lik_sd"] = jnp.std(per_example, ddof=1)
    out["elbo"] = nan
    if "elbo_joint" in predicted:
        out["elbo"] = jax.nn.logsumexp(predicted["elbo_joint"], axis=-1).mean() - jacobian
    return out


def build_metrics_program(eval_batch: int):
    """The (unjitted) metrics function ``(predicted, y_test) -> metrics`` over every cell's
    predictions (``build_programs(..., predict_only=True)``), in chunks of ``eval_batch``: it
    depends on the task's test set and classes only, so the grids of every model on tasks of
    the same shapes run one compiled program. Compiled inside each model's evaluate program
    it took about 0.8 s of XLA's time per model and task shape (2-core CPU), more than the
    predictions of a naive Bayes or linear model. It computes the log-likelihoods of every
    model (``cell_metrics``)."""

    def metrics_grid(predicted, y_test):
        fn = lambda c: cell_metrics(c, y_test)  # noqa: E731
        return sharding.map_cells(fn, predicted, eval_batch)

    return metrics_grid


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
    result = run_cells(
        task, spec, plan.GridPlan.make(task, sizes, seeds), cell_batch, steady=steady
    )
    return result.rows, result.timing


def run_cells(
    task: Task,
    spec: ModelSpec,
    grid: plan.GridPlan | Sequence[tuple[int, int]],
    cell_batch: int = DEFAULT_CELL_BATCH,
    quality: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    devices: int | None = None,
    robustness: bool = False,
    ood: str | None = None,
    data: int = 1,
    steady: bool = False,
) -> GridResult:
    """Fit and evaluate the cells of ``grid`` (a ``gdbench.plan.GridPlan``: its ``pairs``;
    or the (size, seed) pairs themselves, as the plan of just those cells) of one (task, model)
    in one program.

    ``quality``: also score the samples of a model that samples (``run_quality``; the
    sample-quality columns stay NaN without it). ``mesh``: the device mesh the cells are split
    over (``gdbench.sharding.make_mesh``); None: a mesh over the first ``devices`` local devices
    (all when None), or no mesh (the unsharded programs) when that is one device. Results do
    not depend on the mesh beyond float round-off (see tests/test_sharding.py).
    ``robustness``: also compute the robustness columns (``gdbench.robustness``: accuracy with
    missing features and, when ``ood`` names an OOD set, OOD-detection AUROCs) on the cells
    of the plan's ``scored_size``; they stay NaN / '' without it. The sample-quality columns
    and the traces are for those cells too: the grid's largest size (for pairs, the largest
    among them), so that a resumed grid computing only smaller cells scores none of them.
    ``data``: devices per cell, over which each cell's examples are split
    (``gdbench.sharding``; with ``mesh`` None).
    ``steady``: time the fit and evaluate programs by steady-state repeats (``time_program``);
    default: by their result-producing executions (repeats only of programs shorter than
    ``gdbench.timing.SHORT_S``)."""
    grid = plan.grid_of(task, grid)
    cells = grid.cells(task.y_pool, validation=spec.cls.needs_validation)
    if mesh is None:
        mesh = sharding.make_mesh(devices, data)
    template = build_template(task, spec)
    fit_chunk = chunk_cells(task, cell_batch)
    chunks = (fit_chunk, eval_chunk(task, template, fit_chunk))
    # Unsharded, and where every cell's predictions fit the budget, the metrics are a program
    # of their own, shared by the task's models (``build_metrics_program``).
    split = mesh is None and predictions_fit(task, cells.count, template)
    fit_grid, eval_grid = build_programs(task, spec, template, *chunks, predict_only=split)
    static = {**grid_static(task, spec, mesh), "chunks": chunks}
    index = sharding.pad_index(cells.count, mesh)  # 0..count-1, then copies of cell 0
    keys = jax.vmap(jax.random.key)(jnp.asarray(cells.seeds, dtype=jnp.uint32))
    keys = jax.vmap(jax.random.fold_in)(keys, jnp.asarray(cells.sizes, dtype=jnp.uint32))
    # Cells with the same subset share one fit when it does not depend on the seed (e.g.
    # every seed at the pool's size); each cell is still evaluated with its own key.
    fit_index, shared = index, None  # the cells the fit program runs; each cell's fit
    if mesh is None and seed_free_fit(task, spec, template):
        first, inverse = distinct_fits(cells.w_train, cells.w_val)
        if len(first) < cells.count:
            fit_index, shared = first, inverse
    cell_put, shared_put = None, None
    if mesh is not None:
        # Keys travel as raw key data (host arrays: resharding typed key arrays compiles a
        # program of its own) and become keys again inside the program.
        keys = np.asarray(jax.random.key_data(keys))[index]
        fit_grid = sharding.shard_cells(_with_key_data(fit_grid), mesh, 3, 3)
        eval_grid = sharding.shard_cells(eval_grid, mesh, cell_args=1, shared_args=2)
        n_pool, n_test = task.pool_size, len(task.y_test)
        by_cell = sharding.cell_sharding(mesh)
        by_example = sharding.rows_sharding(mesh, n_pool, cells=True)
        cell_put = (by_cell, by_example, by_example)
        pool, test_rows = (sharding.rows_sharding(mesh, n) for n in (n_pool, n_test))
        shared_put = (pool, pool, test_rows, test_rows)
    fit_keys = keys if shared is None else keys[fit_index]
    cell_in = sharding.timed_put(
        (fit_keys, cells.w_train[fit_index], cells.w_val[fit_index]), cell_put
    )
    shared_in = sharding.timed_put((task.x_pool, task.y_pool, task.x_test, task.y_test), shared_put)
    input_s = cell_in.seconds + shared_in.seconds
    fit_args = (*cell_in.arrays, *shared_in.arrays[:2], traced_args(spec))
    test = shared_in.arrays[2:]

    t0 = time.perf_counter()
    fit_compiled, fit_cached = compile_cache.compile_program(fit_grid, fit_args, "fit", static)
    t1 = time.perf_counter()
    fitted = jax.block_until_ready(fit_compiled(*fit_args))  # timed: these are the results
    t2 = time.perf_counter()
    fit_rep = time_program(lambda: fit_compiled(*fit_args), t2 - t1, steady)
    t3 = time.perf_counter()
    fits = fitted  # the fit program's own cells (the distinct fits when shared)
    if shared is not None:
        fitted = _share_fits(fitted, shared, keys)
    if split:
        eval_compiled, eval_cached = compile_cache.compile_program(
            eval_grid, (fitted, test[0]), "predict", static
        )
        chunk = metrics_chunk(task)
        metrics_compiled, metrics_cached = compile_cache.compile_program(
            build_metrics_program(chunk),
            (_metric_inputs(eval_compiled.out_info), test[1]),
            "metrics",
            {"task": static["task"], "chunk": chunk},
        )
        eval_cached = eval_cached and metrics_cached

        def evaluate():
            predicted = eval_compiled(fitted, test[0])
            out = metrics_compiled(_metric_inputs(predicted), test[1])
            return {**out, **{k: predicted[k] for k in _CELL_OUTPUTS if k in predicted}}

    else:
        eval_compiled, eval_cached = compile_cache.compile_program(
            eval_grid, (fitted, *test), "evaluate", static
        )
        metrics_compiled = None
        evaluate = lambda: eval_compiled(fitted, *test)  # noqa: E731
    cached = int(fit_cached) + int(eval_cached)
    t4 = time.perf_counter()
    metrics = jax.block_until_ready(evaluate())
    t5 = time.perf_counter()
    eval_rep = time_program(evaluate, t5 - t4, steady)
    t6 = time.perf_counter()
    # XLA analyses the per-device program: scale to all devices' real cells.
    fit_cells = cells.count if shared is None else len(fit_index)
    per_device = sharding.device_count(mesh) * cells.count / len(index)
    # Shared fits run only unsharded (per_device 1): every fit the program ran is counted.
    # The programs' costs, kept with them in the compilation cache (``cost_model``).
    steps = newton_step_counts(fits, fit_cells)
    fit_cost = scaled(compile_cache.cost_model(fit_compiled).cost(steps), per_device)
    eval_cost = compile_cache.cost_model(eval_compiled).cost()
    if metrics_compiled is not None:
        eval_cost = summed(eval_cost, compile_cache.cost_model(metrics_compiled).cost())
    eval_cost = scaled(eval_cost, per_device)
    peak = env.device_peak()
    t7 = time.perf_counter()
    metrics = jax.tree.map(lambda a: np.asarray(a)[: cells.count], metrics)
    if not reports_density(template, task):  # ``cell_metrics`` computes them for every model
        for name in ("log_lik", "log_lik_sd", "elbo"):
            metrics[name] = np.full(cells.count, np.nan, np.float32)
    score_size = grid.scored_size
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
    timing = GridTiming.of_programs(
        fit_rep,
        eval_rep,
        fit_cost,
        eval_cost,
        compile_s=(t1 - t0) + (t4 - t3) + q_compile + r_compile,
        cached_programs=cached,
        device_peak=peak.to_json(),
        measure_s=(t3 - t2) + (t6 - t5) + (t7 - t6),
        quality_compile_s=q_compile,
        quality_s=q_run,
        quality_cells=q_cells,
        input_s=input_s,
        devices=sharding.device_count(mesh),
        padded_cells=len(index),
        fitted_cells=fit_cells,
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
    rows = cell_rows(task, spec, template, cells, metrics, timing)
    add_cell_columns(rows, robust, newton_converged(fitted, cells.count))
    add_step_errors(rows, (q_error, r_error), score_size)
    return GridResult(rows, timing, samples, traces)


#: What a cell's evaluation gives besides its metrics (``build_programs``).
_CELL_OUTPUTS = ("samples", "params_finite")


def _metric_inputs(predicted: dict) -> dict:
    """The part of the evaluate program's predictions the metrics program reads."""
    return {k: v for k, v in predicted.items() if k not in _CELL_OUTPUTS}


def predictions_fit(task: Task, cells: int, template) -> bool:
    """Whether every cell's test-set predictions (``[cells, T, C]`` logits, and as much again
    for models with an ELBO) fit ``PREDICTIONS_BYTES``: then the grid's metrics are computed
    by the metrics program from them (``build_metrics_program``), else by each chunk."""
    copies = 2 if hasattr(template, "class_log_bounds") else 1
    size = copies * 4 * cells * len(task.y_test) * task.num_classes
    return size <= PREDICTIONS_BYTES


def _share_fits(fitted, inverse: np.ndarray, keys: jax.Array):
    """The fit program's outputs for its distinct fits, given to every cell (``inverse``: each
    cell's fit), with each cell's own key (for its evaluation and samples); host copies."""
    state, shift, scale, _, traces = fitted

    def take(tree):
        return jax.tree.map(lambda a: jax.device_put(np.asarray(a)[inverse]), tree)

    return (take(state), take(shift), take(scale), keys, take(traces))


def traced_args(spec: ModelSpec) -> dict[str, jax.Array]:
    """The fit program's ``traced`` argument: the spec's ``traced_hyperparameters`` as float32
    scalars, so that specs differing only in them (``logreg`` and ``logreg?C=10000``) run one
    compiled program (its key, ``grid_static``, leaves their values out)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in spec.traced.items()}


def _with_key_data(fit_grid: Callable) -> Callable:
    """``fit_grid`` taking raw PRNG key data (``jax.random.key_data``) instead of keys."""

    def fit(key_data, *args):
        return fit_grid(jax.random.wrap_key_data(key_data), *args)

    return fit
