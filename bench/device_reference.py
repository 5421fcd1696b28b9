"""Reference runs on an accelerator: ``make reference-device`` (or ``python -m
bench.device_reference``) runs suites on the GPU/TPU this interpreter's JAX sees and records
them beside the CPU reference runs.

For every suite (default: ``quick`` and ``likelihood``), from a cold compilation cache and as a
whole process of its own: ``gdbench run --suite S`` into ``DEST/<device>/S`` (``<device>``: the
device kind as a path name, e.g. ``nvidia-h200``), its report into ``DEST/<device>/S/report``,
and, where the CPU reference run ``DEST/S`` exists, ``gdbench compare`` of the two into
``DEST/<device>/S/compare_cpu.md`` (cells matched on task, model, size and seed; fit, predict
and compile time ratios). ``DEST/<device>/README.md`` then holds one row per suite: wall seconds
of the whole process, grids, cells, the compile seconds of its grid programs and their share of
the wall time, the device and the versions that ran.

It needs no network and no virtual environment: it runs with the interpreter that starts it
(a machine's own JAX build for its accelerator) and the repository on ``PYTHONPATH``, so that a
prepared machine with JAX, Flax and the other packages installed can run it as it is. It
refuses to run on a CPU-only JAX (``--allow-cpu`` runs it anyway: what the tests do).

``--archive DIR`` also packs ``DEST/<device>`` into ``DIR/<device>.tar.gz`` after every suite,
for a machine whose working tree does not outlive the command (unpack it into ``DEST`` here).
A suite already recorded in ``DEST/<device>/timings.json`` is not run again (delete its run
directory to redo it); one whose run directory exists without a record (a call stopped by a
time limit) is resumed, ``gdbench run`` computing only the missing cells, and marked so in the
table. So a second call, with the first call's archive unpacked, completes the set.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from gdbench import cli
from gdbench.results import store
from gdbench.results.provenance import utc_now

DEFAULT_SUITES = ("quick", "likelihood")
DEFAULT_DEST = Path("results/reference")
SUMMARY = "README.md"
SUMMARY_JSON = "timings.json"


def device_slug(device_kind: str, platform: str) -> str:
    """A path name for a device kind: lower case, runs of other characters as one '-'
    (``"NVIDIA H200"`` -> ``nvidia-h200``, ``"TPU v5 lite"`` -> ``tpu-v5-lite``); the platform
    when the kind has no letters or digits."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_kind.lower()).strip("-")
    return slug or platform.lower()


