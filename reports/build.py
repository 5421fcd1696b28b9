"""Build a report directory from stored runs: report.md, results.csv and figures.

Works from the run store alone (no JAX, no models, no tasks), so a report can be built on a
laptop from runs made on an accelerator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import results
from reports.figures import learning_curves, sample_grids
from reports.tables import DASH, likelihood_table, markdown_summary
from results import store

REPORT_MD = "report.md"
RESULTS_CSV = "results.csv"


class EmptyRunError(ValueError):
    """The runs given to a report hold no result rows."""


def build_report(
    run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path
) -> dict[str, Path]:
    """Load the rows of `run_dirs` with `results.load` and write a report into `out_dir`.

    Writes out_dir/report.md (runs, provenance from their manifests, tables, links to figures),
    out_dir/results.csv (every row, full precision, with its `run`) and
    out_dir/figures/learning_curve_<task>.{png,svg}. Returns {path relative to out_dir: path}.
    Raises `EmptyRunError` when there are no rows, `results.NotARunError` for a path that is
    not a run.
    """
    run_list = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not run_list:
        raise EmptyRunError("no run directories given")
    df = results.load(run_list)
    if df.empty:
        names = ", ".join(str(p) for p in run_list)
        raise EmptyRunError(
            f"no result rows in {names}: no grid of it has finished yet; run (or resume) it "
            "with gdbench run --out DIR first"
        )
    manifests = {Path(p).absolute().name: results.read_manifest(p) for p in run_list}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = [item for p in run_list for item in store.read_samples(p)]
    figures = learning_curves(df, out) + sample_grids(samples, out)
    written = {str(p.relative_to(out)): p for p in figures}

    csv_path = out / RESULTS_CSV
    df.to_csv(csv_path, index=False)
    written[RESULTS_CSV] = csv_path

    md_path = out / REPORT_MD
    md_path.write_text(_report_markdown(df, manifests, figures, out))
    written[REPORT_MD] = md_path
    return written


def _report_markdown(
    df: pd.DataFrame, manifests: dict[str, dict[str, Any]], figures: list[Path], out: Path
) -> str:
    n_bad = int((df["status"] != "ok").sum())
    runs = ", ".join(f"`{name}`" for name in manifests)
    lines = [
        "# gdbench report",
        "",
        f"Runs: {runs}. {len(df)} cells, {n_bad} not ok. All rows: [{RESULTS_CSV}]({RESULTS_CSV}).",
        "",
        "## Provenance",
        "",
        *_provenance_table(manifests),
        "",
        *_models_table(manifests),
        likelihood_table(df),
        markdown_summary(df).rstrip(),
        "",
        "## Figures",
        "",
    ]
    for png in (p for p in figures if p.suffix == ".png"):
        rel_png = png.relative_to(out).as_posix()
        rel_svg = png.with_suffix(".svg").relative_to(out).as_posix()
        lines += [f"![{png.stem}]({rel_png})", "", f"[{png.stem} (SVG)]({rel_svg})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _provenance_table(manifests: dict[str, dict[str, Any]]) -> list[str]:
    header = "| run | gdbench | git commit | jax | device | started (UTC) | finished (UTC) |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, manifest in manifests.items():
        versions = _lookup(manifest, "versions") or {}
        cells = [
            name,
            _text(_lookup(manifest, "gdbench_version")),
            _commit(_lookup(manifest, "git_commit"), _lookup(manifest, "git_dirty")),
            _text(versions.get("jax") if isinstance(versions, dict) else None),
            _device(_lookup(manifest, "device_kind"), _lookup(manifest, "device_count")),
            _text(_lookup(manifest, "started_utc")),
            _text(_lookup(manifest, "finished_utc")),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _models_table(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """How each model was fitted and calibrated, from the runs' manifests (empty if none)."""
    seen: dict[str, dict[str, Any]] = {}
    for manifest in manifests.values():
        for name, info in (manifest.get("models") or {}).items():
            seen.setdefault(name, info)
    if not seen:
        return []
    lines = [
        "## Models",
        "",
        "| model | paradigm | probabilities | hyperparameters |",
        "|---|---|---|---|",
    ]
    for name, info in seen.items():
        params = (info.get("config") or {}).items()
        config = ", ".join(f"{k}={v}" for k, v in params if k != "calibration")
        cells = [name, _text(info.get("paradigm")), _text(info.get("calibration")), config]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return [*lines, ""]


def _lookup(manifest: dict[str, Any], key: str) -> Any:
    """`key` from the manifest's top level, else from its `provenance` section."""
    if key in manifest:
        return manifest[key]
    provenance = manifest.get("provenance")
    return provenance.get(key) if isinstance(provenance, dict) else None


def _commit(commit: Any, dirty: Any) -> str:
    if not commit:
        return "unknown"
    suffix = {True: " (dirty)", False: "", None: " (dirty: unknown)"}.get(dirty, "")
    return f"`{str(commit)[:12]}`{suffix}"


def _device(kind: Any, count: Any) -> str:
    if kind is None:
        return DASH
    return f"{kind} × {count}" if count is not None else str(kind)


def _text(value: Any) -> str:
    return DASH if value is None or value == "" else str(value)
