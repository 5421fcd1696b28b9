"""Run a suite: resolve and check the whole plan first, then one grid at a time into the store.

Every (task, model) grid is written as its own Parquet part as soon as it finishes, so a run
that stops keeps every finished grid; running the same configuration into the same directory
again computes only the grids that are missing.

Scale-out (``gdbench.sharding``): a grid's cells are split over the process's local devices
(``RunConfig.devices``); under ``jax.distributed`` with several processes, each process computes
its round-robin share of every grid's cells into part files of its own (``.p<process index>``),
process 0 creating the manifest and marking the run finished once every process is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from gdbench import chunks, engine, grids, plan, plugins, sharding
from gdbench import models as model_registry
from gdbench import tasks as task_registry
from gdbench.abilities import needs_image
from gdbench.codeversion import code_version
from gdbench.results import SCHEMA_VERSION, provenance, store
from gdbench.rows import failed_rows
from gdbench.suites import Suite
from gdbench.timing import GridTiming


class RunDirError(ValueError):
    """An output directory that cannot take this run."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A fully resolved run: what ``gdbench run`` computes."""

    suite: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    sizes: tuple[int, ...] | None
    size_count: int
    smallest: int = 10
    cell_batch: int = chunks.DEFAULT_CELL_BATCH
    #: Score the samples of models that sample (``gdbench.quality_programs.run_quality``); not
    #: part of the run's identity (the quality columns of a cell are NaN where it was off).
    quality: bool = True
    #: The suite's (generative, discriminative, description) pairs present in this run, in
    #: canonical model spellings; for the report, not part of the run's identity.
    pairs: tuple[tuple[str, str, str], ...] = ()
    #: Local devices the cells of a grid are split over (the first N; None: all). Not part of
    #: the run's identity: the numbers do not depend on it beyond float round-off.
    devices: int | None = None
    #: Devices per cell, over which each cell's examples are split (``gdbench.sharding``); not
    #: part of the run's identity either.
    data_parallel: int = 1
    #: Also compute the robustness columns (``gdbench.robustness``): accuracy with missing
    #: features and, for tasks with an OOD set in ``ood``, OOD-detection AUROCs. Part of the
    #: run's identity when on (with ``ood``).
    robustness: bool = False
    #: (task, OOD set) pairs (``gdbench.tasks.ood`` specs) for the robustness step.
    ood: tuple[tuple[str, str], ...] = ()
    #: Time every grid's programs by steady-state repeats (``gdbench.timing.time_program``)
    #: instead of by their result-producing runs; not part of the run's identity (the results
    #: do not depend on it, only ``fit_s``/``predict_s`` and their repeat columns).
    steady_state: bool = False

    def ood_for(self, task: str) -> str | None:
        """The OOD set of ``task`` in this run, or None."""
        return dict(self.ood).get(task)

    def to_json(self) -> dict:
        """The configuration as it is stored in (and read back from) a run's manifest."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def make_config(
    suite: Suite,
    tasks: list[str] | None = None,
    models: list[str] | None = None,
    sizes: list[int] | None = None,
    seeds: int | None = None,
    quality: bool | None = None,
    devices: int | None = None,
    robustness: bool | None = None,
    data_parallel: int = 1,
    ood: str | None = None,
    steady_state: bool = False,
) -> RunConfig:
    """The suite's grid with the given parts overridden. Names are checked here.

    ``robustness`` and ``quality``: None takes the suite's setting. ``ood`` (implies
    ``robustness``): the OOD set of every task, a ``gdbench.tasks.ood`` transform name (``noise``,
    ``contrast0.3``, ...: the task's own test set through it) or a task name; None: each
    task's default pairing (``gdbench.tasks.ood.OOD_PAIRS``). ``steady_state``: see
    ``RunConfig``."""
    task_names = tuple(dict.fromkeys(plugins.resolve_task(t) for t in tasks or suite.tasks))
    for t in task_names:
        task_registry.check_name(t)
    # Canonical spellings, duplicates removed (logreg?C=1 is logreg); plug-ins registered.
    model_specs = tuple(
        dict.fromkeys(
            model_registry.get(plugins.resolve_model(m)).spec for m in models or suite.models
        )
    )
    n_seeds = suite.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise plan.PlanError(f"--seeds must be at least 1, got {n_seeds}")
    if sizes is not None and any(n < 1 for n in sizes):
        raise plan.PlanError(f"training sizes must be positive, got {min(sizes)}")
    robust = suite.robustness if robustness is None else robustness
    robust = robust or ood is not None
    ood_pairs: tuple[tuple[str, str], ...] = ()
    if robust:
        ood_pairs = tuple((t, o) for t in task_names if (o := _ood_spec(t, ood)) is not None)
    return RunConfig(
        suite=suite.name,
        tasks=task_names,
        models=model_specs,
        seeds=tuple(range(n_seeds)),
        sizes=tuple(sorted(set(sizes))) if sizes else suite.sizes,
        size_count=suite.size_count,
        smallest=suite.smallest,
        pairs=_pairs_present(suite, model_specs),
        quality=suite.quality if quality is None else quality,
        devices=devices,
        data_parallel=data_parallel,
        robustness=robust,
        ood=ood_pairs,
        steady_state=steady_state,
    )


def _ood_spec(task: str, ood: str | None) -> str | None:
    """The OOD set of ``task``: ``ood`` as a transform of the task or as a task, else the
    task's default pairing; checked here (one-line ``TaskError``)."""
    from gdbench.tasks import ood as ood_sets

    if ood is None:
        spec = ood_sets.default_for(task)
    elif ood_sets.is_transform(ood):
        spec = f"{task}:{ood}"
    else:
        spec = ood
    if spec is not None:
        ood_sets.parse(spec)
    return spec


def _pairs_present(suite: Suite, model_specs: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    canonical = [
        (model_registry.get(g).spec, model_registry.get(d).spec, why) for g, d, why in suite.pairs
    ]
    return tuple(p for p in canonical if p[0] in model_specs and p[1] in model_specs)


def grid_plan(config: RunConfig, task) -> plan.GridPlan:
    """The plan of every grid of ``task`` in this run: the configuration's training sizes (or
    the suite's log-spaced sizes up to the task's pool, ``plan.auto_sizes``), its seeds and all
    their cells. The one place a task's sizes are chosen: ``prepare`` makes the plan once per
    task (which checks it, ``plan.PlanError``) and the run's identity, the cell keys, the grid
    runners and the rows all read it from there. Each grid narrows it to its cells still to
    compute (``GridPlan.only``)."""
    sizes = config.sizes
    if sizes is None:
        sizes = plan.auto_sizes(
            task.pool_size, task.num_classes, config.size_count, config.smallest
        )
    return plan.GridPlan.make(task, sizes, config.seeds)


def part_name(task: str, model: str, keys: list[str]) -> str:
    """Name of the part holding cells ``keys`` of a grid (the same cells give the same name)."""
    digest = hashlib.sha256("".join(sorted(keys)).encode()).hexdigest()[:10]
    return f"{task}__{model}__{digest}"


def cell_key(task, spec, n_train: int, seed: int) -> str:
    """Content key of a cell: task and data checksum, model and hyperparameters, size, seed and
    code version. Argument order, suite names and run directories do not enter it."""
    return grid_cell_keys(task, spec, [(n_train, seed)])[(int(n_train), int(seed))]


def grid_cell_keys(task, spec, pairs) -> dict[tuple[int, int], str]:
    """``cell_key`` of every (n_train, seed) of ``pairs``; the grid's part of the content
    (the model's configuration: an ``inspect.signature`` per call) computed once."""
    config, version = spec.config_json(), code_version()
    out = {}
    for n_train, seed in pairs:
        content = [task.name, task.checksum, spec.name, config, int(n_train), int(seed), version]
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()
        out[(int(n_train), int(seed))] = digest[:24]
    return out


def identity(config: RunConfig, loaded: dict, specs: dict, plans: dict | None = None) -> dict:
    """What a run computes, independent of argument order: the test for resuming a run.

    ``plans``: the ``grid_plan`` of each task of ``loaded`` (by the same names), as ``prepare``
    made them; None makes them here."""
    if plans is None:
        plans = {name: grid_plan(config, task) for name, task in loaded.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
        "tasks": {
            name: {"sha256": loaded[name].checksum, "sizes": list(plans[name].sizes)}
            for name in sorted(loaded)
        },
        "models": sorted(spec.spec for spec in specs.values()),
        "seeds": sorted(config.seeds),
        # The source of user models (plug-ins), only when there are any.
        **({"plugin_sources": sources} if (sources := _plugin_sources(specs)) else {}),
        # Only when on, so that the identity of runs without it is unchanged.
        **({"robustness": dict(sorted(config.ood))} if config.robustness else {}),
    }


def _plugin_sources(specs: dict) -> dict[str, str]:
    return {s.spec: s.source for s in specs.values() if getattr(s, "source", "")}


def _describe_difference(stored: dict, asked: dict) -> str:
    if stored.get("code_version") != asked["code_version"]:
        return (
            f"it was computed by other gdbench code (code version {stored.get('code_version')}, "
            f"this is {asked['code_version']}), so its cells cannot be reused"
        )
    if stored.get("schema_version") != asked["schema_version"]:
        return f"it has result schema {stored.get('schema_version')}, this is {SCHEMA_VERSION}"
    if stored.get("robustness") != asked.get("robustness"):
        return (
            "it was computed "
            + ("with" if stored.get("robustness") is not None else "without")
            + " the robustness step"
            + (f" (OOD sets {stored['robustness']})" if stored.get("robustness") else "")
            + ", asked "
            + ("with" if asked.get("robustness") is not None else "without")
            + (f" (OOD sets {asked['robustness']})" if asked.get("robustness") else "")
        )
    if stored.get("plugin_sources") != asked.get("plugin_sources") and stored.get(
        "models"
    ) == asked.get("models"):
        return "the code of a model of your own changed since it was computed"
    for key in ("tasks", "models", "seeds"):
        if stored.get(key) != asked[key]:
            old, new = stored.get(key), asked[key]
            if key == "tasks" and isinstance(old, dict) and set(old) == set(new):
                return "its tasks have other sizes or data checksums"
            if key == "seeds":
                return f"it holds {len(old or [])} seeds, asked for {len(new)}"
            return f"it holds {key} {','.join(old or [])}, asked for {','.join(new)}"
    return "its configuration differs"


def _device_info() -> dict:
    devices = jax.devices()
    return {
        "device_kind": devices[0].device_kind,
        "device_platform": devices[0].platform,
        "device_count": len(devices),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
    }


def _check_out_dir(out: Path) -> None:
    """Refuse an output path that cannot hold a run (before anything is written)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output path '{out}' exists and is not a directory")
    if out.is_dir() and not store.is_run_dir(out):
        if any(p.name != store.LOCKS_DIR for p in out.iterdir()):
            raise RunDirError(
                f"output directory '{out}' is not empty and is not a gdbench run; "
                "choose another --out"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunDirError(
            f"cannot write to output directory '{out}': {e.strerror or e}; choose another --out"
        ) from None


@dataclasses.dataclass
class PreparedRun:
    """A checked run: its directory, loaded tasks and model specs, the plan of each task's
    grids (``plans``, by the task's name in the configuration: ``grid_plan``) and the wall
    seconds each task took to load (``load_s``, stored on its rows)."""

    config: RunConfig
    out: Path
    tasks: dict
    specs: dict
    plans: dict
    load_s: dict = dataclasses.field(default_factory=dict)

    @property
    def grid_count(self) -> int:
        return len(self.tasks) * len(self.specs)

    def key_of(self, task) -> str:
        """The name ``task`` was given by in the configuration (its spec: the task's own name
        unless a ``?name=`` display name shortened it)."""
        return next((k for k, t in self.tasks.items() if t is task), task.name)


def prepare(config: RunConfig, out: Path, command: str | list[str] | None = None) -> PreparedRun:
    """Check everything a run needs (data, sizes, directory) and create or reopen its
    manifest, before any computation. Safe when several processes prepare the same run.

    ``command``: how the run was asked for, stored as the manifest's ``command`` when it is
    created (the CLI's ``["gdbench", "run", ...]``, or the Python call ``gdbench.run(...)``);
    None: this process's ``sys.argv``.

    Under ``jax.distributed`` with several processes only process 0 writes the manifest; the
    others wait for it (a barrier) and check that it matches."""
    loaded, load_s = {}, {}
    for name in config.tasks:
        t = time.perf_counter()
        loaded[name] = task_registry.load(name)
        load_s[name] = time.perf_counter() - t
    named: dict[str, str] = {}
    for spec_name, task in loaded.items():
        if task.name in named:
            raise task_registry.TaskError(
                f"tasks '{named[task.name]}' and '{spec_name}' are both called '{task.name}' in "
                "this run; give each its own display name (?name=...)"
            )
        named[task.name] = spec_name
    specs = {m: model_registry.get(m) for m in config.models}  # canonical names already
    plans = {}
    for name, task in loaded.items():
        plans[name] = grid_plan(config, task)  # checks the sizes and seeds
        for spec in specs.values():
            if needs_image(spec.cls) and task.image_shape is None:
                raise plan.PlanError(
                    f"model '{spec.spec}' needs an image task (e.g. digits, digits_bin, "
                    f"tfds:mnist); task '{task.name}' has no image shape"
                )
    out = Path(out)
    asked = identity(config, loaded, specs, plans)
    follower = jax.process_count() > 1 and jax.process_index() != 0
    if follower:  # process 0 checks the directory and writes the manifest
        sharding.barrier("gdbench-prepare")
        if not store.is_run_dir(out):
            raise RunDirError(f"process 0 did not create a run in '{out}' (is it shared?)")
    else:
        _check_out_dir(out)
    with store.lock(out, "manifest"):
        if store.is_run_dir(out):
            stored = store.read_manifest(out).get("identity", {})
            if stored != asked:
                raise RunDirError(
                    f"run '{out}' cannot be resumed with these settings: "
                    f"{_describe_difference(stored, asked)}; use another --out"
                )
        else:
            store.write_manifest(
                out,
                {
                    "name": out.name,
                    "command": list(sys.argv) if command is None else command,
                    "identity": asked,
                    "config": config.to_json(),
                    "started_utc": provenance.utc_now(),
                    "finished_utc": None,
                    "provenance": provenance.collect(_device_info()),
                    "tasks": {name: t.metadata() for name, t in loaded.items()},
                    "models": {
                        s.spec: {
                            "paradigm": s.paradigm,
                            "config": json.loads(s.config_json()),
                            "calibration": s.cls.calibration,
                        }
                        for s in specs.values()
                    },
                    "grids": {},
                },
            )
    if jax.process_count() > 1 and not follower:
        sharding.barrier("gdbench-prepare")
    return PreparedRun(config, out, loaded, specs, plans, load_s)


OnGrid = Callable[[str, str, GridTiming | None], None]


def execute(run: PreparedRun, on_grid: OnGrid | None = None) -> Path:
    """Compute every cell of a prepared run that is not stored yet.

    Each (task, model) grid is claimed with a lock while it is computed, so that several
    processes running the same command into the same directory share the work instead of
    repeating it; a grid another process holds is waited for at the end. ``on_grid(task,
    model, timing)`` is called once per grid (``timing`` None when nothing was computed).

    Under ``jax.distributed`` with several processes every process computes its share of each
    grid's cells (``sharding.process_share``), locking only its own share; process 0 marks the
    run finished after every process is done (a barrier).
    """
    processes = jax.process_count()
    suffix = f".p{jax.process_index()}" if processes > 1 else ""
    if processes == 1 or jax.process_index() == 0:
        store.update_manifest(run.out, lambda m: {**m, "finished_utc": None})
    deferred = []
    for task_name, task in run.tasks.items():
        for spec in run.specs.values():
            name = f"grid-{task_name}__{spec.spec}{suffix}"
            with store.lock(run.out, name, blocking=False) as held:
                if held:
                    timing = _compute_missing(run, task, spec, run.plans[task_name])
                    if on_grid:
                        on_grid(task.name, spec.spec, timing)
                    continue
            deferred.append((task_name, task, spec))
    for task_name, task, spec in deferred:
        with store.lock(run.out, f"grid-{task_name}__{spec.spec}{suffix}"):
            timing = _compute_missing(run, task, spec, run.plans[task_name])
        if on_grid:
            on_grid(task.name, spec.spec, timing)
    sharding.barrier("gdbench-execute")
    if processes == 1 or jax.process_index() == 0:
        store.update_manifest(run.out, lambda m: {**m, "finished_utc": provenance.utc_now()})
    return run.out


def _real_examples(task, per_class: int) -> np.ndarray:
    """The first ``per_class`` test examples of every class, ``[C, per_class, D]``."""
    out = np.full((task.num_classes, per_class, task.dim), np.nan, dtype=np.float32)
    for c in range(task.num_classes):
        xs = task.x_test[task.y_test == c][:per_class]
        out[c, : len(xs)] = xs
    return out


def _compute_missing(run: PreparedRun, task, spec, grid: plan.GridPlan) -> GridTiming | None:
    """Compute the cells of the grid (``task``, ``spec``) whose plan is ``grid`` that are not
    stored (or stored as failed) and store them."""
    stored = store.stored_cells(run.out)
    done = set(stored.loc[stored["status"] != "failed", "cell_key"])
    keyed = grid_cell_keys(task, spec, grid.pairs)
    processes = jax.process_count()
    share = set(sharding.process_share(len(keyed))) if processes > 1 else range(len(keyed))
    missing = [
        pair for i, (pair, key) in enumerate(keyed.items()) if i in share and key not in done
    ]
    if not missing:
        return None
    grid = grid.only(missing)
    started = time.perf_counter()
    timing, samples, traces = None, None, None
    try:
        options = grids.GridOptions(
            cell_batch=run.config.cell_batch,
            quality=run.config.quality,
            devices=run.config.devices,
            data_parallel=run.config.data_parallel,
            robustness=run.config.robustness,
            ood=run.config.ood_for(run.key_of(task)),
            steady=run.config.steady_state,
        )
        result = grids.run_cells(task, spec, grid, options)
        rows, timing, samples = result.rows, result.timing, result.samples
        traces = result.traces
    except Exception as error:  # noqa: BLE001 - recorded as failed cells; the sweep goes on
        rows = failed_rows(task, spec, grid, error)
    for row in rows:
        row["cell_key"] = keyed[(row["n_train"], row["seed"])]
        row["load_s"] = run.load_s.get(run.key_of(task), float("nan"))
    keys = [keyed[pair] for pair in missing]
    name = part_name(task.name, spec.spec, keys)
    if processes > 1:
        name += f".p{jax.process_index()}"
    # Samples and traces: only from the computation holding the grid's (largest, first) cell
    # (not from a resumed grid's smaller cells, nor from another process's share).
    first = grid.first_cell
    if samples is not None and (samples["n_train"], samples["seed"]) != first:
        samples = None
    if traces is not None and (traces["n_train"], traces["seeds"][0]) != first:
        traces = None
    path = store.write_grid(run.out, pd.DataFrame(rows), name)
    grid = f"{task.name}__{spec.spec}"
    meta = {
        "task": task.name,
        "model": spec.spec,
        "image_shape": list(task.image_shape) if task.image_shape else None,
        "class_names": list(task.class_names),
    }
    if samples is not None:
        store.write_samples(
            run.out,
            grid,
            samples["x"],
            real=_real_examples(task, engine.SAMPLES_PER_CLASS),
            meta={**meta, "n_train": samples["n_train"], "seed": samples["seed"]},
        )
    if traces is not None:
        store.write_traces(
            run.out,
            grid,
            traces["arrays"],
            meta={**meta, "n_train": traces["n_train"], "seeds": traces["seeds"]},
        )
    # Failed cells now recomputed: drop the parts that held only those failures.
    recomputed = set(keys)
    failed = stored[stored["cell_key"].isin(recomputed)]
    for part in set(failed["part"]) - {path.name}:
        if set(stored.loc[stored["part"] == part, "cell_key"]) <= recomputed:
            store.delete_part(run.out, part)
    record = {
        "task": task.name,
        "model": spec.spec,
        "cells": len(rows),
        "status": "failed" if timing is None else "ok",
        **(dataclasses.asdict(timing) if timing else {}),
        # Wall seconds of the whole grid in this process: compile, runs, measurement, rows and
        # storage (the manifest update that records it aside).
        "wall_s": time.perf_counter() - started,
        "finished_utc": provenance.utc_now(),
    }

    def add_record(m: dict) -> dict:
        m = {**m, "grids": {**m["grids"], path.stem: record}}
        peak = getattr(timing, "device_peak", None)
        if peak:  # the peak FLOP/s that peak_fraction is relative to (bench.env.device_peak)
            m["provenance"] = {**m.get("provenance", {}), "device_peak": peak}
        return m

    store.update_manifest(run.out, add_record)
    return timing
