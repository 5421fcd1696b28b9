"""Tasks from arrays of your own: ``Task.from_arrays(...)`` and ``npz:<path>`` files.

``from_arrays(name, x_train, y_train, x_test, y_test)`` checks and converts the arrays into a
``Task``: features to float32 ``[N, D]`` (finite), labels (numbers or strings) to
``0..C-1`` in sorted order of their values, every class present in both parts; the feature
kind is ``binary`` when every value is 0 or 1 (no standardization then), ``integer`` when every
value is whole, else ``real``. Without a test set (``x_test`` None) the data are split
stratified, 30 % test, with a fixed seed.

``npz:<path>`` reads a NumPy ``.npz`` file (``numpy.savez``) holding ``x_train``, ``y_train``
and optionally ``x_test``, ``y_test`` (string labels allowed as a fixed-width string array);
it is read without pickles, so it runs no code.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from gdbench.tasks.base import Task, TaskError, stratified_split

#: Test fraction and split seed when no test set is given.
TEST_FRACTION, SPLIT_SEED = 0.3, 0
PREFIX = "npz:"
USAGE = "npz:<path to a .npz file with x_train, y_train[, x_test, y_test]>"
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def _as_features(name: str, part: str, x) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise TaskError(f"task '{name}': {part} is not numeric") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise TaskError(f"task '{name}': {part} must be [examples, features], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise TaskError(f"task '{name}': {part} holds NaN or infinite values")
    return x


def from_arrays(
    name: str,
    x_train,
    y_train,
    x_test=None,
    y_test=None,
    *,
    description: str = "",
    preprocess: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Task:
    """A ``Task`` from arrays (see the module docstring); raises ``TaskError`` in one line."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TaskError(f"task name {name!r} must be 1-200 printable characters")
    x_train = _as_features(name, "x_train", x_train)
    y_train = np.asarray(y_train).reshape(-1)
    if len(y_train) != len(x_train):
        raise TaskError(f"task '{name}': {len(x_train)} rows in x_train, {len(y_train)} labels")
    if (x_test is None) != (y_test is None):
        raise TaskError(f"task '{name}': give both x_test and y_test, or neither")
    if x_test is not None:
        x_test = _as_features(name, "x_test", x_test)
        y_test = np.asarray(y_test).reshape(-1)
        if x_test.shape[1] != x_train.shape[1]:
            raise TaskError(
                f"task '{name}': x_test has {x_test.shape[1]} features, x_train {x_train.shape[1]}"
            )
        if len(y_test) != len(x_test):
            raise TaskError(f"task '{name}': {len(x_test)} rows in x_test, {len(y_test)} labels")
        labels = np.concatenate([y_train, y_test])
    else:
        labels = y_train
    values, codes = np.unique(labels, return_inverse=True)
    codes = codes.astype(np.int32)
    if len(values) < 2:
        raise TaskError(f"task '{name}' has a single class; a classification task needs two")
    if x_test is None:
        pool, test = stratified_split(codes, TEST_FRACTION, SPLIT_SEED)
        x_pool, y_pool, x_test, y_test = x_train[pool], codes[pool], x_train[test], codes[test]
        split = f"stratified {1 - TEST_FRACTION:.0%} pool / {TEST_FRACTION:.0%} test, seed 0"
    else:
        x_pool, y_pool = x_train, codes[: len(y_train)]
        y_test = codes[len(y_train) :]
        split = "the given train / test arrays"
    for c, value in enumerate(values):
        if not (np.any(y_pool == c) and np.any(y_test == c)):
            raise TaskError(
                f"task '{name}': class {value!r} is missing from the training or the test part"
            )
    x_all = np.concatenate([x_pool, x_test])
    if np.all((x_all == 0) | (x_all == 1)):
        kind = "binary"
    elif np.all(x_all == np.round(x_all)):
        kind = "integer"
    else:
        kind = "real"
    if preprocess is None:
        preprocess = "none" if kind == "binary" else "standardize"
    if preprocess not in ("standardize", "none"):
        raise TaskError(f"task '{name}': preprocess must be 'standardize' or 'none'")
    h = hashlib.sha256()
    for a in (x_pool, y_pool, x_test, y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return Task(
        name=name,
        x_pool=x_pool,
        y_pool=y_pool,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(values),
        class_names=tuple(str(v) for v in values),
        feature_kind=kind,
        preprocess=preprocess,
        description=description
        or f"arrays: {len(x_pool)} + {len(x_test)} rows, {x_pool.shape[1]} {kind} features, "
        f"{len(values)} classes",
        source="arrays",
        version=f"sha256:{h.hexdigest()[:12]}",
        split=split,
        image_shape=image_shape,
    )


def _path(name: str) -> Path:
    path = Path(name[len(PREFIX) :]).expanduser()
    if not path.is_file():
        raise TaskError(f"npz file '{path}' of task '{name}' does not exist; use {USAGE}")
    return path


def check(name: str) -> None:
    """Cheap check of an ``npz:`` name: that the file exists."""
    _path(name)


def load(name: str) -> Task:
    """The task stored in the ``.npz`` file named by ``name`` (read without pickles)."""
    path = _path(name)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise TaskError(f"npz file '{path}' is unreadable ({err}); use {USAGE}") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise TaskError(
            f"npz file '{path}' has no {', '.join(missing)}; it holds {', '.join(arrays) or '—'}"
        )
    return from_arrays(
        name,
        arrays["x_train"],
        arrays["y_train"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        description=f"npz file {path.name}",
    )
