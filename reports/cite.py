"""BibTeX for a report: an entry for the gdbench software and one per run it reports.

The software entry matches CITATION.cff at the repository root (same title, authors, URL).
Run entries carry what a reader needs to trace a number: the run's suite, gdbench version,
git commit (and whether the work tree was dirty), device and start/finish times, taken from the
run's manifest (top level first, then its `provenance` section).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from gdbench.results.store import manifest_value

TITLE = "gdbench: a JAX benchmark suite comparing discriminative and generative classifiers"
AUTHOR = "gdbench developers"
URL = "https://github.com/gdbench/gdbench"
YEAR = 2026
LICENSE = "Apache-2.0"

_KEY_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")
# LaTeX's special characters in text; a backslash first so later escapes are not re-escaped.
_LATEX = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX))


def bibtex(manifests: Mapping[str, Mapping[str, Any]], version: str) -> str:
    """A BibTeX file (as a string) citing gdbench `version` and each run of `manifests`.

    `manifests` maps a run name (its directory name) to its manifest dict, as
    `gdbench.results.read_manifest` returns it. Returns one @software entry (key
    "gdbench-<version>",
    year 2026, the URL of CITATION.cff) and, per run in the given order, one @misc entry (key
    "gdbench-run-<name>", made of [A-Za-z0-9_.:-] only and unique within the file) whose note
    gives the suite, gdbench version, git commit, device and start/finish times (UTC) stored in
    the manifest; facts a manifest lacks are left out. Text fields are LaTeX-escaped (braces,
    underscores, ...), so the file compiles with BibTeX and biber.
    """
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"bibtex: version must be a non-empty string, got {version!r}")
    used: set[str] = set()
    software_key = _key(f"gdbench-{version}", used)
    entries = [
        _entry(
            "software",
            software_key,
            [
                ("title", _escape(TITLE)),
                ("author", "{" + _escape(AUTHOR) + "}"),
                ("version", _escape(version)),
                ("year", str(YEAR)),
                ("url", URL),
                ("license", LICENSE),
                ("note", f"Version {_escape(version)}"),
            ],
        )
    ]
    for name, manifest in manifests.items():
        if not isinstance(manifest, Mapping):
            raise TypeError(f"bibtex: manifest of run {name!r} must be a dict")
        entries.append(_run_entry(str(name), manifest, version, software_key, used))
    return "\n".join(entries)


def _run_entry(
    name: str, manifest: Mapping[str, Any], version: str, software_key: str, used: set[str]
) -> str:
    config = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    suite = config.get("suite")
    run_version = manifest_value(manifest, "gdbench_version")
    started = manifest_value(manifest, "started_utc") or manifest_value(manifest, "timestamp_utc")
    finished = manifest_value(manifest, "finished_utc")
    facts = []
    if suite:
        facts.append(f"suite {suite}")
    facts.append(f"gdbench {run_version or 'version unknown'}")
    facts.append(
        _commit(manifest_value(manifest, "git_commit"), manifest_value(manifest, "git_dirty"))
    )
    device = _device(
        manifest_value(manifest, "device_kind"), manifest_value(manifest, "device_count")
    )
    if device:
        facts.append(f"device {device}")
    if started:
        facts.append(f"started {started}")
    if finished:
        facts.append(f"finished {finished}")
    fields = [
        ("title", _escape(f"gdbench benchmark run {name}")),
        ("author", "{" + _escape(AUTHOR) + "}"),
        ("howpublished", _escape(f"Benchmark run made with gdbench; report by gdbench {version}")),
        ("note", _escape("; ".join(facts))),
    ]
    year = _year(finished) or _year(started)
    if year:
        fields.append(("year", year))
    if started and re.match(r"\d{4}-\d{2}-\d{2}", str(started)):
        fields.append(("date", str(started)[:10]))
    fields.append(("related", software_key))
    return _entry("misc", _key(f"gdbench-run-{name}", used), fields)


def _entry(kind: str, key: str, fields: list[tuple[str, str]]) -> str:
    width = max(len(f) for f, _ in fields)
    body = ",\n".join(f"  {f.ljust(width)} = {{{v}}}" for f, v in fields)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def _key(raw: str, used: set[str]) -> str:
    """A BibTeX key from `raw`: unsafe characters become "_" (plus a short hash of `raw`, so
    different names stay different); a key already in `used` gets a numeric suffix."""
    key = _KEY_BAD.sub("_", raw)
    if key != raw:
        key += "-" + hashlib.sha1(raw.encode()).hexdigest()[:6]
    unique, k = key, 2
    while unique.lower() in used:  # BibTeX compares keys case-insensitively
        unique, k = f"{key}-{k}", k + 1
    used.add(unique.lower())
    return unique


def _escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return _LATEX_RE.sub(lambda m: _LATEX[m.group(0)], str(text))


def _commit(commit: Any, dirty: Any) -> str:
    if not commit:
        return "git commit unknown"
    state = {True: " with uncommitted changes", False: "", None: " (dirty state unknown)"}
    return f"git commit {commit}{state.get(dirty, '')}"


def _device(kind: Any, count: Any) -> str | None:
    if kind is None or kind == "":
        return None
    return f"{kind} x {count}" if count is not None else str(kind)


def _year(stamp: Any) -> str | None:
    match = re.match(r"(\d{4})-", str(stamp or ""))
    return match.group(1) if match else None
