"""The ``gdbench`` command line.

Heavy libraries (JAX, pandas, seaborn) are imported inside the command that needs them, so
``gdbench --help`` and ``gdbench list`` answer at once. Every expected failure (a bad name, an
impossible size, an unusable directory) prints one line, ``gdbench: error: ...``, and exits
with status 2; nothing already stored is touched.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import textwrap
import warnings
from pathlib import Path

EXIT_USAGE = 2


def command(*args: str) -> list[str]:
    """The command line of ``gdbench ARGS`` run by this interpreter, for running gdbench as a
    process of its own: its environment's installed gdbench, or this source tree through
    ``bench/source_tree.py`` when that is how this process found gdbench."""
    from gdbench import source_tree

    # The finder may be this module's class or that of bench/source_tree.py run as __main__.
    finders = {
        (getattr(f, "__module__", None), getattr(f, "__qualname__", None)) for f in sys.meta_path
    }
    if finders & {(m, "SourceFinder") for m in ("__main__", source_tree.__name__)}:
        return [sys.executable, str(Path(source_tree.__file__)), "-m", "gdbench.cli", *args]
    return [sys.executable, "-m", "gdbench.cli", *args]


class UsageError(ValueError):
    """A bad command-line value (one-line message)."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of integers, e.g. 10,20,40"
        ) from None


def _seed_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a number of seeds (an integer, e.g. 5: seeds 0..4)"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``gdbench: error: ...`` (naming the
    command's ``--help``), with exit status 2, as every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"gdbench: error: {message}; see {self.prog} --help\n")


