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

from gdbench import results
from gdbench.reports import (
    cite,
    curves,
    figures,
    hybrids,
    latex,
    names,
    paper,
    robustness,
    verdict,
)
from gdbench.reports.efficiency import efficiency
from gdbench.reports.html import INDEX_HTML, write_html
from gdbench.reports.stats import INTERVAL_METHOD, summarize
from gdbench.reports.tables import (
    DASH,
    fmt_interval,
    likelihood_table,
    markdown_summary,
    table,
)
from gdbench.results import store
from gdbench.results.store import manifest_value

REPORT_MD = "report.md"
RESULTS_CSV = "results.csv"
REFERENCES_BIB = "references.bib"


class EmptyRunError(ValueError):
    """The runs given to a report hold no result rows."""


def build_report(
    run_dirs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    display_names: names.DisplayNames | str | Path | None = None,
) -> dict[str, Path]:
    """Load the rows of `run_dirs` with `gdbench.results.load` and write a report into `out_dir`.

    Writes, into out_dir: index.html (one self-contained page: every table of report.md and
    every figure embedded), report.md (summary, sample efficiency with crossovers and
    learning-curve fits, results by task, calibration, likelihood, compute, cells not ok,
    hybrids and sample quality when the runs hold GAN traces, sample-quality metrics or a
    hybrid lambda sweep (`gdbench.reports.hybrids`), provenance), tables/*.tex (booktabs),
    figures/*.{png,svg,pdf}, results.csv (every row, full precision, with its `run`) and
    references.bib. Returns {path relative to out_dir: path}.
    The LaTeX tables and the paper figures (figures/paper/, `gdbench.reports.figures.PRESETS`)
    name models and tasks by `display_names` (a `gdbench.reports.names.DisplayNames`, or the
    path of a JSON/TOML file for `gdbench.reports.names.load_display_names`; defaults when
    None); table labels are ``tab:<run>:<table>`` (run names joined by "+").
    Raises `EmptyRunError` when there are no rows, `gdbench.results.NotARunError` for a path that is
    not a run.
    """
    if not isinstance(display_names, names.DisplayNames):
        display_names = names.load_display_names(display_names)
    run_list = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not run_list:
        raise EmptyRunError("no run directories given")
    df = results.load(run_list)
    if df.empty:
        listed = ", ".join(str(p) for p in run_list)
        raise EmptyRunError(
            f"no result rows in {listed}: no grid of it has finished yet; run (or resume) it "
            "with gdbench run --out DIR first"
        )
    manifests = {Path(p).absolute().name: results.read_manifest(p) for p in run_list}
    with latex.tex_options(namespace="+".join(manifests), names=display_names):
        return _build(df, run_list, manifests, Path(out_dir), display_names)


