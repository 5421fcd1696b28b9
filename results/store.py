"""The run store: a run directory holds a manifest and one Parquet part per (task, model) grid.

```
RUN_DIR/manifest.json          run-level provenance and config (JSON object)
RUN_DIR/rows/<part>.parquet    rows of one grid, in the schema of `gdbench.results.schema`
```
Every file is written atomically (temporary file in the same directory, flush, fsync,
`os.replace`), so a killed run never leaves a half-written manifest or part behind.

Several processes may write one run (a shared directory, e.g. the processes of a
`jax.distributed` run, each writing parts named `<part>.p<process index>`): `load` merges all
parts, and a cell stored twice under the same content key (`cell_key`: same data, model, size,
seed and code, so the same computation) is kept once, a row that is not `failed` first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gdbench.results.schema import (
    CELL_KEY,
    COLUMNS,
    SCHEMA_VERSION,
    SchemaError,
    SchemaVersionError,
    empty_frame,
    validate,
)

MANIFEST = "manifest.json"
ROWS_DIR = "rows"
LOCKS_DIR = "locks"
SAMPLES_DIR = "samples"
TRACES_DIR = "traces"
PART_SUFFIX = ".parquet"
RUN_COLUMN = "run"

_ARROW_TYPES = {
    "str": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
}
ARROW_SCHEMA = pa.schema([pa.field(n, _ARROW_TYPES[c.dtype]) for n, c in COLUMNS.items()])


class NotARunError(ValueError):
    """A path is not a gdbench run directory (no readable manifest.json)."""


class CorruptPartError(ValueError):
    """A stored Parquet part cannot be read (truncated or corrupted)."""


def is_run_dir(path: str | Path) -> bool:
    """True if `path` is a directory holding a manifest.json."""
    return (Path(path) / MANIFEST).is_file()


def safe_name(name: str) -> str:
    """A file-name-safe form of `name` ([A-Za-z0-9._-] only, no leading dot).

    When characters had to be replaced (or a name longer than 200 characters cut to 120), a
    short hash of the original name is appended so that different names (e.g. 'tfds:mnist' and
    'tfds_mnist') never map to the same file. A safe name is returned unchanged, so
    ``safe_name(prefix + safe_name(x))`` is a fixed point.
    """
    if not name:
        raise ValueError("empty name cannot be turned into a file name")
    if len(name) <= 200 and not name.startswith(".") and re.fullmatch(r"[A-Za-z0-9._-]+", name):
        return name  # already safe: unchanged (so that safe_name is idempotent)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:120] or "_"
    if safe != name:
        safe += "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return safe


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest` to RUN_DIR/manifest.json atomically and return its path.

    The stored copy always carries `schema_version` (added as `SCHEMA_VERSION` if absent).
    numpy scalars and arrays and `Path` objects are stored as plain JSON values.
    """
    if not isinstance(manifest, dict):
        raise TypeError(f"manifest must be a dict, got {type(manifest).__name__}")
    stored = {"schema_version": SCHEMA_VERSION, **manifest}
    text = json.dumps(stored, indent=2, default=_json_default, allow_nan=True) + "\n"
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MANIFEST
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def manifest_value(manifest: Mapping[str, Any], key: str) -> Any:
    """`key` from a manifest's top level, else from its `provenance` section (None if absent)."""
    if key in manifest:
        return manifest[key]
    provenance = manifest.get("provenance")
    return provenance.get(key) if isinstance(provenance, Mapping) else None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run. Raises `NotARunError` if there is none or it is unreadable."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise NotARunError(f"not a gdbench run: {run_dir} (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotARunError(f"unreadable {MANIFEST} in {run_dir}: {err}") from None
    if not isinstance(manifest, dict):
        raise NotARunError(f"{path} does not hold a JSON object")
    return manifest


def write_grid(run_dir: str | Path, df: pd.DataFrame, part_name: str) -> Path:
    """Validate the rows of one grid and write them atomically to RUN_DIR/rows/<part>.parquet.

    `part_name` (e.g. f"{task}__{model}") is passed through `safe_name`. Writing the same part
    again replaces it, which is how a resumed run rewrites a grid. Returns the part's path.
    """
    rows = validate(df)
    table = pa.Table.from_pandas(rows, schema=ARROW_SCHEMA, preserve_index=False)
    rows_dir = Path(run_dir) / ROWS_DIR
    rows_dir.mkdir(parents=True, exist_ok=True)
    path = rows_dir / (safe_name(part_name) + PART_SUFFIX)
    atomic_write(path, lambda f: pq.write_table(table, f))
    return path


def part_paths(run_dir: str | Path) -> list[Path]:
    """The Parquet parts of a run, sorted by name."""
    rows_dir = Path(run_dir) / ROWS_DIR
    if not rows_dir.is_dir():
        return []
    return sorted(p for p in rows_dir.glob("*" + PART_SUFFIX) if not p.name.startswith("."))


def load(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Rows of one or many runs, concatenated, with a leading `run` column (the directory name).

    Raises `NotARunError` for a path without manifest.json, `SchemaVersionError` when a run
    was written under another schema version, `SchemaError` for bad rows, and `ValueError`
    when two runs share a directory name.
    """
    run_dirs = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    names = [Path(os.path.abspath(p)).name for p in run_dirs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"two runs are named {name!r}; give each run a distinct directory")
    frames = [_load_run(run_dir, name) for run_dir, name in zip(run_dirs, names, strict=True)]
    if not frames:
        frames = [_with_run(empty_frame(), "")]
    return pd.concat(frames, ignore_index=True)


def _load_run(run_dir: Path, name: str) -> pd.DataFrame:
    manifest = read_manifest(run_dir)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"run {run_dir} has schema_version {version!r}; this gdbench reads schema_version "
            f"{SCHEMA_VERSION}"
        )
    parts = []
    for path in part_paths(run_dir):
        try:
            parts.append(validate(_read_part(path).to_pandas()))
        except SchemaError as err:
            raise type(err)(f"{path}: {err}") from None
    rows = pd.concat(parts, ignore_index=True) if parts else empty_frame()
    rows = dedupe_cells(rows)
    dup = rows.duplicated(subset=list(CELL_KEY))
    if dup.any():
        key = tuple(rows.loc[dup.idxmax(), list(CELL_KEY)].tolist())
        raise SchemaError(f"run {run_dir}: cell {key!r} is stored in more than one part")
    return _with_run(rows, name)


def dedupe_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every non-empty ``cell_key`` kept once: the first row of it that is not
    ``failed`` (parts in name order), else its first row. Rows without a key are kept as they
    are (``load`` refuses two rows of one cell then)."""
    keyed = rows["cell_key"].fillna("") != ""
    if not keyed.any():
        return rows
    failed = (rows["status"] == "failed").to_numpy()
    order = np.argsort(failed, kind="stable")  # non-failed rows first, else in part order
    first = ~rows["cell_key"].iloc[order].duplicated().to_numpy()
    keep = np.zeros(len(rows), dtype=bool)
    keep[order[first]] = True
    keep |= ~keyed.to_numpy()
    return rows[keep].reset_index(drop=True)


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise CorruptPartError(
            f"stored part {path} is unreadable (truncated or corrupted: {first}); delete it and "
            "run the same command again to recompute its cells"
        ) from None


#: ``stored_cells``' reads, by part path: (inode, mtime, size) and the part's cells. A run reads
#: the stored cells once per grid, so without it a suite of G grids would read G^2/2 parts;
#: a part is rewritten only by replacing the file (``atomic_write``), which changes the inode.
_CELLS_READ: dict[Path, tuple[tuple[int, int, int], pd.DataFrame]] = {}


def stored_cells(run_dir: str | Path) -> pd.DataFrame:
    """``part``, ``cell_key`` and ``status`` of every stored row, read without the metrics.

    Parts read before and not replaced since are not read again."""
    frames = []
    for path in part_paths(run_dir):
        path = path.resolve()
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted since it was listed (another process's cleanup)
            continue
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        seen = _CELLS_READ.get(path)
        if seen is None or seen[0] != signature:
            table = _read_part(path, columns=["cell_key", "status"]).to_pandas()
            seen = (signature, table.assign(part=path.name))
            _CELLS_READ[path] = seen
        frames.append(seen[1])
    if not frames:
        return pd.DataFrame({"cell_key": [], "status": [], "part": []}, dtype=object)
    return pd.concat(frames, ignore_index=True)


def delete_part(run_dir: str | Path, name: str) -> None:
    """Remove the part file ``name`` (as listed in ``stored_cells``) from a run."""
    (Path(run_dir) / ROWS_DIR / name).unlink(missing_ok=True)
    _fsync_dir(Path(run_dir) / ROWS_DIR)


@contextlib.contextmanager
def lock(run_dir: str | Path, name: str, blocking: bool = True) -> Iterator[bool]:
    """Hold the advisory lock ``name`` of a run (``fcntl.flock``); yields whether it is held.

    The operating system releases the lock when its process ends, even by SIGKILL, so a killed
    run never leaves a stale lock. With ``blocking=False`` the context yields False at once
    when another process holds the lock.
    """
    locks = Path(run_dir) / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / (safe_name(name) + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def update_manifest(
    run_dir: str | Path, update: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Read, change and write a run's manifest under its lock, so that concurrent writers
    merge their changes instead of overwriting each other's. Returns the stored manifest."""
    with lock(run_dir, "manifest"):
        manifest = update(read_manifest(run_dir))
        write_manifest(run_dir, manifest)
        return manifest


def write_samples(
    run_dir: str | Path,
    name: str,
    samples: np.ndarray,
    real: np.ndarray,
    meta: dict[str, Any],
) -> Path:
    """Store a generative model's samples ``[C, n, D]`` next to real test examples of each
    class (same shape, NaN-padded) as RUN_DIR/samples/<name>.npz, atomically."""
    directory = Path(run_dir) / SAMPLES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (safe_name(name) + ".npz")
    meta_json = json.dumps(meta, default=_json_default)
    atomic_write(
        path,
        lambda f: np.savez(f, samples=np.asarray(samples), real=np.asarray(real), meta=meta_json),
    )
    return path


def read_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every stored sample set of a run: its meta fields plus ``samples`` and ``real`` arrays."""
    out = []
    for path in sorted((Path(run_dir) / SAMPLES_DIR).glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                item = json.loads(str(data["meta"]))
                item["samples"], item["real"] = data["samples"], data["real"]
        except (OSError, ValueError, KeyError) as err:
            raise CorruptPartError(f"stored samples {path} are unreadable: {err}") from None
        out.append(item)
    return out


def write_traces(
    run_dir: str | Path, name: str, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]
) -> Path:
    """Store a grid's training traces as RUN_DIR/traces/<name>.npz, atomically.

    ``arrays`` maps a trace name to an array: ``trace_step`` ``[T]`` (optimiser steps of the trace
    points) and, per diagnostic (e.g. ``d_loss``, ``g_loss``, ``d_acc_real``, ``d_acc_fake``),
    ``[S, T]`` over the seeds of one training size; ``trace_samples`` ``[T, C, k, D]`` (samples of
    the first of those seeds at each trace point, in the task's original units) when kept.
    ``meta`` holds ``task``, ``model``, ``n_train``, ``seeds`` and ``image_shape`` (or None).
    """
    directory = Path(run_dir) / TRACES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (safe_name(name) + ".npz")
    meta_json = json.dumps(meta, default=_json_default)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if "meta" in payload:
        raise ValueError("'meta' is reserved in stored traces")
    atomic_write(path, lambda f: np.savez(f, meta=meta_json, **payload))
    return path


def read_traces(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every stored trace set of a run: its meta fields plus its arrays (see ``write_traces``)."""
    out = []
    for path in sorted((Path(run_dir) / TRACES_DIR).glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                item = json.loads(str(data["meta"]))
                item.update({k: data[k] for k in data.files if k != "meta"})
        except (OSError, ValueError, KeyError) as err:
            raise CorruptPartError(f"stored traces {path} are unreadable: {err}") from None
        out.append(item)
    return out


def _with_run(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    rows.insert(0, RUN_COLUMN, pd.Series([name] * len(rows), dtype=object))
    return rows


def atomic_write(
    path: Path, write: Callable[[IO[bytes]], Any], durable: bool = True, private: bool = False
) -> None:
    """Write ``path`` through ``write(f)`` into a temporary file beside it (``.<name>.*.tmp``),
    then rename it over ``path``: a reader sees the old file or the whole new one, and a failed
    writer leaves no temporary file. ``durable``: also flush the file and its directory to disk
    (run data); caches, which recompute what they lose, skip that. The file gets the mode a
    plain ``open`` would give (0666 less the umask), or 0600 with ``private`` (caches of
    executable code)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON-serializable")
