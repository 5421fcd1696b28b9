"""One (task, model) grid: a jit-compiled fit program and evaluate program over every cell.

``run_grid`` builds both programs once, compiles them ahead of time (timed apart), runs them on
all (size, seed) cells at once with ``jax.vmap`` (in chunks of ``cell_batch`` cells through
``jax.lax.map`` when the grid is large, still one program), and returns one result row per cell.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bench import compile_cache, plan
from bench.fit import run_plan
from bench.metrics import classification_metrics
from models.base import GenerativeModel
from models.registry import ModelSpec
from tasks.base import Task

#: Cells per vmapped chunk; larger grids are mapped chunk by chunk inside the same program.
DEFAULT_CELL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class GridTiming:
    """Wall seconds of one grid: compile (lower + compile, both programs), fit, evaluate.

    ``cached_programs`` counts the grid's programs (of 2) that the persistent compilation cache
    supplied, in which case ``compile_s`` is mostly the time to load them."""

    compile_s: float
    fit_s: float
    predict_s: float
    flops: float
    cached_programs: int = 0


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


def build_template(task: Task, spec: ModelSpec):
    """A model instance for this task (for its graph structure and declared properties)."""
    return spec.build(task.dim, task.num_classes, nnx.Rngs(0), task.feature_kind)


def build_programs(task: Task, spec: ModelSpec, template, cell_batch: int = DEFAULT_CELL_BATCH):
    """The (unjitted) fit and evaluate functions of a grid, each mapping over cells.

    ``template`` is ``build_template(task, spec)``: its graph and declared properties."""
    dim, num_classes = task.dim, task.num_classes
    graphdef, _ = nnx.split(template)
    standardize = task.preprocess == "standardize"
    density = reports_density(template, task)
    generative = isinstance(template, GenerativeModel)

    def fit_cell(key, w_train, w_val, x_pool, y_pool):
        if standardize:
            shift, scale = _standardizer(x_pool, w_train + w_val)
        else:
            shift, scale = jnp.zeros(dim), jnp.ones(dim)
        z = (x_pool - shift) / scale
        k_init, k_fit = jax.random.split(key)
        model = spec.build(dim, num_classes, nnx.Rngs(k_init), task.feature_kind)
        run_plan(model, z, y_pool, w_train, w_val, k_fit)
        return nnx.state(model), shift, scale, key

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
        out = classification_metrics(logits, y_test)
        # Log-likelihoods in original units: change of variables through the standardization.
        # For generative models log p(x) = logsumexp of the log joint (protocol).
        jacobian = jnp.log(scale).sum()
        marginal = jax.nn.logsumexp(logits, axis=-1).mean() - jacobian
        out["log_lik"] = marginal if density else nan
        out["elbo"] = nan
        if density and elbo_joint is not None:
            out["elbo"] = jax.nn.logsumexp(elbo_joint, axis=-1).mean() - jacobian
        if generative and density and task.image_shape is not None:  # shown for image tasks
            k = jax.random.fold_in(key, 0x5A3)
            draw = lambda c: model.sample(jax.random.fold_in(k, c), c, SAMPLES_PER_CLASS)  # noqa: E731
            out["samples"] = jax.vmap(draw)(jnp.arange(num_classes)) * scale + shift
        out["params_finite"] = _all_finite(state)
        return out

    def fit_grid(keys, w_train, w_val, x_pool, y_pool):
        cells = (keys, w_train, w_val)
        fn = lambda c: fit_cell(*c, x_pool, y_pool)  # noqa: E731
        return jax.lax.map(fn, cells, batch_size=min(cell_batch, keys.shape[0]))

    def eval_grid(fitted, x_test, y_test):
        fn = lambda c: eval_cell(*c, x_test, y_test)  # noqa: E731
        return jax.lax.map(fn, fitted, batch_size=min(cell_batch, fitted[1].shape[0]))

    return fit_grid, eval_grid


def _cost_flops(compiled) -> float:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return math.nan
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", math.nan)) if cost else math.nan


def run_grid(
    task: Task,
    spec: ModelSpec,
    sizes: tuple[int, ...],
    seeds: tuple[int, ...],
    cell_batch: int = DEFAULT_CELL_BATCH,
) -> tuple[list[dict[str, Any]], GridTiming]:
    """Fit and evaluate every (size, seed) cell of one (task, model); one row per cell."""
    plan.check_sizes(sizes, seeds, task.pool_size, task.num_classes, task.name)
    result = run_cells(task, spec, [(n, s) for n in sizes for s in seeds], cell_batch)
    return result.rows, result.timing


def run_cells(
    task: Task,
    spec: ModelSpec,
    pairs: list[tuple[int, int]],
    cell_batch: int = DEFAULT_CELL_BATCH,
) -> GridResult:
    """Fit and evaluate the given (size, seed) cells of one (task, model) in one program."""
    plan.check_sizes(
        sorted({n for n, _ in pairs}),
        sorted({s for _, s in pairs}),
        task.pool_size,
        task.num_classes,
        task.name,
    )
    cells = plan.make_cells_for(
        task.y_pool, task.num_classes, pairs, validation=spec.cls.needs_validation
    )
    template = build_template(task, spec)
    fit_grid, eval_grid = build_programs(task, spec, template, cell_batch)
    keys = jax.vmap(jax.random.key)(jnp.asarray(cells.seeds, dtype=jnp.uint32))
    keys = jax.vmap(jax.random.fold_in)(keys, jnp.asarray(cells.sizes, dtype=jnp.uint32))
    fit_args = (
        keys,
        jnp.asarray(cells.w_train),
        jnp.asarray(cells.w_val),
        jnp.asarray(task.x_pool),
        jnp.asarray(task.y_pool),
    )
    test = (jnp.asarray(task.x_test), jnp.asarray(task.y_test))

    hits_before, _ = compile_cache.counts()
    t0 = time.perf_counter()
    fit_compiled = jax.jit(fit_grid).lower(*fit_args).compile()
    t1 = time.perf_counter()
    fitted = jax.block_until_ready(fit_compiled(*fit_args))
    t2 = time.perf_counter()
    eval_compiled = jax.jit(eval_grid).lower(fitted, *test).compile()
    t3 = time.perf_counter()
    metrics = jax.block_until_ready(eval_compiled(fitted, *test))
    t4 = time.perf_counter()
    metrics = jax.tree.map(np.asarray, metrics)
    timing = GridTiming(
        compile_s=(t1 - t0) + (t3 - t2),
        fit_s=t2 - t1,
        predict_s=t4 - t3,
        flops=_cost_flops(fit_compiled) + _cost_flops(eval_compiled),
        cached_programs=compile_cache.counts()[0] - hits_before,
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
    return GridResult(_rows(task, spec, template, cells, metrics, timing), timing, samples)


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
    for i in range(m_cells):
        m = {k: float(v[i]) for k, v in metrics.items()}
        status, message = _status(m, density)
        log_lik = m["log_lik"] if density else math.nan
        rows.append(
            {
                **_cell_identity(task, spec, cells.sizes[i], cells.seeds[i], n_val[i]),
                "accuracy": m["accuracy"],
                "nll": m["nll"],
                "ece": m["ece"],
                "brier": m["brier"],
                "log_lik": log_lik,
                "bits_per_dim": -log_lik / (task.dim * math.log(2.0)),
                "likelihood_is_bound": bool(template.likelihood_is_bound) if density else None,
                "elbo": m["elbo"] if density else math.nan,
                "fit_s": timing.fit_s / m_cells,
                "predict_s": timing.predict_s / m_cells,
                "compile_s": timing.compile_s,
                "grid_cells": m_cells,
                "flops": timing.flops / m_cells,
                "status": status,
                "message": "; ".join(filter(None, [message, note])),
            }
        )
    return rows
