"""Generated blocks of the documentation: measured figures come from stored files, never typed.

A Markdown page marks a generated block with two HTML comments::

    <!-- gdbench:generated NAME -->
    ... (written by this module) ...
    <!-- gdbench:end NAME -->

``python -m gdbench.reports.docgen FILE...`` rewrites every marked block of the files from the
stored
data; ``--check`` writes nothing and exits 1 when a block differs from what the data give
(``make docs`` writes, ``make test`` checks). Blocks:

- ``reference-runs``: one row per committed reference run (``results/reference/<suite>/``,
  read from its ``manifest.json``): grids, cells (all / ok), wall time from the run's start to
  its end, the compile seconds of its grids and their share of the wall time, the commit it was
  made from (with ``+dirty`` when the tree had uncommitted changes), the device and the date.
- ``benchmarks``: the table of ``results/benchmarks/latest.json`` (``make bench``), with the
  machine, load and command it was made with.
- ``schema-columns``: the columns of a result row, from ``gdbench.results.schema.COLUMNS``.
- ``robustness-ood`` and ``robustness-missing``: the committed ``robustness`` reference run's
  OOD-detection AUROCs and accuracies with features missing, per task and model, at the
  largest training size (mean over its seeds, with the range where the seeds differ).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gdbench.benchmarks.common import fmt_percent

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
BENCHMARKS = ROOT / "results" / "benchmarks" / "latest.json"

_BLOCK = re.compile(
    r"(<!-- gdbench:generated (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- gdbench:end (?P=name) -->)",
    re.DOTALL,
)


def _duration(seconds: float) -> str:
    """``3 min 31 s`` / ``42 s``."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _utc(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