TASKS_HELP = (
    "comma-separated tasks (override): a name of gdbench list tasks, csv:table.csv?target=y, "
    "npz:arrays.npz, tfds:mnist, path/to/file.py:function or package.module:function; csv:, "
    "npz: and tfds: tasks take a short display name for rows, figures and progress: "
    "csv:table.csv?target=y&name=bc"
)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gdbench",
        description="Benchmark discriminative vs generative classifiers (JAX).",
        epilog="A first run: gdbench list, then gdbench run (the quick suite, a few minutes on a "
        "CPU), then the report command it prints. gdbench COMMAND --help for each command.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list tasks, models or suites")
    ls.add_argument("what", nargs="?", choices=["tasks", "models", "suites"], default=None)

    run = sub.add_parser("run", help="run a suite (or a grid given by flags) into a run directory")
    run.add_argument("--suite", default="quick", help="suite name (default: quick)")
    run.add_argument("--tasks", type=_csv, help=TASKS_HELP)
    run.add_argument(
        "--models", type=_csv, help="comma-separated model specs, e.g. logreg?C=1e4,gnb"
    )
    run.add_argument("--sizes", type=_int_list, help="training sizes, e.g. 10,20,40 (override)")
    run.add_argument("--seeds", type=_seed_count, help="number of seeds, 0..N-1 (override)")
    run.add_argument("--out", type=Path, help="run directory (default: runs/<suite>)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (also the default when its configuration matches)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: a progress bar on a terminal; when stderr is not a "
        "terminal, e.g. a log file, one line per finished grid)",
    )
    quality = run.add_mutually_exclusive_group()
    quality.add_argument(
        "--quality",
        action="store_true",
        help="score the samples of models that sample (default: the suite's setting; on in "
        "every suite but ngjordan)",
    )
    quality.add_argument(
        "--no-quality",
        action="store_true",
        help="skip the sample-quality metrics (FD, classifier score, precision/recall, CAS) of "
        "models that sample: two fewer programs to compile per such grid",
    )
    run.add_argument(
        "--steady-state",
        action="store_true",
        help="time each grid's programs by repeated runs after the one whose outputs are the "
        "results (median of up to 5 within 0.5 s; programs over 2 s are not repeated); default: "
        "fit_s and predict_s are the result-producing run's wall seconds after ahead-of-time "
        "compilation (programs under 10 ms: the median of a few repeats)",
    )
    robust = run.add_mutually_exclusive_group()
    robust.add_argument(
        "--robustness",
        action="store_true",
        help="also measure OOD detection (AUROC of log p(x) and of max-softmax) and accuracy "
        "with 25/50/75%% of the features missing, on the largest size's cells (default: the "
        "suite's setting; on in the robustness and images suites)",
    )
    robust.add_argument(
        "--no-robustness", action="store_true", help="do not, whatever the suite says"
    )
    run.add_argument(
        "--ood",
        metavar="SET",
        help="the OOD set of every task (implies --robustness): a transform of the task's own "
        "test set (contrast0.3, blur, noise, permute, flip) or a task of the same shape "
        "(tfds:mnist); default: each task's pairing (digits -> digits:contrast0.3, "
        "tfds:fashion_mnist -> tfds:mnist, ...)",
    )
    run.add_argument(
        "--devices",
        type=_positive_int,
        metavar="N",
        help="split each grid's cells over the first N local devices (default: all; 1: no "
        "sharding); the numbers do not depend on it",
    )
    run.add_argument(
        "--data-parallel",
        type=_positive_int,
        default=1,
        metavar="K",
        help="split each cell's examples over K devices as well (the devices form a "
        "cells x K mesh; K must divide them); default 1: whole cells per device",
    )
    run.add_argument(
        "--distributed",
        action="store_true",
        help="join a jax.distributed cluster (auto-detected on TPU pods, SLURM, ...; or set by "
        "--coordinator/--num-processes/--process-id): every process runs the same command "
        "into the same shared --out and computes its share of every grid's cells",
    )
    run.add_argument("--coordinator", metavar="HOST:PORT", help="jax.distributed coordinator")
    run.add_argument("--num-processes", type=_positive_int, metavar="N", help="processes in all")
    run.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        type=Path,
        metavar="DIR",
        help="persistent XLA compilation cache (default: $GDBENCH_COMPILE_CACHE, else "
        "~/.cache/gdbench/xla)",
    )
    cache.add_argument(
        "--no-compile-cache", action="store_true", help="compile every program afresh"
    )

    rep = sub.add_parser("report", help="write a report (Markdown, CSV, figures) of runs")
    rep.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    rep.add_argument("--out", type=Path, help="report directory (default: RUN_DIR/report)")
    rep.add_argument(
        "--display-names",
        type=Path,
        metavar="FILE",
        help="JSON or TOML file of display names for the LaTeX tables and paper figures "
        '({"models": {...}, "tasks": {...}, "paradigms": {...}}; see docs/reports.md)',
    )

    cmp = sub.add_parser(
        "compare", help="compare two runs cell by cell (paired over seeds) and their timings"
    )
    cmp.add_argument("run_a", type=Path, metavar="RUN_A")
    cmp.add_argument("run_b", type=Path, metavar="RUN_B")
    cmp.add_argument("--out", type=Path, help="write the Markdown report to this file")
    cmp.add_argument(
        "--metrics",
        type=_csv,
        help="comma-separated quality metrics (default: accuracy,nll,ece,brier,log_lik,"
        "bits_per_dim)",
    )

    repro = sub.add_parser(
        "reproduce",
        help="run a stored run again from its manifest into --out and compare the numbers "
        "(exit status 0 when every metric matches to the report's precision, 1 otherwise)",
    )
    repro.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    repro.add_argument("--tasks", type=_csv, help="only these tasks of the stored run")
    repro.add_argument("--models", type=_csv, help="only these models of the stored run")
    repro.add_argument("--out", type=Path, required=True, help="directory of the new run")
    repro.add_argument("--no-progress", action="store_true", help="no progress bar")
    repro.add_argument(
        "--no-compile-cache", action="store_true", help="compile every program afresh"
    )

    sub.add_parser("env", help="devices, versions and a measured matmul peak")

    prep = sub.add_parser(
        "prepare",
        help="download and prepare TFDS datasets for tfds:<name> tasks (needs network access "
        "and tensorflow)",
    )
    prep.add_argument("names", nargs="+", metavar="TASK", help="tfds:<name>, e.g. tfds:mnist")
    prep.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="TFDS data directory (default: the one gdbench reads: $GDBENCH_TFDS_DIR, else "
        "$TFDS_DATA_DIR, else ~/tensorflow_datasets)",
    )
    return p