def _build(
    df: pd.DataFrame,
    run_list: list,
    manifests: dict[str, dict[str, Any]],
    out: Path,
    display_names: names.DisplayNames,
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary_md = markdown_summary(df)  # also checks that no cell appears twice
    n_test = _test_sizes(manifests)
    eff = efficiency(df, _suite_pairs(manifests), n_test=n_test)
    summary = verdict.verdict_section(df, out, _suite_pairs(manifests), eff.fits, n_test)
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
    written.update({str(p.relative_to(out)): p for p in summary.figures})
    written.update({str(p.relative_to(out)): p for p in hybrid.figures})
    written.update({str(p.relative_to(out)): p for p in robust_files})
    written.update({str(p.relative_to(out)): p for p in tex})
    paper_paths = paper.paper_figures(df, eff.per_size, out, display_names)
    written.update({str(p.relative_to(out)): p for p in paper_paths})

    csv_path = out / RESULTS_CSV
    # per-example outcomes as hex text (bytes.fromhex gives results.schema's packed bits)
    df.assign(test_correct=df["test_correct"].map(bytes.hex)).to_csv(csv_path, index=False)
    written[RESULTS_CSV] = csv_path

    version = _version(manifests)
    bib_path = out / REFERENCES_BIB
    bib_path.write_text(cite.bibtex(manifests, version))
    written[REFERENCES_BIB] = bib_path

    md = _report_markdown(
        df,
        manifests,
        summary_md,
        eff,
        figure_groups,
        tex,
        out,
        hybrid.markdown,
        robust_md,
        summary.markdown,
    )
    md = escape_names(md, _user_strings(df, manifests))
    md_path = out / REPORT_MD
    md_path.write_text(md)
    written[REPORT_MD] = md_path
    written[INDEX_HTML] = write_html(md, out, title="gdbench report")
    return written


#: Characters with a meaning in Markdown that a name from data or users may hold: such names
#: are backslash-escaped wherever they land in the report's Markdown (``escape_names``).
MARKDOWN_SPECIALS = "\\`*_[]<>|!{}#"
#: A Markdown special other than "_", or an underscore that is not between word characters.
_RISKY = re.compile("[" + re.escape(MARKDOWN_SPECIALS.replace("_", "")) + r"]|(?<!\w)_|_(?!\w)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


def _user_strings(df: pd.DataFrame, manifests: dict[str, dict[str, Any]]) -> set[str]:
    """Strings from data and users that the report prints: task and model names, run names,
    and the tasks' sources and descriptions (a CSV task's file path)."""
    strings = {*df["task"].astype(str), *df["model"].astype(str), *manifests}
    for manifest in manifests.values():
        for meta in (manifest.get("tasks") or {}).values():
            if isinstance(meta, dict):
                strings.update(str(meta[k]) for k in ("source", "description") if meta.get(k))
    return strings


def md_escape(text: str) -> str:
    """``text`` with every Markdown special character backslash-escaped: rendered, it reads
    exactly as ``text`` (no emphasis, link, code span, table cell break or HTML)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in text)


def escape_names(md: str, names) -> str:
    """``md`` with every occurrence of a name that holds Markdown specials (other than an
    underscore between word characters, which Markdown leaves alone) replaced by its escaped
    form (``md_escape``), outside code spans (where text is literal already). A name may
    already have its ``|`` escaped (table cells): that form is replaced too."""
    risky = sorted(
        {n for n in names if _RISKY.search(n)},
        key=len,
        reverse=True,
    )
    if not risky:
        return md
    forms = {}
    for name in risky:
        forms[name] = name
        forms.setdefault(name.replace("|", "\\|"), name)
    # Names first, as placeholders (a name may itself hold backticks), then code spans.
    found: list[str] = []
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))

    def hold(match: re.Match) -> str:
        found.append(forms[match.group(0)])
        return f"\x00{len(found) - 1}\x00"

    held = pattern.sub(hold, md)
    placeholder = re.compile("\x00(\\d+)\x00")
    out, last = [], 0
    for span in _CODE_SPAN.finditer(held):
        text = held[last : span.start()]
        out.append(placeholder.sub(lambda m: md_escape(found[int(m.group(1))]), text))
        out.append(placeholder.sub(lambda m: found[int(m.group(1))], span.group(0)))
        last = span.end()
    out.append(placeholder.sub(lambda m: md_escape(found[int(m.group(1))]), held[last:]))
    return "".join(out)


def _suite_pairs(manifests: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The (generative, discriminative, description) pairs the runs' suites name, in order."""
    pairs: dict[tuple[str, str], str] = {}
    for manifest in manifests.values():
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        for item in config.get("pairs") or []:
            if isinstance(item, list | tuple) and len(item) == 3:
                pairs.setdefault((str(item[0]), str(item[1])), str(item[2]))
    return [(g, d, why) for (g, d), why in pairs.items()]


def _test_sizes(manifests: dict[str, dict[str, Any]]) -> dict[str, int]:
    """{task: test-set size} from the runs' manifests (tasks without one left out)."""
    sizes: dict[str, int] = {}
    for manifest in manifests.values():
        for name, info in (manifest.get("tasks") or {}).items():
            size = info.get("test_size") if isinstance(info, dict) else None
            if isinstance(size, int) and size > 0:  # rows name the task by its display name
                sizes.setdefault(str(info.get("name") or name), size)
    return sizes


def _version(manifests: dict[str, dict[str, Any]]) -> str:
    versions = {str(manifest_value(m, "gdbench_version") or "") for m in manifests.values()} - {""}
    return " / ".join(sorted(versions)) or "unknown"


def _efficiency_tex(eff, out: Path) -> list[Path]:
    """Crossover and learning-curve-fit tables as booktabs LaTeX under out/tables/."""
    written = []
    table_dir = out / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    if not eff.crossovers.empty:
        cross = eff.crossovers
        frame = pd.DataFrame(
            {
                "Task": [latex.task_tex(t) for t in cross["task"]],
                "Generative": [latex.model_tex(m) for m in cross["generative"]],
                "Discriminative": [latex.model_tex(m) for m in cross["discriminative"]],
                "Regime": [latex.escape_latex(r).replace("\\_", " ") for r in cross["regime"]],
            }
        )
        # censored ends as "<n_min" / ">n_max", never 0 or inf (reports.curves.format_n_star)
        for column, key in (("$n^*$", "n_star"), ("CI low", "n_star_lo"), ("CI high", "n_star_hi")):
            frame[column] = [
                latex.escape_latex(curves.format_n_star(r[key], r["n_min"], r["n_max"]))
                for _, r in cross.iterrows()
            ]
        text = latex.dataframe_to_booktabs(
            frame,
            caption=(
                "Crossover size $n^*$ of each generative/discriminative pair: where the mean "
                "paired difference in test error (same subsets) changes sign in favour of the "
                "discriminative model, with a bootstrap 95\\% CI over seeds; only where $n^*$ "
                "lies inside the tested sizes (an interval end outside them as $<$smallest or "
                "$>$largest size) (gdbench)."
            ),
            label=latex.label("crossover"),
            escape=False,
            index=False,
            float_format="{:.0f}",
        )
        path = table_dir / "crossover.tex"
        path.write_text(text)
        written.append(path)
    if not eff.fits.empty:
        fits = eff.fits
        eps = 0.01
        frame = pd.DataFrame(
            {
                "Task": [latex.task_tex(t) for t in fits["task"]],
                "Model": [latex.model_tex(m) for m in fits["model"]],
                "Error (largest $n$)": fits["at_largest"].map(lambda v: f"{v:.3f}"),
                "Asymptote $c$ (95\\% CI)": [
                    _fit_cell(curves.format_asymptote(r)) for _, r in fits.iterrows()
                ],
                f"$n$ to $c+{eps}$": [
                    _fit_cell(curves.format_n_within(r)) for _, r in fits.iterrows()
                ],
                f"$n$ to best$+{eps}$": [
                    _fit_cell(curves.format_n_best(r)) for _, r in fits.iterrows()
                ],
                "AULC": fits["aulc"].map(lambda v: f"{v:.3f}"),
            }
        )
        flags = [curves.FLAG_LEGEND[f] for f in curves.FLAG_LEGEND if (fits["flag"] == f).any()]
        text = latex.dataframe_to_booktabs(
            frame,
            caption=(
                "Learning-curve fits $\\mathrm{err}(n) = c + a n^{-b}$, $c$ at least the Bayes "
                "error where "
                "the task knows it: asymptote $c$ with its bootstrap 95\\% CI over seeds as "
                "$^{+a}_{-b}$, from $c-b$ to $c+a$ (refits; "
                f"test-set noise included); $n$ to $c+{eps}$: where the fit comes within {eps} "
                f"of $c$, never printed beyond the tested sizes ($>$: beyond, $<$: below "
                f"them); $n$ to best$+{eps}$: the smallest "
                f"tested size whose mean error is within {eps} of the lowest observed (no "
                "extrapolation); AULC: mean error on a log $n$ axis. "
                + " ".join(f"{_fit_cell(f.replace('ε', str(eps)))}." for f in flags)
                + " (gdbench)"
            ),
            label=latex.label("curve-fits"),
            escape=False,
            index=False,
        )
        path = table_dir / "curve_fits.tex"
        path.write_text(text)
        written.append(path)
    return written


def _fit_cell(text: str) -> str:
    """A learning-curve-fit cell in LaTeX: escaped, "> 398 (beyond tested sizes)" as
    "$>$398" (the caption says what it means)."""
    text = re.sub(r"\s*\((?:beyond|below) tested sizes\)", "", str(text))
    text = re.sub(r"\s?†", r"$^{\\dagger}$", latex.escape_latex(text))
    return (
        re.sub(r"\s?‡", r"$^{\\ddagger}$", text)
        .replace("\\textgreater{} ", "$>$")
        .replace("\\textless{} ", "$<$")
    )


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
    verdict_md: Sequence[str] = (),
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
        *_summary_lines(df, verdict_md),
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


def _summary_lines(df: pd.DataFrame, verdict_md: Sequence[str]) -> list[str]:
    """The report's opening summary: the family verdict (`gdbench.reports.verdict.verdict_section`:
    headline figure, Ng & Jordan's claims per suite pair, ranks across tasks), or a line per
    task without any cell ok."""
    ok = df[df["status"] == "ok"]
    dead = [
        f"- **{t}**: no cell ok." for t in sorted(df["task"].unique()) if t not in set(ok["task"])
    ]
    return [*verdict_md, *dead]


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
