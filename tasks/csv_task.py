"""A user's own table as a task: ``csv:<path>[?target=<column>]``.

The file is a comma-separated UTF-8 table with a header row (read with ``pandas.read_csv``).
A relative path is taken from the current directory; everything after the first ``?`` is the
query, so the path itself cannot contain ``?``.

- **Target**: the column named by ``?target=<column>`` (percent-escapes such as ``%26`` are
  decoded, so any column can be named); else the first column called ``label``, ``target``,
  ``class`` or ``y`` (case-insensitive, surrounding spaces ignored); else the last column.
- **Classes**: the target's cells, as text, are the class names (string or numeric labels).
  They are numbered 0..C-1 in sorted order: by numeric value when every label is a number
  (so labels 0..C-1 keep their numbers and ``10`` comes after ``9``), else by their text.
- **Features**: every other column, numeric (``True``/``False`` columns count as 0/1), stored
  as float32 and parsed with correct rounding. ``feature_kind`` is ``binary`` when every value is
  0 or 1 (no preprocessing), ``integer`` when every value is a whole number, else ``real``
  (both standardized per cell by the engine).
- **Split**: stratified 70 % training pool / 30 % test set, NumPy seed 0 (as the bundled
  tasks), rows kept in file order within each part. Every class needs at least 2 rows, so that
  it appears in both parts.
- **Provenance**: ``source`` is the absolute path, ``version`` is ``sha256:`` and the first 12
  hex digits of the file's SHA-256; the data are read from the same bytes that are hashed.

Only empty cells count as missing (``NA``, ``None``, ``null`` are ordinary labels). Missing,
NaN or infinite feature values, missing labels, a non-numeric feature column, a single class, a
class with a single row and a table without feature columns are errors: ``TaskError`` with one
line naming the column (and a row or value) and what would be valid. Nothing is imputed or
dropped silently.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from gdbench.tasks.base import Task, TaskError, stratified_split

PREFIX = "csv:"
USAGE = "csv:<path>[?target=<column>]"
QUERY_KEYS = ("target",)
TARGET_NAMES = ("label", "target", "class", "y")
TEST_FRACTION = 0.3
SPLIT_SEED = 0
_MAX_LISTED = 20  # columns listed in an error message


@dataclass(frozen=True)
class CsvSpec:
    """A parsed ``csv:`` task name."""

    name: str
    path: str  # as given
    target: str | None

    @property
    def abspath(self) -> Path:
        return Path(os.path.abspath(os.path.expanduser(self.path)))


def parse(name: str) -> CsvSpec:
    """Split ``csv:<path>[?target=<column>]`` into its parts (no file access)."""
    if not name.startswith(PREFIX):
        raise TaskError(f"task {_q(name)} is not a CSV task; use {USAGE}")
    path, sep, query = name[len(PREFIX) :].partition("?")
    if not path:
        raise TaskError(f"task {_q(name)} names no file; use {USAGE}")
    target = None
    if sep:
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            if key not in QUERY_KEYS:
                raise TaskError(
                    f"unknown option {_q(key)} in task {_q(name)}; valid: "
                    f"{', '.join(QUERY_KEYS)} ({USAGE})"
                )
            if not eq or not value:
                raise TaskError(
                    f"option {_q(key)} in task {_q(name)} needs a value: ?{key}=<column>"
                )
            if target is not None:
                raise TaskError(f"option {_q(key)} is given twice in task {_q(name)}; give it once")
            target = unquote(value)
    return CsvSpec(name=name, path=path, target=target)


def check(name: str) -> None:
    """Cheap checks of a ``csv:`` name: syntax and that the file exists (the file is not read)."""
    _existing_file(parse(name))


def load(name: str) -> Task:
    """Read, check and split the table named by ``name``."""
    spec = parse(name)
    path = _existing_file(spec)
    data = _read_bytes(path)
    frame, target = _parse_table(spec, path, data)
    features = [c for c in frame.columns if c != target]
    if not features:
        hint = _separator_hint(frame)
        raise TaskError(
            f"CSV file {_q(path)} has no feature columns, only the target column {_q(target)}; it "
            f"needs at least one numeric feature column{hint}"
        )
    x = np.stack([_feature_values(path, frame[c], c) for c in features], axis=1)
    y, class_names = _labels(path, frame[target], target)

    pool, test = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
    for c, cname in enumerate(class_names):  # guaranteed by the >= 2 rows per class check
        if not (np.any(y[pool] == c) and np.any(y[test] == c)):  # pragma: no cover
            raise TaskError(f"class {_q(cname)} of {_q(path)} is missing from the pool or test set")

    if np.all((x == 0) | (x == 1)):
        kind = "binary"
    elif np.all(x == np.round(x)):
        kind = "integer"
    else:
        kind = "real"
    digest = hashlib.sha256(data).hexdigest()
    rows, dim, classes = x.shape[0], x.shape[1], len(class_names)
    return Task(
        name=name,
        x_pool=x[pool],
        y_pool=y[pool],
        x_test=x[test],
        y_test=y[test],
        num_classes=classes,
        class_names=class_names,
        feature_kind=kind,
        preprocess="none" if kind == "binary" else "standardize",
        description=(
            f"CSV table {path.name}: {rows} rows, {dim} {kind} feature"
            f"{'s' if dim != 1 else ''}, {classes} classes (target column {_q(target)})"
        ),
        source=str(path),
        version=f"sha256:{digest[:12]}",
        split=f"stratified {1 - TEST_FRACTION:.0%} pool / {TEST_FRACTION:.0%} test, numpy seed "
        f"{SPLIT_SEED}",
    )


# --- reading -------------------------------------------------------------------------------


def _existing_file(spec: CsvSpec) -> Path:
    path = spec.abspath
    if path.is_dir():
        raise TaskError(
            f"{_q(spec.path)} (task {_q(spec.name)}) is a directory, not a CSV file; use {USAGE}"
        )
    if not path.exists():
        where = f" (looked for {_q(path)})" if str(path) != spec.path else ""
        raise TaskError(
            f"CSV file {_q(spec.path)} of task {_q(spec.name)} does not exist{where}; give an "
            f"existing file: {USAGE}"
        )
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TaskError(f"cannot read CSV file {_q(path)}: {err.strerror or err}") from None


def _parse_table(spec: CsvSpec, path: Path, data: bytes) -> tuple[pd.DataFrame, str]:
    """The table (the target column kept as text) and the name of its target column."""
    if not data.strip():
        raise TaskError(f"CSV file {_q(path)} is empty; it needs a header row and data rows")
    if b"\x00" in data:
        raise TaskError(
            f"{_q(path)} is not a CSV file: it holds binary data (NUL bytes); give a "
            "comma-separated text file with a header row"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TaskError(
            f"{_q(path)} is not a UTF-8 text file (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); save it as a UTF-8 comma-separated file"
        ) from None
    # Only empty cells are missing; numbers parse with correct rounding ("round_trip").
    options = {"keep_default_na": False, "na_values": [""], "float_precision": "round_trip"}
    try:
        header = pd.read_csv(io.StringIO(text), nrows=0, **options)
        target = _target_column(spec, path, [str(c) for c in header.columns])
        # The labels stay text, so that e.g. '01' and '1' stay two classes.
        frame = pd.read_csv(io.StringIO(text), dtype={target: object}, **options)
    except pd.errors.EmptyDataError:
        raise TaskError(f"CSV file {_q(path)} has no header row; it needs one") from None
    except (pd.errors.ParserError, ValueError) as err:
        if isinstance(err, TaskError):
            raise
        raise TaskError(f"{_q(path)} cannot be read as CSV: {_first_line(err)}") from None
    if len(frame) == 0:
        raise TaskError(f"CSV file {_q(path)} has a header but no data rows")
    return frame, target


def _target_column(spec: CsvSpec, path: Path, columns: list[str]) -> str:
    if spec.target is not None:
        if spec.target in columns:
            return spec.target
        close = difflib.get_close_matches(spec.target, columns, n=1, cutoff=0.6)
        hint = f" (did you mean {_q(close[0])}?)" if close else ""
        raise TaskError(
            f"column {_q(spec.target)} given by ?target= is not in {_q(path)}{hint}; columns: "
            f"{_list_columns(columns)}"
        )
    for c in columns:
        if c.strip().lower() in TARGET_NAMES:
            return c
    return columns[-1]


def _list_columns(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_MAX_LISTED])
    more = len(columns) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _separator_hint(frame: pd.DataFrame) -> str:
    header = str(frame.columns[0])
    for sep, word in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if sep in header:
            return f" (the header looks separated by {word}; gdbench reads comma-separated files)"
    return ""


def _feature_values(path: Path, column: pd.Series, name: str) -> np.ndarray:
    """A feature column as float32; one-line TaskError for non-numeric, missing or inf values."""
    values = column.to_numpy()
    if column.dtype == bool:
        return values.astype(np.float32)
    if column.dtype == object:
        values = _parse_numbers(path, column, name, "feature")
    values = values.astype(np.float64)
    missing = np.isnan(values)
    if missing.any():
        raise TaskError(
            f"feature column {_q(name)} of {_q(path)} has {int(missing.sum())} empty or NaN "
            f"cell(s) (first at data row {int(np.argmax(missing)) + 1}); fill them in or drop "
            "those rows (gdbench does not impute)"
        )
    with np.errstate(over="ignore"):
        as_f32 = values.astype(np.float32)
    bad = ~np.isfinite(as_f32)
    if bad.any():
        first = int(np.argmax(bad))
        raise TaskError(
            f"feature column {_q(name)} of {_q(path)} has {int(bad.sum())} infinite value(s) or "
            f"value(s) beyond the float32 range (first at data row {first + 1}: "
            f"{float(values[first])!r}); features must be finite numbers within +-3.4e38"
        )
    return as_f32


def _parse_numbers(path: Path, column: pd.Series, name: str, what: str) -> np.ndarray:
    """Text cells as float64 (Python's correctly rounded parser); empty cells become NaN."""
    out = np.empty(len(column), dtype=np.float64)
    for i, v in enumerate(column.tolist()):
        if isinstance(v, float):  # an empty cell (NaN) or a number pandas parsed already
            out[i] = v
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise TaskError(
                f"{what} column {_q(name)} of {_q(path)} is not numeric: data row {i + 1} holds "
                f"{v!r}; feature columns must hold numbers (name the class column with "
                "?target=<column>)"
            ) from None
    return out


def _labels(path: Path, column: pd.Series, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices 0..C-1 and class names; one-line TaskError for unusable labels."""
    missing = column.isna().to_numpy()
    if missing.any():
        raise TaskError(
            f"target column {_q(name)} of {_q(path)} has {int(missing.sum())} empty cell(s) (first "
            f"at data row {int(np.argmax(missing)) + 1}); every row needs a class label"
        )
    text = np.array([_label_text(v) for v in column.tolist()], dtype=object)
    names = sorted(set(text.tolist()), key=_label_key(text))
    if len(names) < 2:
        raise TaskError(
            f"target column {_q(name)} of {_q(path)} has a single class {_q(names[0])}; a "
            "classification task needs at least 2 classes (choose the class column with "
            "?target=<column>)"
        )
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[t] for t in text], dtype=np.int32)
    counts = np.bincount(y, minlength=len(names))
    if counts.min() < 2:
        rare = [names[c] for c in np.flatnonzero(counts < 2)]
        others = f" ({len(rare)} classes have a single row)" if len(rare) > 1 else ""
        regression = (
            f"; {len(names)} distinct values in {len(y)} rows: is {_q(name)} really a class label?"
            if len(names) > max(10, len(y) / 2)
            else ""
        )
        raise TaskError(
            f"class {_q(rare[0])} of target column {_q(name)} in {_q(path)} has a single "
            f"row{others}; every class needs at least 2 rows (one for the training pool, one "
            f"for the test set){regression}"
        )
    return y, tuple(names)


def _label_text(v) -> str:
    """A label cell as text. Cells pandas parsed as numbers are shown as they would be written."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def _label_key(text: np.ndarray):
    """Sort key: numeric when every label is a finite number, else by text."""
    numbers = {}
    for t in set(text.tolist()):
        try:
            value = float(t)
        except ValueError:
            return lambda t: t
        if not np.isfinite(value):
            return lambda t: t
        numbers[t] = value
    return lambda t: (numbers[t], t)


def _q(value) -> str:
    """``value`` quoted for a one-line message (newlines and other controls escaped)."""
    return repr(str(value))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