#: Task families named by a pattern rather than listed by name: (pattern, example, what).
TASK_FAMILIES = (
    (
        "csv:<path>[?target=<column>][&name=<short>]",
        "csv:data/table.csv?target=label&name=table",
        "a CSV table of your own: numeric feature columns; the target is the named column, else "
        "the first called label, target, class or y, else the last",
    ),
    (
        "npz:<path>[?name=<short>]",
        "npz:arrays.npz",
        "arrays of your own: x_train, y_train[, x_test, y_test] (read without pickles)",
    ),
    (
        "tfds:<name>[?binarize=<t>|?dequantize=0][&name=<short>]",
        "tfds:mnist",
        "a TensorFlow Datasets image dataset, prepared once by gdbench prepare tfds:<name>",
    ),
    (
        "<path>.py:<function>",
        "my_tasks.py:make_task",
        "a function of your own that returns a gdbench.Task (naming it runs its code)",
    ),
    (
        "<package.module>:<function>",
        "mypkg.tasks:make_task",
        "the same, from an importable module",
    ),
    (
        "<entry point name>",
        "my_task",
        "an installed package's entry point in the group gdbench.tasks",
    ),
)


def _width() -> int:
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _entry(name: str, text: str, indent: int) -> str:
    """``  name  text`` with ``text`` wrapped to the terminal (at most 100 columns) under
    itself, or under the name's next line when the name is longer than the indent."""
    head = f"  {name:<{indent - 3}} "
    pad = " " * indent
    width = max(_width(), indent + 30)
    first = ""
    if len(head) > indent:
        first, head = f"  {name}\n", pad
    return first + textwrap.fill(
        text, width, initial_indent=head, subsequent_indent=pad, break_on_hyphens=False
    )


def _cmd_list(args) -> int:
    import gdbench.models.registry as mreg
    import gdbench.tasks.registry as treg
    from gdbench import suites

    if args.what in (None, "tasks"):
        print("tasks:")
        for name in treg.names():
            print(_entry(name, treg.describe(name), 18))
        print("task families (--tasks takes these as well):")
        for pattern, example, what in TASK_FAMILIES:
            print(_entry(pattern, f"{what}; e.g. {example}", 18))
    if args.what in (None, "models"):
        print("models:")
        width = max(15, *(len(name) for name in mreg.names()))
        for name in mreg.names():
            paradigm = mreg.paradigm_of(name)
            print(_entry(f"{name:<{width}} {paradigm}", mreg.describe(name), width + 19))
    if args.what in (None, "suites"):
        print("suites:")
        for s in suites.SUITES.values():
            print(_entry(s.name, s.doc, 18))
            print()
    return 0


def _cmd_run(args) -> int:
    from gdbench import sharding

    explicit = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed or any(v is not None for v in explicit):
        if any(v is not None for v in explicit) and None in explicit:
            raise UsageError("--coordinator, --num-processes and --process-id go together")
        # Before anything else starts JAX's backends.
        sharding.initialize_distributed(sharding.Distributed(*explicit))
        try:
            return _run_grids(args)
        except BaseException as e:  # noqa: BLE001 - reported, then this process ends at once
            # The other processes would wait for this one at the coordinator's shutdown
            # barrier; ending now lets the coordinator see it gone.
            if isinstance(e, _expected_errors()):
                print(f"gdbench: error: {e}", file=sys.stderr)
            else:
                import traceback

                traceback.print_exc()
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(EXIT_USAGE if isinstance(e, _expected_errors()) else 1)
    return _run_grids(args)