def reference_runs(root: Path = REFERENCE) -> str:
    """The ``reference-runs`` block: a Markdown table of the committed reference runs."""
    rows = []
    for manifest_path in sorted(root.glob("*/manifest.json")):
        m = json.loads(manifest_path.read_text())
        grids = m.get("grids", {}).values()
        cells = sum(int(g.get("cells", 0)) for g in grids)
        ok = sum(int(g.get("cells", 0)) for g in grids if g.get("status") == "ok")
        compile_s = sum(float(g.get("compile_s") or 0.0) for g in grids)
        wall = (_utc(m["finished_utc"]) - _utc(m["started_utc"])).total_seconds()
        prov = m.get("provenance", {})
        commit = str(prov.get("git_commit") or "unknown")[:7]
        if prov.get("git_dirty"):
            commit += "+dirty"
        device = f"{prov.get('device_kind', '?')} x{prov.get('device_count', '?')}"
        suite = m.get("config", {}).get("suite") or manifest_path.parent.name
        share = f"{100 * compile_s / wall:.0f} %" if wall > 0 else "—"
        report = f"results/reference/{manifest_path.parent.name}/report/"
        rows.append(
            f"| `{suite}` (`{report}`) | {len(m.get('grids', {}))} | {cells:,} ({ok:,} ok) "
            f"| {_duration(wall)} | {_duration(compile_s)} ({share}) | `{commit}` | {device} "
            f"| {m['started_utc'][:10]} |"
        )
    header = [
        "| suite (report) | grids | cells | wall time | compile (share) | commit | device | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n"


def _fmt_ratio(line: dict[str, Any]) -> str:
    value = line.get("ratio")
    if value is None or value != value:  # NaN
        return ""
    if line.get("unit") == "%":
        return fmt_percent(value, space=" ")
    return f"{value:.1f}×"


def _fmt_target(line: dict[str, Any]) -> str:
    target = line.get("target")
    if target is None:
        return ""
    if line.get("unit") == "%":
        return f"≥ {100 * target:.0f} %"
    return f"≥ {target:g}×"


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def benchmarks(path: Path = BENCHMARKS) -> str:
    """The ``benchmarks`` block: the latest ``make bench`` table, with where it was measured."""
    data = json.loads(path.read_text())
    machine = data.get("machine", {})
    versions = machine.get("versions", {})
    lines = [
        f"Measured {data.get('started_utc', '?')} on {machine.get('cpu_model', '?')}, "
        f"{machine.get('cores', '?')} cores, {machine.get('memory_gib', '?')} GiB "
        f"(JAX {versions.get('jax', '?')}, scikit-learn {versions.get('scikit-learn', '?')}, "
        f"PyTorch {versions.get('torch', '?')}); load average "
        f"{data.get('load_start', '?')} at the start, {data.get('load_end', '?')} at the end; "
        f"`{data.get('command', '?')}`, {_duration(float(data.get('elapsed_s', 0)))}. "
        "Ratio = baseline time ÷ gdbench time (higher: gdbench faster).",
        "",
        "| benchmark | measurement | gdbench | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for line in data.get("lines", []):
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    line.get("section"),
                    line.get("metric"),
                    line.get("ours"),
                    line.get("baseline"),
                    _fmt_ratio(line),
                    _fmt_target(line),
                    line.get("verdict") or "",
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def schema_columns() -> str:
    """The ``schema-columns`` block: every column of a result row
    (``gdbench.results.schema.COLUMNS``)
    with its type and meaning."""
    from gdbench.results.schema import COLUMNS, SCHEMA_VERSION

    lines = [
        f"Result schema version {SCHEMA_VERSION}; generated from `gdbench.results.schema.COLUMNS`.",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    for name, column in COLUMNS.items():
        lines.append(f"| `{name}` | {column.dtype} | {_cell(column.description)} |")
    return "\n".join(lines) + "\n"


def _run_stamp(run: Path) -> tuple:
    """What identifies the stored state of a run directory: the name, size and modification
    time of its manifest and of each of its row parts."""
    from gdbench.results import store

    files = [run / "manifest.json", *store.part_paths(run)]
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())


@functools.lru_cache(maxsize=4)
def _load_run(run: Path, stamp: tuple):
    """The rows of the run in ``run`` as ``stamp`` (``_run_stamp``) found it: loaded once for
    all the blocks that read it (a run written again has another stamp and is read again).
    Callers must not modify the frame."""
    from gdbench.results import store

    return store.load(run)


def _robustness_rows(root: Path = REFERENCE):
    """The ``robustness`` reference run's ok rows at each task's largest training size, and a
    sentence saying which run and size they are."""
    run = (root / "robustness").resolve()
    rows = _load_run(run, _run_stamp(run))
    rows = rows[rows.status == "ok"]
    largest = rows.groupby("task").n_train.transform("max")
    rows = rows[rows.n_train == largest]
    seeds = rows.groupby(["task", "model"]).seed.nunique().max()
    sizes = ", ".join(f"`{t}` n = {n:,}" for t, n in rows.groupby("task").n_train.max().items())
    source = (
        f"From the committed `robustness` reference run (`results/reference/robustness/`), at "
        f"the largest training size ({sizes}), mean over {seeds} seeds (range where they differ)."
    )
    return rows, source


def _mean_range(values) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    low, high, mean = values.min(), values.max(), values.mean()
    if high - low < 5e-4:
        return f"{mean:.3f}"
    return f"{mean:.3f} ({low:.3f}–{high:.3f})"


def robustness_ood(root: Path = REFERENCE) -> str:
    """The ``robustness-ood`` block: AUROC of log p(x) and of max-softmax per task, OOD set and
    model (the rows' ``ood_auroc_logpx``, ``ood_auroc_msp``)."""
    rows, source = _robustness_rows(root)
    rows = rows[rows.ood_task.fillna("") != ""]
    lines = [
        source,
        "",
        "| task | OOD set | model | AUROC, log p(x) | AUROC, max-softmax |",
        "|---|---|---|---|---|",
    ]
    for (task, ood, model), group in rows.groupby(["task", "ood_task", "model"], sort=True):
        lines.append(
            f"| `{task}` | `{ood}` | `{model}` | {_mean_range(group.ood_auroc_logpx)} "
            f"| {_mean_range(group.ood_auroc_msp)} |"
        )
    return "\n".join(lines) + "\n"


def robustness_missing(root: Path = REFERENCE) -> str:
    """The ``robustness-missing`` block: test accuracy with every feature and with 25, 50 and
    75 % of them missing, per task and model, with how the model handled them."""
    rows, source = _robustness_rows(root)
    rows = rows[rows.missing_method.fillna("") != ""]
    lines = [
        source,
        "",
        "| task | model | method | all features | 25 % missing | 50 % missing | 75 % missing |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, model), group in rows.groupby(["task", "model"], sort=True):
        method = "/".join(sorted(set(group.missing_method)))
        cells = " | ".join(
            _mean_range(group[c]) for c in ("accuracy", "acc_miss25", "acc_miss50", "acc_miss75")
        )
        lines.append(f"| `{task}` | `{model}` | {method} | {cells} |")
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "reference-runs": reference_runs,
    "benchmarks": benchmarks,
    "schema-columns": schema_columns,
    "robustness-ood": robustness_ood,
    "robustness-missing": robustness_missing,
}


def render(text: str, blocks: dict[str, Callable[[], str]] | None = None) -> str:
    """``text`` with every marked block's body replaced by its generated content. An unknown
    block name raises ``KeyError`` naming the valid ones."""
    blocks = BLOCKS if blocks is None else blocks
    cache: dict[str, str] = {}

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in blocks:
            raise KeyError(f"unknown generated block {name!r}; valid: {', '.join(blocks)}")
        if name not in cache:
            cache[name] = blocks[name]()
        return f"{match.group(1)}{cache[name]}{match.group(4)}"

    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdbench.reports.docgen", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a block is stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(str(path))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("generated blocks out of date (run: make docs): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
