"""Run a suite: resolve and check the whole plan first, then one grid at a time into the store.

Every (task, model) grid is written as its own Parquet part as soon as it finishes, so a run
that stops keeps every finished grid; running the same configuration into the same directory
again computes only the grids that are missing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import pandas as pd

import models as model_registry
import tasks as task_registry
from bench import engine, plan
from bench.suites import Suite
from results import provenance, store


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
    cell_batch: int = engine.DEFAULT_CELL_BATCH

    def to_json(self) -> dict:
        """The configuration as it is stored in (and read back from) a run's manifest."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def make_config(
    suite: Suite,
    tasks: list[str] | None = None,
    models: list[str] | None = None,
    sizes: list[int] | None = None,
    seeds: int | None = None,
) -> RunConfig:
    """The suite's grid with the given parts overridden. Names are checked here."""
    task_names = tuple(tasks or suite.tasks)
    model_specs = tuple(models or suite.models)
    for t in task_names:
        task_registry.check_name(t)
    for m in model_specs:
        model_registry.get(m)
    n_seeds = suite.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise plan.PlanError(f"--seeds must be at least 1, got {n_seeds}")
    if sizes is not None and any(n < 1 for n in sizes):
        raise plan.PlanError(f"training sizes must be positive, got {min(sizes)}")
    return RunConfig(
        suite=suite.name,
        tasks=task_names,
        models=model_specs,
        seeds=tuple(range(n_seeds)),
        sizes=tuple(sorted(set(sizes))) if sizes else suite.sizes,
        size_count=suite.size_count,
    )


def sizes_for(config: RunConfig, task) -> tuple[int, ...]:
    if config.sizes is not None:
        return config.sizes
    return plan.auto_sizes(task.pool_size, task.num_classes, config.size_count)


def part_name(task: str, model: str) -> str:
    return f"{task}__{model}"


def _device_info() -> dict:
    devices = jax.devices()
    return {
        "device_kind": devices[0].device_kind,
        "device_platform": devices[0].platform,
        "device_count": len(devices),
    }


def _prepare_dir(out: Path, config: RunConfig) -> dict | None:
    """Check ``out`` can take this run; return the existing manifest when resuming."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output path '{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not store.is_run_dir(out):
            raise RunDirError(
                f"output directory '{out}' is not empty and is not a gdbench run; "
                "choose another --out"
            )
        manifest = store.read_manifest(out)
        if manifest.get("config") != config.to_json():
            raise RunDirError(
                f"run '{out}' was made with a different configuration; use another --out "
                "to keep both, or the same flags to resume it"
            )
        return manifest
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output directory '{out}': {e.strerror}") from None
    return None


@dataclasses.dataclass
class PreparedRun:
    """A checked run: its directory, loaded tasks, model specs and manifest."""

    config: RunConfig
    out: Path
    tasks: dict
    specs: dict
    manifest: dict

    @property
    def grid_count(self) -> int:
        return len(self.tasks) * len(self.specs)


def prepare(config: RunConfig, out: Path) -> PreparedRun:
    """Check everything a run needs (directory, data, sizes) before any computation."""
    loaded = {name: task_registry.load(name) for name in config.tasks}
    specs = {m: model_registry.get(m) for m in config.models}
    for task in loaded.values():
        plan.check_sizes(
            sizes_for(config, task), config.seeds, task.pool_size, task.num_classes, task.name
        )
    out = Path(out)
    previous = _prepare_dir(out, config)
    manifest = previous or {
        "name": out.name,
        "config": config.to_json(),
        "started_utc": provenance.utc_now(),
        "provenance": provenance.collect(_device_info()),
        "tasks": {name: t.metadata() for name, t in loaded.items()},
        "models": {
            m: {
                "paradigm": s.paradigm,
                "config": json.loads(s.config_json()),
                "calibration": s.cls.calibration,
            }
            for m, s in specs.items()
        },
        "grids": {},
    }
    return PreparedRun(config, out, loaded, specs, manifest)


def execute(
    run: PreparedRun,
    on_grid: Callable[[str, str, engine.GridTiming | None], None] | None = None,
) -> Path:
    """Compute every grid of a prepared run that is not stored yet.

    ``on_grid(task, model, timing)`` is called after each grid (``timing`` None when the grid
    was already stored), e.g. to advance a progress bar.
    """
    config, out, manifest = run.config, run.out, run.manifest
    manifest["finished_utc"] = None
    store.write_manifest(out, manifest)
    done = {p.stem for p in store.part_paths(out)}
    for task_name, task in run.tasks.items():
        for model, spec in run.specs.items():
            name = part_name(task_name, model)
            if store.safe_name(name) in done:
                if on_grid:
                    on_grid(task_name, model, None)
                continue
            rows, timing = engine.run_grid(
                task, spec, sizes_for(config, task), config.seeds, config.cell_batch
            )
            store.write_grid(out, pd.DataFrame(rows), name)
            manifest["grids"][name] = {
                "task": task_name,
                "model": model,
                "cells": len(rows),
                **dataclasses.asdict(timing),
                "finished_utc": provenance.utc_now(),
            }
            store.write_manifest(out, manifest)
            if on_grid:
                on_grid(task_name, model, timing)
    manifest["finished_utc"] = provenance.utc_now()
    store.write_manifest(out, manifest)
    return out
