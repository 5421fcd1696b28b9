"""Display names of models, tasks and paradigms for paper tables and figures.

Runs name models by their spec (``logreg?C=10000``, ``gnb_shared``, ``sk:GaussianNB``) and tasks
by their registry name (``digits_2v3``); a paper wants "LR (C=10^4)", "GNB (shared var.)" and
"Digits 2 vs 3". `DisplayNames` maps one to the other: an exact entry of the user's mapping
first, then the built-in defaults (`DEFAULT_MODELS`, `DEFAULT_TASKS`), then a rule for specs
with options (``base?key=value&...`` becomes "Base (key=value, ...)", powers of ten written
``10^k``), else the name itself.

Names are plain text: in LaTeX they are escaped, except that ``^`` followed by an integer is
set as a superscript (``10^4`` -> 10\\textsuperscript{4}); figures show the same superscript
with matplotlib's mathtext.

Users override names with a JSON or TOML file (``gdbench report RUN --display-names FILE``)::

    {"models": {"logreg?C=10000": "LR (weak reg.)"}, "tasks": {"digits_2v3": "Digits 2/3"}}

or in TOML, ``[models]`` and ``[tasks]`` tables (quote keys holding ``?``, ``=`` or ``:``).
A ``paradigms`` table renames the paradigm labels the same way.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODELS = {
    "logreg": "LR",
    "linsvm": "Linear SVM",
    "mlp": "MLP",
    "gnb": "GNB",
    "gnb_shared": "GNB (shared var.)",
    "bnb": "Bernoulli NB",
    "lda": "LDA",
    "qda": "QDA",
    "flow": "Flow",
    "vae": "VAE",
    "gan": "GAN",
    "jem": "JEM",
    "hybrid": "Hybrid",
    "sk:LogisticRegression": "LR (sklearn)",
    "sk:GaussianNB": "GNB (sklearn)",
    "sk:MLPClassifier": "MLP (sklearn)",
    "sk:DecisionTreeClassifier": "Tree (sklearn)",
}
DEFAULT_TASKS = {
    "breast_cancer": "Breast cancer",
    "digits": "Digits",
    "digits_bin": "Digits (binary)",
    "gauss_corr": "Gauss. (corr.)",
    "gauss_nb": "Gauss. (NB)",
    "gauss_quad": "Gauss. (quad.)",
}
DEFAULT_PARADIGMS = {
    "discriminative": "disc.",
    "generative": "gen.",
    "hybrid": "hybrid",
    "reference": "ref.",
}
_PAIR_TASK = re.compile(r"digits_(\d)v(\d)")
_SUPERSCRIPT = re.compile(r"\^(-?\d+)")


def _number(text: str) -> str:
    """An option value as text: powers of ten (at least 1000 or at most 0.001) as 10^k."""
    try:
        value = float(text)
    except ValueError:
        return text
    if value > 0 and math.isfinite(value) and (value >= 1000 or value <= 1e-3):
        k = math.log10(value)
        if abs(k - round(k)) < 1e-9:
            return f"10^{round(k)}"
    return text


@dataclass(frozen=True)
class DisplayNames:
    """Display names: `models`, `tasks` and `paradigms` override the defaults exactly."""

    models: Mapping[str, str] = field(default_factory=dict)
    tasks: Mapping[str, str] = field(default_factory=dict)
    paradigms: Mapping[str, str] = field(default_factory=dict)

    def model(self, name: object) -> str:
        name = str(name)
        if name in self.models:
            return str(self.models[name])
        if name in DEFAULT_MODELS:
            return DEFAULT_MODELS[name]
        base, sep, query = name.partition("?")
        if not sep or not query:
            return name
        shown = self.models.get(base) or DEFAULT_MODELS.get(base, base)
        options = []
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            options.append(f"{key}={_number(value)}" if eq else part)
        return f"{shown} ({', '.join(options)})"

    def task(self, name: object) -> str:
        name = str(name)
        if name in self.tasks:
            return str(self.tasks[name])
        if name in DEFAULT_TASKS:
            return DEFAULT_TASKS[name]
        pair = _PAIR_TASK.fullmatch(name)
        return f"Digits {pair[1]} vs {pair[2]}" if pair else name

    def paradigm(self, name: object) -> str:
        name = str(name)
        return str(self.paradigms.get(name, DEFAULT_PARADIGMS.get(name, name)))


DEFAULT_NAMES = DisplayNames()


def load_display_names(path: str | Path | None) -> DisplayNames:
    """`DisplayNames` from a JSON (``.json``) or TOML (any other suffix) file with optional
    ``models``, ``tasks`` and ``paradigms`` tables of strings; the defaults for None. Raises
    ValueError for a table that is not a mapping of strings or an unknown key."""
    if path is None:
        return DEFAULT_NAMES
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"display names file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"display names file {path}: expected a table of tables")
    unknown = set(data) - {"models", "tasks", "paradigms"}
    if unknown:
        raise ValueError(
            f"display names file {path}: unknown key {sorted(unknown)[0]!r} "
            "(expected models, tasks, paradigms)"
        )
    tables = {}
    for key in ("models", "tasks", "paradigms"):
        table = data.get(key, {})
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in table.items()
        ):
            raise ValueError(f"display names file {path}: {key} must map names to strings")
        tables[key] = dict(table)
    return DisplayNames(**tables)


def split_superscripts(text: str) -> list[str]:
    """`text` split at its ``^k`` superscripts: plain text at even positions, exponents at odd."""
    return _SUPERSCRIPT.split(str(text))


def to_mathtext(text: str) -> str:
    """A display name for matplotlib: dollar signs literal, ``^k`` as a mathtext superscript."""
    pieces = split_superscripts(str(text).replace("$", r"\$"))
    out = [pieces[0]]
    for k in range(1, len(pieces), 2):
        out.append(f"$^{{{pieces[k]}}}${pieces[k + 1]}")
    return "".join(out)
