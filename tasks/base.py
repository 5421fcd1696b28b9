"""The ``Task`` type: a fixed train-pool / test split with its metadata."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Literal

import numpy as np

FeatureKind = Literal["real", "binary", "integer"]
Preprocess = Literal["standardize", "none"]


#: ``Task.transform`` of dequantized integer data (``dequantize``).
DEQUANTIZE = "dequantize(u~U[0,1))"


def dequantize(x: np.ndarray, seed: int) -> np.ndarray:
    """Integer values plus uniform noise in [0, 1), drawn once with a fixed seed: a continuous
    density of the result bounds the discrete likelihood of the integers (Theis et al. 2016)."""
    return (x + np.random.default_rng(seed).uniform(0.0, 1.0, size=x.shape)).astype(np.float32)


class TaskError(ValueError):
    """A task name or task data that cannot be used (one-line message)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A classification task with a fixed split.

    Attributes:
      name: registry name (e.g. ``digits_2v3``).
      x_pool, y_pool: the training pool, ``[N, D]`` float32 and ``[N]`` int32 labels in
        ``0..C-1``; every training subset of every cell is drawn from it.
      x_test, y_test: the held-out test set (never used for fitting or model selection).
      num_classes: C.
      class_names: display names of the classes.
      feature_kind: ``real``, ``binary`` (0/1) or ``integer``; densities are reported only by
        models whose support matches (see ``gdbench.models.base.GenerativeModel.input_support``).
      preprocess: ``standardize`` (per cell: mean and standard deviation of the cell's training
        subset; test data use the same transform; log-likelihoods are reported back in the
        original units) or ``none``.
      description, source, version: provenance for reports.
      split: how the pool/test split was made.
      bayes_accuracy: the Bayes-optimal test accuracy when known (synthetic tasks).
      true_log_lik: mean exact ``log p(x)`` over the test set in nats when known.
      image_shape: for image tasks, the shape each row of ``x`` reshapes to (pixels in
        (H, W, C) order): ``(H, W)`` for single-channel images, ``(H, W, C)`` for colour ones
        (e.g. ``(32, 32, 3)``); None for tasks that are not images.
      transform: what was done to the raw data before the split, e.g. dequantization or
        binarization (empty if nothing).
    """

    name: str
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    feature_kind: FeatureKind
    preprocess: Preprocess
    description: str
    source: str
    version: str
    split: str
    bayes_accuracy: float | None = None
    true_log_lik: float | None = None
    image_shape: tuple[int, ...] | None = None
    transform: str = ""

    @classmethod
    def from_arrays(cls, name: str, x_train, y_train, x_test=None, y_test=None, **kwargs) -> Task:
        """A task from arrays of your own: features ``[N, D]`` and labels (numbers or strings);
        without ``x_test``/``y_test`` a stratified 70/30 split with a fixed seed. Keyword
        arguments: ``description``, ``preprocess`` (``standardize`` or ``none``; default by the
        feature kind), ``image_shape``. See ``gdbench.tasks.arrays.from_arrays``.

        Example::

            import numpy as np, gdbench
            rng = np.random.default_rng(0)
            x, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
            task = gdbench.Task.from_arrays("toy", x, y)
        """
        from gdbench.tasks.arrays import from_arrays

        return from_arrays(name, x_train, y_train, x_test, y_test, **kwargs)

    @property
    def preprocessing(self) -> str:
        """Everything done to the raw data, for result rows: e.g.
        ``dequantize(u~U[0,1))+standardize`` or ``binarize(>=8)+none``."""
        return "+".join(filter(None, [self.transform, self.preprocess]))

    @property
    def dim(self) -> int:
        return int(self.x_pool.shape[1])

    @property
    def pool_size(self) -> int:
        return int(self.x_pool.shape[0])

    @functools.cached_property
    def checksum(self) -> str:
        """SHA-256 of the pool and test arrays, as stored (dtype and order included).

        Computed once per task object (a task's arrays are not modified after loading; a
        ``dataclasses.replace`` copy computes its own): run keys ask for it per cell, and on an
        image task (MNIST: 188 MB of pixels) each computation takes a few tenths of a second."""
        h = hashlib.sha256()
        for a in (self.x_pool, self.y_pool, self.x_test, self.y_test):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def metadata(self) -> dict:
        """Provenance of the task for a run's manifest."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "version": self.version,
            "split": self.split,
            "pool_size": self.pool_size,
            "test_size": int(self.x_test.shape[0]),
            "dim": self.dim,
            "num_classes": self.num_classes,
            "feature_kind": self.feature_kind,
            "preprocess": self.preprocess,
            "transform": self.transform,
            "sha256": self.checksum,
            "bayes_accuracy": self.bayes_accuracy,
            "true_log_lik": self.true_log_lik,
        }


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pool and test indices with each class split in the same proportion (sorted indices)."""
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        pool.append(idx[k:])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(test))
