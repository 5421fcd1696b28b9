"""The Python API: ``gdbench.run``, ``load``, ``report``, ``compare``, ``reproduce``.

Example (a model of your own against two baselines, on arrays of your own)::

    import numpy as np
    import gdbench

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    task = gdbench.Task.from_arrays("toy", x, y)
    rows = gdbench.run(tasks=[task, "breast_cancer"], models=["gnb", "logreg"],
                       sizes=[10, 40, 160], seeds=5, out="runs/toy")
    print(rows.groupby(["task", "model", "n_train"]).accuracy.mean())
    gdbench.report("runs/toy")            # runs/toy/report/index.html

The command line is a thin layer over these functions; they take the same names and specs
(``gdbench list``), and also objects: a model class (see ``gdbench.Model``) or a ``Task``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

#: ``compile_cache`` argument of ``run`` meaning the default directory (see ``--compile-cache``).
DEFAULT = "default"


def _names(items, register) -> list[str] | None:
    if items is None:
        return None
    if isinstance(items, str | type) or not isinstance(items, Sequence):
        items = [items]
    return [item if isinstance(item, str) else register(item) for item in items]


def run(
    tasks: Sequence[Any] | None = None,
    models: Sequence[Any] | None = None,
    sizes: Sequence[int] | None = None,
    seeds: int | None = None,
    *,
    suite: str = "quick",
    out: str | Path | None = None,
    quality: bool | None = None,
    robustness: bool | None = None,
    ood: str | None = None,
    devices: int | None = None,
    data_parallel: int = 1,
    steady_state: bool = False,
    compile_cache: str | Path | None = DEFAULT,
    on_grid: Callable[[str, str, Any], None] | None = None,
) -> pandas.DataFrame:
    """Run a grid and return its rows (one per cell) as a pandas DataFrame.

    Args:
      tasks: task names or specs (``breast_cancer``, ``csv:my.csv``, ``file.py:make_task``) or
        ``Task`` objects; None: the suite's.
      models: model names or specs (``logreg?C=1e4``, ``sk:SVC``, ``my.py:MyModel?k=v``) or
        model classes; None: the suite's.
      sizes: training sizes; None: the suite's (log-spaced up to each task's pool).
      seeds: number of seeds (0..seeds-1); None: the suite's.
      suite: the suite whose settings fill what is not given (``gdbench list suites``).
      out: the run directory (default ``runs/<suite>``); an existing run of the same settings
        is resumed (only missing cells are computed).
      quality: score the samples of models that sample (None: the suite's setting).
      robustness: compute the robustness columns (None: the suite's setting).
      ood: the OOD set of every task (implies robustness), as ``--ood``.
      devices: local devices the cells are split over (None: all).
      data_parallel: devices each cell's examples are split over.
      steady_state: time steady-state repeats instead of the result-producing run.
      compile_cache: directory of the compilation cache, ``"default"`` for the CLI's default,
        None for none.
      on_grid: called as ``on_grid(task, model, timing)`` after each grid (timing None when
        the grid was already stored).

    Returns:
      Every stored row of the run directory (``gdbench.load(out)``).
    """
    from gdbench.results import store

    call = _call(
        run,
        tasks=tasks,
        models=models,
        sizes=sizes,
        seeds=seeds,
        suite=suite,
        out=out,
        quality=quality,
        robustness=robustness,
        ood=ood,
        devices=devices,
        data_parallel=data_parallel,
        steady_state=steady_state,
        compile_cache=compile_cache,
    )
    out = execute(
        tasks,
        models,
        sizes,
        seeds,
        suite=suite,
        out=out,
        quality=quality,
        robustness=robustness,
        ood=ood,
        devices=devices,
        data_parallel=data_parallel,
        steady_state=steady_state,
        compile_cache=compile_cache,
        on_start=(lambda count: on_grid) if on_grid is not None else None,
        command=call,
    )
    return store.load(out)


def _call(function: Callable, **arguments: Any) -> str:
    """The Python call ``gdbench.<function>(...)`` with the arguments that differ from their
    defaults, as the run's manifest records it: a model class by its qualified name, other
    objects (a ``Task``) by their ``repr``."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()}

    def show(value: Any) -> str:
        if isinstance(value, Path):
            return repr(str(value))
        if isinstance(value, type):
            return f"{value.__module__}.{value.__qualname__}"
        if isinstance(value, list | tuple):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return repr(value)

    shown = [
        f"{name}={show(value)}"
        for name, value in arguments.items()
        if not (name in defaults and _same(value, defaults[name]))
    ]
    return f"gdbench.{function.__name__}({', '.join(shown)})"


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or value == default)
    except Exception:  # noqa: BLE001 - e.g. an array compared element-wise: not a default
        return False


def execute(
    tasks: Sequence[Any] | None = None,
    models: Sequence[Any] | None = None,
    sizes: Sequence[int] | None = None,
    seeds: int | None = None,
    *,
    suite: str = "quick",
    out: str | Path | None = None,
    quality: bool | None = None,
    robustness: bool | None = None,
    ood: str | None = None,
    devices: int | None = None,
    data_parallel: int = 1,
    steady_state: bool = False,
    compile_cache: str | Path | None = DEFAULT,
    on_start: Callable[[int], Callable[[str, str, Any], None] | None] | None = None,
    command: str | list[str] | None = None,
) -> Path:
    """``run`` without loading the rows: computes (or resumes) the grid and returns the run
    directory. ``on_start(grid_count)`` is called once the run is prepared and may return the
    ``on_grid`` callback (the CLI's progress). ``command``: how the run was asked for, kept
    in a new run's manifest (``command``; default: ``sys.argv``)."""
    from gdbench import compile_cache as cache
    from gdbench import plugins, runner, sharding, suites

    cache.enable(cache.default_dir() if compile_cache == DEFAULT else compile_cache)
    chosen = suites.get(suite)
    config = runner.make_config(
        chosen,
        _names(tasks, plugins.register_task),
        _names(models, plugins.register_model_class),
        list(sizes) if sizes is not None else None,
        seeds,
        quality=quality,
        devices=devices,
        data_parallel=data_parallel,
        robustness=robustness,
        ood=ood,
        steady_state=steady_state,
    )
    sharding.make_mesh(devices, data_parallel)
    out = Path(out) if out is not None else Path("runs") / chosen.name
    prepared = runner.prepare(config, out, command)
    on_grid = on_start(prepared.grid_count) if on_start is not None else None
    runner.execute(prepared, on_grid)
    return out


def load(run_dirs: str | Path | Sequence[str | Path]) -> pandas.DataFrame:
    """The rows of one or several run directories as one DataFrame (a ``run`` column names the
    run when there are several); only data formats are read (Parquet, JSON)."""
    from gdbench.results import store

    return store.load(run_dirs)


def report(run_dirs: str | Path | Sequence[str | Path], out: str | Path | None = None):
    """Write the report of one or several runs (default ``<first run>/report``); returns
    ``{relative file name: path}`` of what was written (``index.html``, ``report.md``, ...)."""
    from gdbench.reports import build_report

    first = run_dirs if isinstance(run_dirs, str | Path) else run_dirs[0]
    return build_report(run_dirs, Path(out) if out is not None else Path(first) / "report")


class NoSharedCellsWarning(UserWarning):
    """``gdbench.compare`` of two runs that have no cell (task, model, n_train, seed) in
    common: nothing is compared, only listed."""


def compare(run_a: str | Path, run_b: str | Path, metrics: Sequence[str] | None = None):
    """Two runs side by side on the cells they share (``gdbench.reports.compare.RunComparison``;
    ``compare_markdown`` renders it as the CLI prints it), with the runs' configuration
    differences from their manifests (``RunComparison.differences``).

    Raises ``ValueError`` (one line) when a run has no result rows or a metric is unknown;
    warns (``NoSharedCellsWarning``) when the runs share no cell."""
    from gdbench.reports import compare as cmp
    from gdbench.results import store

    frames = []
    for run_dir in (run_a, run_b):
        rows = store.load(run_dir)
        if rows.empty:
            raise ValueError(f"no result rows in {run_dir}: no grid of it has finished yet")
        frames.append(rows)
    names = tuple(Path(p).absolute().name for p in (run_a, run_b))
    if names[0] == names[1]:
        names = (str(run_a), str(run_b))
    result = cmp.compare_runs(
        *frames, metrics=tuple(metrics) if metrics else cmp.QUALITY_METRICS, names=names
    )
    manifests = [store.read_manifest(run_dir) for run_dir in (run_a, run_b)]
    result.differences = tuple(cmp.manifest_differences(*manifests))
    if len(frames[0]) == len(result.only_a):  # every cell of A is A's alone
        warnings.warn(
            f"{names[0]} and {names[1]} share no cell (task, model, n_train, seed); nothing "
            "is compared, only listed (see Configuration differences)",
            NoSharedCellsWarning,
            stacklevel=2,
        )
    return result


class ReproduceError(ValueError):
    """A stored run that cannot be made again as asked (one-line message)."""


def reproduce(
    run_dir: str | Path,
    out: str | Path,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    *,
    compile_cache: str | Path | None = DEFAULT,
    on_start: Callable[[int], Callable[[str, str, Any], None] | None] | None = None,
    command: str | list[str] | None = None,
):
    """Run a stored run again from its manifest into ``out`` and compare the numbers.

    The rerun has the stored run's configuration (tasks, models with their hyperparameters,
    training sizes, seeds, sample-quality and robustness options, cell batch), limited to
    ``tasks`` and ``models`` when given (names as the stored run spells them, ``gdbench
    list``-style specs for models); its cells are spread over this machine's devices. Its rows
    are then compared with the stored ones cell by cell, every headline metric to the
    precision the report prints it with (``gdbench.reports.reproduce``).

    Returns a ``gdbench.reports.reproduce.Reproduction``: ``summary`` (one row per (task,
    model)), ``cells``, ``notes`` (e.g. that the code version, a library version, a data
    checksum or the device differs from the stored run's), ``all_match`` and ``text()`` (what
    ``gdbench reproduce`` prints).
    """
    import dataclasses

    from gdbench import compile_cache as cache
    from gdbench import models as model_registry
    from gdbench import plugins, runner, sharding
    from gdbench.reports import reproduce as rep
    from gdbench.results import store

    run_dir, out = Path(run_dir), Path(out)
    manifest = store.read_manifest(run_dir)
    if out.resolve() == run_dir.resolve():
        raise ReproduceError(f"--out '{out}' is the stored run itself; give a new directory")
    stored_config = manifest.get("config")
    if not isinstance(stored_config, dict) or not stored_config.get("tasks"):
        raise ReproduceError(f"the manifest of {run_dir} holds no run configuration")
    fields = {f.name for f in dataclasses.fields(runner.RunConfig)}
    values = {k: v for k, v in stored_config.items() if k in fields}
    for key in ("tasks", "models", "seeds", "sizes"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    for key in ("pairs", "ood"):
        values[key] = tuple(tuple(p) for p in values.get(key) or ())
    # This machine's devices: the numbers do not depend on the split beyond float round-off.
    values.update(devices=None, data_parallel=1)
    config = runner.RunConfig(**values)

    def pick(asked, stored: tuple[str, ...], what: str, canonical) -> tuple[str, ...]:
        if asked is None:
            return stored
        chosen = []
        for name in asked:
            spelled = canonical(name)
            if spelled not in stored:
                raise ReproduceError(
                    f"{what} '{name}' is not in run {run_dir}; it has {', '.join(stored)}"
                )
            chosen.append(spelled)
        return tuple(dict.fromkeys(chosen))

    def canonical_model(name: str) -> str:
        try:
            return model_registry.get(plugins.resolve_model(name)).spec
        except Exception:  # noqa: BLE001 - not resolvable here: compared as written
            return name

    config = dataclasses.replace(
        config,
        tasks=pick(tasks, config.tasks, "task", str),
        models=pick(models, config.models, "model", canonical_model),
    )
    config = dataclasses.replace(
        config,
        pairs=tuple(p for p in config.pairs if p[0] in config.models and p[1] in config.models),
        ood=tuple(p for p in config.ood if p[0] in config.tasks),
    )
    cache.enable(cache.default_dir() if compile_cache == DEFAULT else compile_cache)
    sharding.make_mesh(None, 1)
    prepared = runner.prepare(
        config,
        out,
        command
        if command is not None
        else _call(reproduce, run_dir=run_dir, out=out, tasks=tasks, models=models),
    )
    on_grid = on_start(prepared.grid_count) if on_start is not None else None
    runner.execute(prepared, on_grid)

    stored_rows = store.load(run_dir)
    stored_rows = stored_rows[
        stored_rows["task"].isin(config.tasks) & stored_rows["model"].isin(config.models)
    ]
    summary, cells = rep.compare_rows(stored_rows, store.load(out))
    return rep.Reproduction(
        summary=summary,
        cells=cells,
        notes=_differences(manifest, store.read_manifest(out), config.tasks),
        stored_run=str(run_dir),
        new_run=str(out),
    )


def _differences(old: dict, new: dict, tasks: Sequence[str]) -> list[str]:
    """What differs between a stored run's code, libraries, data and device and its rerun's."""
    from gdbench.results.store import manifest_value

    notes = []
    old_id, new_id = old.get("identity") or {}, new.get("identity") or {}

    def code(m: dict) -> str:
        commit = manifest_value(m, "git_commit")
        dirty = " with uncommitted changes" if manifest_value(m, "git_dirty") else ""
        return (
            f"gdbench {manifest_value(m, 'gdbench_version') or '?'}, "
            f"commit {commit[:10] if commit else 'unknown'}{dirty}"
        )

    if old_id.get("code_version") != new_id.get("code_version"):
        notes.append(
            f"the code differs from the stored run's: code version "
            f"{old_id.get('code_version')} ({code(old)}) was stored, this rerun has "
            f"{new_id.get('code_version')} ({code(new)})"
        )
    elif manifest_value(old, "git_commit") != manifest_value(new, "git_commit"):
        notes.append(f"same code version, other commit: stored {code(old)}, rerun {code(new)}")
    old_v = manifest_value(old, "versions") or {}
    new_v = manifest_value(new, "versions") or {}
    changed = [
        f"{k} {old_v.get(k)} -> {new_v.get(k)}"
        for k in sorted(set(old_v) | set(new_v))
        if old_v.get(k) != new_v.get(k)
    ]
    if changed:
        notes.append("library versions differ: " + ", ".join(changed))
    for task in tasks:
        a = (old_id.get("tasks") or {}).get(task) or {}
        b = (new_id.get("tasks") or {}).get(task) or {}
        if a.get("sha256") != b.get("sha256"):
            notes.append(f"task {task}: its data differ from the stored run's (checksum)")
        if a.get("sizes") != b.get("sizes"):
            notes.append(
                f"task {task}: training sizes {a.get('sizes')} stored, {b.get('sizes')} now"
            )
    devices = [
        f"{manifest_value(m, 'device_kind')} x {manifest_value(m, 'device_count')}"
        for m in (old, new)
    ]
    if devices[0] != devices[1]:
        notes.append(f"other device: stored on {devices[0]}, rerun on {devices[1]}")
    return notes
