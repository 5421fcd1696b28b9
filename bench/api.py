"""The Python API: ``gdbench.run``, ``load``, ``report``, ``compare``.

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
    )
    return store.load(out)


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
) -> Path:
    """``run`` without loading the rows: computes (or resumes) the grid and returns the run
    directory. ``on_start(grid_count)`` is called once the run is prepared and may return the
    ``on_grid`` callback (the CLI's progress)."""
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
    prepared = runner.prepare(config, out)
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


def compare(run_a: str | Path, run_b: str | Path, metrics: Sequence[str] | None = None):
    """Two runs side by side on the cells they share (``gdbench.reports.compare.RunComparison``;
    ``compare_markdown`` renders it as the CLI prints it)."""
    from gdbench.reports import compare as cmp
    from gdbench.results import store

    names = tuple(Path(p).absolute().name for p in (run_a, run_b))
    if names[0] == names[1]:
        names = (str(run_a), str(run_b))
    return cmp.compare_runs(
        store.load(run_a),
        store.load(run_b),
        metrics=tuple(metrics) if metrics else cmp.QUALITY_METRICS,
        names=names,
    )