def _run_grids(args) -> int:
    """``gdbench run``: a thin layer over ``gdbench.api.execute`` (progress bar, messages)."""
    import time

    from gdbench import api, compile_cache, sharding, suites

    try:
        sharding.make_mesh(args.devices, args.data_parallel)
    except ValueError as e:  # more devices than this process has; K does not divide them
        raise UsageError(str(e)) from None
    out = args.out or Path("runs") / suites.get(args.suite).name
    if args.resume and not (out / "manifest.json").is_file():
        raise UsageError(f"--resume: '{out}' holds no gdbench run to resume")
    bars = []
    # A bar redrawn with carriage returns on a terminal; in a log (stderr not a terminal) one
    # plain line per finished grid instead.
    as_lines = not args.no_progress and not _is_terminal(sys.stderr)

    def start(count: int):
        if args.no_progress:
            return None
        if as_lines:
            done = [0]

            def log_grid(task, model, timing):
                done[0] += 1
                print(
                    f"gdbench: grid {done[0]}/{count} {_grid_line(task, model, timing)} "
                    f"({time.perf_counter() - began:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )

            return log_grid
        from tqdm import tqdm

        bar = tqdm(total=count, unit="grid", file=sys.stderr)
        bars.append(bar)

        def on_grid(task, model, timing):
            bar.set_postfix_str(_grid_line(task, model, timing))
            bar.update(1)

        return on_grid

    began = time.perf_counter()
    try:
        api.execute(
            args.tasks,
            args.models,
            args.sizes,
            args.seeds,
            suite=args.suite,
            out=out,
            quality=True if args.quality else (False if args.no_quality else None),
            robustness=True if args.robustness else (False if args.no_robustness else None),
            ood=args.ood,
            devices=args.devices,
            data_parallel=args.data_parallel,
            steady_state=args.steady_state,
            compile_cache=None
            if args.no_compile_cache
            else args.compile_cache or compile_cache.default_dir(),
            on_start=start,
            command=["gdbench", *args.argv],
        )
    finally:
        for bar in bars:
            bar.close()
    cache_dir = compile_cache.directory()
    if cache_dir is not None:
        hits, asked = compile_cache.counts()
        print(f"compile cache {cache_dir}: {hits} of {asked} programs loaded from it")
    ok, total = _cell_counts(out)
    bad = f", {total - ok} not ok (see the report)" if ok < total else ""
    print(
        f"run written to {out}: {total:,} cells, {ok:,} ok{bad}, "
        f"{time.perf_counter() - began:.1f} s; report: gdbench report {out}"
    )
    return 0


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _grid_line(task: str, model: str, timing) -> str:
    if timing is None:
        return f"{task} x {model}: stored"
    return f"{task} x {model}: compile {timing.compile_s:.1f}s fit {timing.fit_s:.2f}s"


def _cell_counts(run_dir: Path) -> tuple[int, int]:
    """(ok cells, all cells) stored in ``run_dir``: the store's own index of stored cells
    (``results.store.stored_cells``, which reads only keys and status, and not again for
    the parts the run already read)."""
    from gdbench.results import store

    cells = store.stored_cells(run_dir).drop_duplicates("cell_key")
    return int((cells["status"] == "ok").sum()), len(cells)


def _cmd_report(args) -> int:
    from gdbench import reports

    out = args.out or args.runs[0] / "report"
    written = reports.build_report(args.runs, out, display_names=args.display_names)
    figures = sum(1 for k in written if k.startswith("figures/") and k.endswith(".png"))
    tables = sum(1 for k in written if k.startswith("tables/"))
    print(
        f"report written to {out}: open {out / 'index.html'} (also report.md, {tables} LaTeX "
        f"tables, {figures} figures as PNG/SVG/PDF, results.csv, references.bib)"
    )
    return 0


def _cmd_compare(args) -> int:
    from gdbench import api
    from gdbench.reports import compare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", api.NoSharedCellsWarning)
        try:
            result = api.compare(args.run_a, args.run_b, args.metrics)
        except (compare.CompareError, ValueError) as e:
            raise UsageError(str(e)) from None
    for warning in caught:
        if issubclass(warning.category, api.NoSharedCellsWarning):
            print(f"gdbench: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    text = compare.compare_markdown(result)
    if args.out is None:
        print(text, end="")
        return 0
    if args.out.is_dir():
        raise UsageError(f"--out '{args.out}' is a directory; give a file name, e.g. compare.md")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write --out '{args.out}': {e.strerror or e}") from None
    print(f"comparison written to {args.out}")
    return 0


def _progress(no_progress: bool, bars: list):
    """The ``on_start`` callback of ``gdbench.api``: a progress bar over grids."""
    from tqdm import tqdm

    def start(count: int):
        bar = tqdm(total=count, unit="grid", disable=no_progress, file=sys.stderr)
        bars.append(bar)

        def on_grid(task, model, timing):
            bar.set_postfix_str(f"{task} x {model}" + (": stored" if timing is None else ""))
            bar.update(1)

        return on_grid

    return start


def _cmd_reproduce(args) -> int:
    """``gdbench reproduce``: a thin layer over ``gdbench.api.reproduce``."""
    from gdbench import api

    bars: list = []
    try:
        result = api.reproduce(
            args.run_dir,
            args.out,
            args.tasks,
            args.models,
            compile_cache=None if args.no_compile_cache else api.DEFAULT,
            on_start=_progress(args.no_progress, bars),
            command=["gdbench", *args.argv],
        )
    finally:
        for bar in bars:
            bar.close()
    print(result.text(), end="")
    return 0 if result.all_match else 1


def _cmd_prepare(args) -> int:
    from gdbench.tasks import tfds_task

    for name in args.names:  # every name is checked before anything is downloaded
        tfds_task.check_prepare(name)
    for name in args.names:
        tfds_task.prepare(name, args.data_dir, echo=print)
    return 0


def _cmd_env(args) -> int:
    from gdbench import env

    print(env.describe())
    return 0


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Error types that mean bad input, not a bug: reported in one line with exit status 2."""
    errors: list[type[BaseException]] = [UsageError, FileNotFoundError, PermissionError]
    for module, names in (
        ("gdbench.tasks.base", ["TaskError"]),
        ("gdbench.models.registry", ["ModelSpecError"]),
        ("gdbench.plan", ["PlanError"]),
        ("gdbench.suites", ["SuiteError"]),
        ("gdbench.runner", ["RunDirError"]),
        ("gdbench.api", ["ReproduceError"]),
        ("gdbench.results", ["NotARunError", "SchemaError", "CorruptPartError"]),
        ("gdbench.reports", ["EmptyRunError"]),
    ):
        mod = sys.modules.get(module)
        errors.extend(getattr(mod, n) for n in names if mod is not None and hasattr(mod, n))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv  # the command line as given, kept in a new run's manifest
    commands = {
        "list": _cmd_list,
        "run": _cmd_run,
        "report": _cmd_report,
        "compare": _cmd_compare,
        "reproduce": _cmd_reproduce,
        "env": _cmd_env,
        "prepare": _cmd_prepare,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        if args.command == "run":
            again = shlex.join(["gdbench", *argv])
            print(
                "gdbench: interrupted; the finished grids are stored and will be skipped. To "
                f"resume, run the same command again: {again}",
                file=sys.stderr,
            )
        else:
            print("gdbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head, less, ... that closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - filtered to expected errors below
        if isinstance(e, _expected_errors()):
            print(f"gdbench: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
