"""BibTeX for a report: an entry for the gdbench software and one per run it reports.

The software entry matches CITATION.cff at the repository root (same title, authors, version,
year, URL; tests/test_citation.py checks them). Every entry is a @misc with fields that classic
BibTeX styles (plain, plainnat, ...) and biblatex (biber or bibtex backend) both read without
warnings; words whose case must be kept ({gdbench}, {JAX}, a run's name) are braced, as title
case changes would lower them. The version goes into `note` (printed by both), not a
`version` field (printed by biblatex only, twice beside the note).
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
#: CITATION.cff's date-released: the day the version was released.
DATE = "2026-11-21"
LICENSE = "Apache-2.0"
#: Words of titles whose case BibTeX styles must keep (braced in the .bib).
PROTECTED = ("gdbench", "JAX")

_KEY_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")
# LaTeX's special characters in text; a backslash first so later escapes are not re-escaped.
_LATEX = {
    "\\": r"\textbackslash{}",
    # Not \{ and \}: BibTeX counts those braces too, so a lone one would unbalance the field.
    "{": r"\textbraceleft{}",
    "}": r"\textbraceright{}",
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
    `gdbench.results.read_manifest` returns it. Returns one @misc entry for the software (key
    "gdbench-<version>", note "Version <version>", year and date of CITATION.cff's
    date-released, its URL) and, per run in the given order, one @misc entry (key
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
            "misc",
            software_key,
            [
                ("title", _protect(_escape(TITLE))),
                ("author", "{" + _escape(AUTHOR) + "}"),
                ("note", f"Version {_escape(version)}"),
                ("year", str(YEAR)),
                ("month", _month(DATE)),
                ("url", URL),
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
        ("title", "{gdbench} benchmark run {" + _escape(name) + "}"),
        ("author", "{" + _escape(AUTHOR) + "}"),
        ("howpublished", _escape(f"Benchmark run made with gdbench; report by gdbench {version}")),
        ("note", _escape("; ".join(facts))),
    ]
    stamp = finished if _year(finished) else started
    if _year(stamp):
        fields.append(("year", _year(stamp)))
        if _month(stamp):
            fields.append(("month", _month(stamp)))
    fields.append(("related", software_key))
    return _entry("misc", _key(f"gdbench-run-{name}", used), fields)


def _entry(kind: str, key: str, fields: list[tuple[str, str]]) -> str:
    """A BibTeX entry; a `_Macro` value (a month) is written bare, any other one braced."""
    width = max(len(f) for f, _ in fields)
    body = ",\n".join(
        f"  {f.ljust(width)} = {v if isinstance(v, _Macro) else '{' + v + '}'}" for f, v in fields
    )
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


def _protect(text: str) -> str:
    """`text` (already escaped) with the words of `PROTECTED` braced, keeping their case."""
    return re.sub(
        r"\b(" + "|".join(map(re.escape, PROTECTED)) + r")\b",
        lambda m: "{" + m.group(1) + "}",
        text,
    )


def _commit(commit: Any, dirty: Any) -> str:
    if not commit:
        return "git commit unknown"
    state = {True: " with uncommitted changes", False: "", None: " (dirty state unknown)"}
    return f"git commit {commit}{state.get(dirty, '')}"


def _device(kind: Any, count: Any) -> str | None:
    if kind is None or kind == "":
        return None
    return f"{kind} x {count}" if count is not None else str(kind)


class _Macro(str):
    """A value written without braces: one of BibTeX's month macros (jan ... dec)."""


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _month(stamp: Any) -> _Macro | None:
    """The month of an ISO 8601 `stamp` as a BibTeX month macro (`nov`): styles print it as a
    name ("November 2026"), where a number would print as "11 2026"; biblatex reads it too.
    (A `date` field instead would clash with `year` under biblatex's BibTeX backend.)"""
    match = re.match(r"\d{4}-(\d{2})", str(stamp or ""))
    month = int(match.group(1)) if match else 0
    return _Macro(_MONTHS[month - 1]) if 1 <= month <= 12 else None


def _year(stamp: Any) -> str | None:
    match = re.match(r"(\d{4})-", str(stamp or ""))
    return match.group(1) if match else None
