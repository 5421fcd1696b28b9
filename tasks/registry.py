"""Tasks by name: ``gdbench.tasks.load(name) -> Task``. Loaders are imported lazily and cached.

Besides the built-in tasks of ``REGISTRY`` (what ``names()`` lists), three families are named
by a prefix: ``csv:<path>[?target=<column>]`` (a user's table, ``gdbench.tasks.csv_task``),
``npz:<path>`` (a user's arrays, ``gdbench.tasks.arrays``) and ``tfds:<name>`` (a prepared TFDS
image
dataset, ``gdbench.tasks.tfds_task``). Tasks of your own given as code (``file.py:function``, an
entry
point, a ``Task`` object passed to ``gdbench.run``) are registered in the process by
``register`` (``gdbench.plugins`` does it).

A prefixed task takes a short display name as one more query option, ``&name=<short>`` (or
``?name=<short>`` when it is the only one): ``csv:data/table.csv?target=y&name=bc``. The task
is then called ``bc`` in its rows' ``task`` column, the report's figures, tables and file names
and the progress lines; the run's manifest keeps the whole spec (``source`` the file).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import re
from collections.abc import Callable

from gdbench.tasks.base import Task, TaskError

#: name -> (module, loader function or synthetic name, one-line description)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "breast_cancer": (
        "gdbench.tasks.bundled",
        "breast_cancer",
        "breast cancer, 30 real features, 2 classes",
    ),
    "wine": ("gdbench.tasks.bundled", "wine", "wine, 13 real features, 3 classes"),
    "iris": ("gdbench.tasks.bundled", "iris", "iris, 4 real features, 3 classes"),
    "digits": ("gdbench.tasks.bundled", "digits", "8x8 digits, 64 integer pixels, 10 classes"),
    "digits_0v1": ("gdbench.tasks.bundled", "digits_0v1", "digits 0 vs 1"),
    "digits_2v3": ("gdbench.tasks.bundled", "digits_2v3", "digits 2 vs 3"),
    "digits_bin": ("gdbench.tasks.bundled", "digits_bin", "binarized 8x8 digits, 10 classes"),
    "gauss_nb": (
        "gdbench.tasks.synthetic",
        "gauss_nb",
        "synthetic, naive Bayes holds (Bayes acc 0.841)",
    ),
    "gauss_corr": (
        "gdbench.tasks.synthetic",
        "gauss_corr",
        "synthetic, correlated (Bayes acc 0.894)",
    ),
    "gauss_quad": (
        "gdbench.tasks.synthetic",
        "gauss_quad",
        "synthetic, quadratic Bayes rule (~0.808)",
    ),
}


#: name prefix -> (module with ``check(name)`` and ``load(name)``, usage, description)
PREFIXES: dict[str, tuple[str, str, str]] = {
    "csv:": (
        "gdbench.tasks.csv_task",
        "csv:<path>[?target=<column>][&name=<short>]",
        "a CSV table of your own",
    ),
    "npz:": (
        "gdbench.tasks.arrays",
        "npz:<path>[?name=<short>]",
        "arrays of your own (x_train, y_train[, x_test, y_test])",
    ),
    "tfds:": (
        "gdbench.tasks.tfds_task",
        "tfds:<name>[?binarize=<t>|?dequantize=0][&name=<short>]",
        "a prepared TFDS image dataset, e.g. tfds:mnist",
    ),
}


#: Tasks registered in this process (``register``): name -> (loader, description).
_USER: dict[str, tuple[Callable[[], Task], str]] = {}


def register(name: str, loader: Callable[[], Task], description: str = "") -> None:
    """Make ``name`` load through ``loader()`` (which returns a ``Task``) in this process; a
    name registered again with another loader replaces it (``load`` forgets the old task)."""
    _USER[name] = (loader, description or "a task of your own")
    load.cache_clear()


def names() -> list[str]:
    """The built-in tasks and those registered in this process (prefixed families such as
    ``csv:`` are not listed)."""
    return [*REGISTRY, *_USER]


def describe(name: str) -> str:
    if name in _USER:
        return _USER[name][1]
    family = _family(name)
    return PREFIXES[family][2] if family else REGISTRY[name][2]


def _family(name: str) -> str | None:
    return next((p for p in PREFIXES if name.startswith(p)), None)


#: A display name: a letter, then letters, digits, ``_``, ``-`` or ``.``; at most 64 characters.
DISPLAY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def split_display_name(name: str) -> tuple[str, str | None]:
    """``(spec without its name option, display name or None)`` of a prefixed task name:
    ``csv:t.csv?target=y&name=bc`` -> ``("csv:t.csv?target=y", "bc")``. Names without a
    family prefix are returned unchanged."""
    if _family(name) is None or "?" not in name:
        return name, None
    base, _, query = name.partition("?")
    items = query.split("&")
    named = [item for item in items if item.startswith("name=")]
    if not named:
        return name, None
    if len(named) > 1:
        raise TaskError(f"option 'name' is given twice in task '{name}'; give it once")
    display = named[0][len("name=") :]
    if not DISPLAY_NAME.fullmatch(display):
        raise TaskError(
            f"bad display name '{display}' in task '{name}': a letter, then letters, digits, "
            "_, - or . (at most 64 characters), e.g. ?name=bc"
        )
    rest = "&".join(item for item in items if not item.startswith("name="))
    return (f"{base}?{rest}" if rest else base), display


def check_name(name: str) -> None:
    """Raise ``TaskError`` naming the closest valid task when ``name`` is unknown.

    ``csv:`` and ``tfds:`` names get their family's cheap checks (syntax; for ``csv:`` that the
    file exists); their data are only read by ``load``.
    """
    if name in REGISTRY or name in _USER:
        return
    family = _family(name)
    if family:
        spec, _ = split_display_name(name)
        importlib.import_module(PREFIXES[family][0]).check(spec)
        return
    close = difflib.get_close_matches(name, names(), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    usages = ", ".join(usage for _, usage, _ in PREFIXES.values())
    raise TaskError(
        f"unknown task '{name}'{hint}; valid: {', '.join(names())}, {usages}, or a task of your "
        "own: path/to/file.py:function or package.module:function"
    )


@functools.cache
def load(name: str) -> Task:
    """The task called ``name`` (see ``gdbench list tasks``), loaded once per process."""
    check_name(name)
    if name in _USER:
        task = _USER[name][0]()
        if not isinstance(task, Task):
            raise TaskError(f"task '{name}' gave a {type(task).__name__}, not a Task")
        if task.name != name:
            raise TaskError(f"task '{name}' gave a task named '{task.name}'")
        return task
    family = _family(name)
    if family:
        spec, display = split_display_name(name)
        task = importlib.import_module(PREFIXES[family][0]).load(spec)
        return task if display is None else dataclasses.replace(task, name=display)
    module, attr, _ = REGISTRY[name]
    mod = importlib.import_module(module)
    return mod.make(attr) if module == "gdbench.tasks.synthetic" else getattr(mod, attr)()