def probe_device() -> dict[str, str]:
    """Platform, device kind and JAX version of the first device, asked of a child process:
    this process never starts JAX's backend, so it holds no accelerator memory while the suites
    run (JAX on a GPU takes most of its memory when it starts)."""
    code = (
        "import json, jax; d = jax.devices()[0]; print(json.dumps({'platform': d.platform, "
        "'device_kind': d.device_kind, 'jax': jax.__version__}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_suite(suite: str, out: Path, extra: list[str], cache: Path) -> float:
    """``gdbench run --suite suite`` into ``out`` as a process of its own, with the compilation
    cache ``cache``; returns its wall seconds. Raises if it fails."""
    cmd = cli.command(
        "run", "--suite", suite, "--out", str(out), "--compile-cache", str(cache),
        "--no-progress", *extra,
    )  # fmt: skip
    print("$ " + shlex.join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def summarize_run(run_dir: Path, wall_s: float, resumed: bool) -> dict[str, Any]:
    """One row of the timings table from a finished run directory's manifest."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    grids = manifest.get("grids", {})
    compile_s = sum(float(g.get("compile_s") or 0.0) for g in grids.values())
    fit_s = sum(
        float(g.get("fit_first_s") or 0.0) + sum(g.get("fit_times_s") or []) for g in grids.values()
    )
    cells = sum(int(g.get("cells") or 0) for g in grids.values())
    ok = sum(int(g.get("cells") or 0) for g in grids.values() if g.get("status") == "ok")
    provenance = manifest.get("provenance", {})
    return {
        "suite": manifest.get("name", run_dir.name),
        "wall_s": round(wall_s, 2),
        "grids": len(grids),
        "cells": cells,
        "cells_ok": ok,
        "compile_s": round(compile_s, 2),
        # A resumed run's grids were partly computed by an earlier process.
        "compile_share": None if resumed or wall_s <= 0 else round(compile_s / wall_s, 4),
        "fit_s": round(fit_s, 2),
        "resumed": resumed,
        "started_utc": manifest.get("started_utc"),
        "finished_utc": manifest.get("finished_utc"),
        "provenance": provenance,
    }


def summary_markdown(device: str, rows: list[dict[str, Any]]) -> str:
    """The ``README.md`` of a device's reference runs: one row per suite."""
    lines = [
        f"# Reference runs on {device}",
        "",
        "Written by `make reference-device` (`bench/device_reference.py`): each suite from a cold "
        "compilation cache, as a whole process (start-up, compilation, the engine's timing "
        "and the scikit-learn references included). `compile` is the sum of the grids' "
        "`compile_s` (tracing, lowering and compiling every grid program); `fit` the grids' "
        "fit runs (the result-producing run, repeated only when under 10 ms). A resumed run's "
        "wall time covers only what it computed then (no share is given for it).",
        "",
        "| suite | wall | grids | cells (ok) | compile | compile share | fit | finished | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = "" if r["compile_share"] is None else f"{100 * r['compile_share']:.0f} %"
        lines.append(
            f"| {r['suite']} | {r['wall_s']:.1f} s | {r['grids']} | {r['cells']} "
            f"({r['cells_ok']}) | {r['compile_s']:.1f} s | {share} | {r['fit_s']:.1f} s | "
            f"{r['finished_utc'] or ''} | {'resumed' if r['resumed'] else ''} |"
        )
    if rows:
        lines += ["", "Versions and device of the first suite:", "", "```"]
        lines.append(json.dumps(rows[0]["provenance"], indent=1, sort_keys=True, default=str))
        lines.append("```")
    return "\n".join(lines) + "\n"


def load_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """The suites already recorded in ``folder`` (its ``timings.json``), by suite name."""
    try:
        data = json.loads((folder / SUMMARY_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return {row["suite"]: row for row in data.get("suites", [])}


def write_rows(folder: Path, device_kind: str, rows: dict[str, dict[str, Any]]) -> None:
    """``timings.json`` and ``README.md`` of ``folder`` from its recorded suites."""
    payload = {"device": device_kind, "written_utc": utc_now(), "suites": list(rows.values())}
    (folder / SUMMARY_JSON).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (folder / SUMMARY).write_text(summary_markdown(device_kind, list(rows.values())))


def archive(folder: Path, into: Path) -> Path:
    """``folder`` packed as ``into/<folder name>.tar.gz`` (``store.atomic_write``: a reader
    never sees half an archive)."""

    def pack(f) -> None:
        with tarfile.open(fileobj=f, mode="w:gz") as tar:
            tar.add(folder, arcname=folder.name)

    into.mkdir(parents=True, exist_ok=True)
    target = into / f"{folder.name}.tar.gz"
    store.atomic_write(target, pack)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gdbench.device_reference",
        description="Run suites on this machine's accelerator into results/reference/<device>/.",
    )
    parser.add_argument("--suites", default=",".join(DEFAULT_SUITES))
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--archive", type=Path, default=None, help="also pack the runs here")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU-only JAX too")
    parser.add_argument(
        "--run-args", default="", help="more flags for every `gdbench run` (quoted, one string)"
    )
    args = parser.parse_args(argv)
    from gdbench.suites import SUITES

    names = [s for s in args.suites.split(",") if s]
    unknown = [s for s in names if s not in SUITES]
    if unknown or not names:
        valid = ", ".join(SUITES)
        print(f"device_reference: unknown suite(s) {unknown}; valid: {valid}", file=sys.stderr)
        return 2
    device = probe_device()
    kind, platform = device["device_kind"], device["platform"]
    if platform == "cpu" and not args.allow_cpu:
        print(
            "device_reference: JAX sees no accelerator here (backend cpu); install JAX for "
            "the GPU/TPU (e.g. jax[cuda12]) or pass --allow-cpu",
            file=sys.stderr,
        )
        return 2
    folder = args.dest / device_slug(kind, platform)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"device: {kind} ({platform}), jax {device['jax']} -> {folder}", flush=True)
    extra = shlex.split(args.run_args)
    recorded = load_rows(folder)
    try:
        for suite in names:
            out = folder / suite
            if suite in recorded and (out / "manifest.json").is_file():
                print(f"{suite}: already recorded in {folder / SUMMARY_JSON}; delete {out} to redo")
                continue
            resumed = (out / "manifest.json").is_file()
            with tempfile.TemporaryDirectory(prefix="gdbench-xla-") as cache:
                wall = run_suite(suite, out, extra, Path(cache))
            subprocess.run(cli.command("report", str(out), "--out", f"{out}/report"), check=True)
            cpu = args.dest / suite
            if (cpu / "manifest.json").is_file():
                cmp = cli.command("compare", str(cpu), str(out), "--out", f"{out}/compare_cpu.md")
                subprocess.run(cmp, check=True)
            recorded[suite] = summarize_run(out, wall, resumed)
            write_rows(folder, kind, recorded)
            if args.archive is not None:
                print(f"packed {archive(folder, args.archive)}", flush=True)
    except subprocess.CalledProcessError as err:
        print(f"device_reference: {shlex.join(err.cmd[1:4])} ... failed (exit {err.returncode})",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
