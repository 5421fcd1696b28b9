"""Build a report directory from stored runs: index.html, report.md, LaTeX tables, figures,
results.csv and references.bib.

Works from the run store alone (no JAX, no models, no tasks), so a report can be built on a
laptop from runs made on an accelerator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import results
from reports import cite, figures, hybrids, latex, robustness
from reports.efficiency import efficiency
from reports.html import INDEX_HTML, write_html
from reports.stats import INTERVAL_METHOD, summarize
from reports.tables import (
    DASH,
    fmt_interval,
    likelihood_table,
    markdown_summary,
    table,
)
from results import store
from results.store import manifest_value

REPORT_MD = "report.md"
RESULTS_CSV = "results.csv"
REFERENCES_BIB = "references.bib"


class EmptyRunError(ValueError):
    """The runs given to a report hold no result rows."""


def build_report(
    run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path
) -> dict[str, Path]:
    """Load the rows of `run_dirs` with `results.load` and write a report into `out_dir`.

    Writes, into out_dir: index.html (one self-contained page: every table of report.md and
    every figure embedded), report.md (summary, sample efficiency with crossovers and
    learning-curve fits, results by task, calibration, likelihood, compute, cells not ok,
    hybrids and sample quality when the runs hold GAN traces, sample-quality metrics or a
    hybrid lambda sweep (`reports.hybrids`), provenance), tables/*.tex (booktabs),
    figures/*.{png,svg,pdf}, results.csv (every row, full precision, with its `run`) and
    references.bib. Returns {path relative to out_dir: path}.
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
    summary_md = markdown_summary(df)  # also checks that no cell appears twice
    eff = efficiency(df, _suite_pairs(manifests))
    samples = [item for p in run_list for item in store.read_samples(p)]
    figure_groups = {
        "Learning curves": figures.learning_curves(df, out),
        "Crossovers": figures.crossover_plot(eff.per_size, out),
        "Accuracy and compute": figures.accuracy_vs_compute(df, out),
        "Likelihood and accuracy": figures.likelihood_vs_accuracy(df, out),
        "Samples": figures.sample_grids(samples, out),
    }
    traces = [
        {**item, "run": Path(p).absolute().name} for p in run_list for item in store.read_traces(p)
    ]
    hybrid = hybrids.hybrid_section(df, traces, out)
    robust_md = "\n".join(robustness.robustness_section(df, out))
    # Every file the section writes is linked from its Markdown.
    robust_files = sorted({out / link for link in re.findall(r"\]\(([^)]+)\)", robust_md)})
    tex = latex.write_tables(df, out) + _efficiency_tex(eff, out) + hybrid.tables
    written = {str(p.relative_to(out)): p for group in figure_groups.values() for p in group}
    written.update({str(p.relative_to(out)): p for p in hybrid.figures})
    written.update({str(p.relative_to(out)): p for p in robust_files})
    written.update({str(p.relative_to(out)): p for p in tex})

    csv_path = out / RESULTS_CSV
    # per-example outcomes as hex text (bytes.fromhex gives results.schema's packed bits)
    df.assign(test_correct=df["test_correct"].map(bytes.hex)).to_csv(csv_path, index=False)
    written[RESULTS_CSV] = csv_path

    version = _version(manifests)
    bib_path = out / REFERENCES_BIB
    bib_path.write_text(cite.bibtex(manifests, version))
    written[REFERENCES_BIB] = bib_path

    md = _report_markdown(
        df, manifests, summary_md, eff, figure_groups, tex, out, hybrid.markdown, robust_md
    )
    md_path = out / REPORT_MD
    md_path.write_text(md)
    written[REPORT_MD] = md_path
    written[INDEX_HTML] = write_html(md, out, title="gdbench report")
    return written


def _suite_pairs(manifests: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The (generative, discriminative, description) pairs the runs' suites name, in order."""
    pairs: dict[tuple[str, str], str] = {}
    for manifest in manifests.values():
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        for item in config.get("pairs") or []:
            if isinstance(item, list | tuple) and len(item) == 3:
                pairs.setdefault((str(item[0]), str(item[1])), str(item[2]))
    return [(g, d, why) for (g, d), why in pairs.items()]


def _version(manifests: dict[str, dict[str, Any]]) -> str:
    versions = {str(manifest_value(m, "gdbench_version") or "") for m in manifests.values()} - {""}
    return " / ".join(sorted(versions)) or "unknown"


def _efficiency_tex(eff, out: Path) -> list[Path]:
    """Crossover and learning-curve-fit tables as booktabs LaTeX under out/tables/."""
    written = []
    table_dir = out / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    if not eff.crossovers.empty:
        frame = eff.crossovers[["task", "generative", "discriminative", "regime"]].copy()
        frame["n*"] = eff.crossovers["n_star"].round(0)
        frame["CI low"] = eff.crossovers["n_star_lo"].round(0)
        frame["CI high"] = eff.crossovers["n_star_hi"].round(0)
        text = latex.dataframe_to_booktabs(
            frame,
            caption=(
                "Crossover size n* of each generative/discriminative pair: where the mean "
                "paired difference in test error (same subsets) changes sign in favour of the "
                "discriminative model, with a bootstrap 95% CI over seeds (gdbench)."
            ),
            label="tab:gdbench-crossover",
            index=False,
            float_format="{:.0f}",
        )
        path = table_dir / "crossover.tex"
        path.write_text(text)
        written.append(path)
    if not eff.fits.empty:
        frame = eff.fits[["task", "model", "at_largest", "c", "c_lo", "c_hi", "aulc"]].copy()
        frame.columns = ["task", "model", "error (largest n)", "c", "c low", "c high", "AULC"]
        text = latex.dataframe_to_booktabs(
            frame,
            caption=(
                "Learning-curve fits err(n) = c + a n^(-b): asymptote c with its bootstrap "
                "95% CI over seeds, and the area under the learning curve (mean error on a "
                "log n axis) (gdbench)."
            ),
            label="tab:gdbench-curve-fits",
            index=False,
        )
        path = table_dir / "curve_fits.tex"
        path.write_text(text)
        written.append(path)
    return written


def _report_markdown(
    df: pd.DataFrame,
    manifests: dict[str, dict[str, Any]],
    summary_md: str,
    eff,
    figure_groups: dict[str, list[Path]],
    tex: list[Path],
    out: Path,
    hybrid_md: str = "",
    robust_md: str = "",
) -> str:
    n_bad = int((df["status"] != "ok").sum())
    runs = ", ".join(f"`{name}`" for name in manifests)
    tex_links = ", ".join(f"[{p.name}]({p.relative_to(out).as_posix()})" for p in tex)
    lines = [
        "# gdbench report",
        "",
        f"Runs: {runs}. {len(df)} cells, {n_bad} not ok"
        + (" (listed below, excluded from every statistic)" if n_bad else "")
        + f". All rows: [{RESULTS_CSV}]({RESULTS_CSV}). Cite: "
        f"[{REFERENCES_BIB}]({REFERENCES_BIB}). LaTeX tables: {tex_links or DASH}.",
        "",
        "## Summary",
        "",
        *_summary_lines(df, eff),
        "",
        eff.markdown.rstrip(),
        "",
        summary_md.rstrip(),
        "",
        *_calibration_lines(df),
        likelihood_table(df),
        *([hybrid_md.rstrip(), ""] if hybrid_md else []),
        *([robust_md.rstrip(), ""] if robust_md else []),
        "## Figures",
        "",
    ]
    for title, paths in figure_groups.items():
        pngs = [p for p in paths if p.suffix == ".png"]
        if not pngs:
            continue
        lines += [f"### {title}", "", *figures.figure_markdown(pngs, out)]
    lines += [
        "## Provenance",
        "",
        *_provenance_table(manifests),
        "",
        *_versions_table(manifests),
        *_datasets_table(manifests),
        *_config_lines(manifests),
        *_models_table(manifests),
        "## Citation",
        "",
        f"Cite gdbench and the runs of this report with [{REFERENCES_BIB}]({REFERENCES_BIB}):",
        "",
        "```bibtex",
        cite.bibtex(manifests, _version(manifests)).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def _summary_lines(df: pd.DataFrame, eff) -> list[str]:
    """Per task: the most accurate model at the largest size, and each pair's finding."""
    lines = []
    ok = df[df["status"] == "ok"]
    for task in sorted(df["task"].unique()):
        rows = ok[ok["task"] == task]
        if rows.empty:
            lines.append(f"- **{task}**: no cell ok.")
            continue
        largest = rows[rows["n_train"] == rows["n_train"].max()]
        acc = largest.groupby("model")["accuracy"].mean().sort_values(ascending=False)
        text = (
            f"- **{task}** (n={int(largest['n_train'].iloc[0])}): most accurate "
            f"{acc.index[0]} ({acc.iloc[0]:.3f})"
        )
        if len(acc) > 1:
            text += f", then {acc.index[1]} ({acc.iloc[1]:.3f})"
        lines.append(text + ".")
        if not eff.crossovers.empty:
            mine = eff.crossovers[eff.crossovers["task"] == task]
            for _, r in mine.head(2 if mine["tests"].astype(bool).any() else 0).iterrows():
                lines.append(f"  - {r['generative']} vs {r['discriminative']}: {r['description']}.")
    return lines


CALIBRATION = ("ece", "brier", "nll")


def _calibration_lines(df: pd.DataFrame) -> list[str]:
    stats = summarize(df, list(CALIBRATION), by=("task", "model", "n_train"))
    largest = df.groupby("task")["n_train"].max()
    stats = stats[stats["n_train"] == stats["task"].map(largest)]
    body = [
        [
            r["task"],
            r["model"],
            str(int(r["n_train"])),
            *(fmt_interval(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"], 3) for m in CALIBRATION),
        ]
        for _, r in stats.iterrows()
    ]
    return [
        "## Calibration",
        "",
        f"At each task's largest training size (mean and its {INTERVAL_METHOD}): expected "
        "calibration error (top label, 15 equal-width bins), Brier score and conditional NLL "
        "(nats); lower is better for all three.",
        "",
        *table(["task", "model", "n_train", "ECE", "Brier", "NLL (nats)"], body),
        "",
    ]


def _provenance_table(manifests: dict[str, dict[str, Any]]) -> list[str]:
    header = "| run | gdbench | git commit | jax | device | started (UTC) | finished (UTC) |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, manifest in manifests.items():
        versions = manifest_value(manifest, "versions") or {}
        cells = [
            name,
            _text(manifest_value(manifest, "gdbench_version")),
            _commit(manifest_value(manifest, "git_commit"), manifest_value(manifest, "git_dirty")),
            _text(versions.get("jax") if isinstance(versions, dict) else None),
            _device(
                manifest_value(manifest, "device_kind"), manifest_value(manifest, "device_count")
            ),
            _text(manifest_value(manifest, "started_utc")),
            _text(manifest_value(manifest, "finished_utc")),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _versions_table(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Package versions, Python and platform of each run."""
    names = list(manifests)
    rows: dict[str, list[str]] = {}
    for i, manifest in enumerate(manifests.values()):
        versions = manifest_value(manifest, "versions")
        facts = dict(versions) if isinstance(versions, dict) else {}
        for key in ("python", "platform", "cpu_count", "device_platform"):
            if manifest_value(manifest, key) is not None:
                facts[key] = manifest_value(manifest, key)
        for key, value in facts.items():
            rows.setdefault(key, [DASH] * len(names))[i] = _text(value)
    if not rows:
        return []
    body = [[key, *values] for key, values in rows.items()]
    return ["### Software and hardware", "", *table(["", *names], body), ""]


def _datasets_table(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Each task's source, version, split and data checksum, from the runs' manifests."""
    seen: dict[str, dict[str, Any]] = {}
    for manifest in manifests.values():
        for name, info in (manifest.get("tasks") or {}).items():
            if isinstance(info, dict):
                seen.setdefault(name, info)
    if not seen:
        return []
    body = [
        [
            name,
            _text(info.get("source")),
            _text(info.get("version")),
            f"{_text(info.get('pool_size'))} / {_text(info.get('test_size'))}",
            _text(info.get("transform")),
            f"`{str(info.get('sha256') or DASH)[:16]}`",
        ]
        for name, info in sorted(seen.items())
    ]
    header = ["task", "source", "version", "pool / test", "transform", "data sha256 (prefix)"]
    return ["### Datasets", "", *table(header, body), ""]


def _config_lines(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Each run's configuration as stored in its manifest (seeds shortened to a count)."""
    lines = ["### Configuration", ""]
    for name, manifest in manifests.items():
        config = dict(manifest.get("config") or {})
        seeds = config.get("seeds")
        if isinstance(seeds, list) and seeds:
            config["seeds"] = f"{len(seeds)} seeds ({min(seeds)}..{max(seeds)})"
        lines += [f"`{name}`:", "", "```json", json.dumps(config, indent=1), "```", ""]
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
