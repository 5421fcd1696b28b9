"""Prepared TensorFlow Datasets image classification data: ``tfds:<name>`` (e.g. ``tfds:mnist``).

Read with ``tensorflow_datasets.data_source(name, data_dir=..., download=False)``: random access
to prepared ArrayRecord (or Parquet) files, which needs no TensorFlow. Nothing is ever
downloaded here. The dataset's ``train`` split is the training pool and its ``test`` split the
test set. The image feature (``image``, else the one image feature) is flattened in
(H, W, C) order to float32 ``[N, H*W*C]``; the class label (``label``, else the one ClassLabel
feature) becomes int32 with the dataset's class names. ``feature_kind`` is ``binary`` when every
pixel is 0 or 1, ``integer`` for integer pixels (e.g. uint8), else ``real``; ``image_shape`` is
(H, W) for single-channel images. ``version`` records the dataset version and the TFDS release.

Data directory: ``$GDBENCH_TFDS_DIR``, else ``$TFDS_DATA_DIR``, else TFDS's default
(``~/tensorflow_datasets``). A dataset that is not prepared there gives a one-line ``TaskError``
with the command that prepares it. Preparing an image dataset needs network access and the
``tensorflow`` package (TFDS encodes images with it), and TFDS 4.9.10 also imports
``importlib_resources`` when preparing. ``tensorflow_datasets`` is imported only when a
``tfds:`` task is loaded.

Later: a ``gdbench prepare`` command that runs that preparation, and the ``images`` suite built
on these tasks.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from pathlib import Path

import numpy as np

from tasks.base import Task, TaskError

PREFIX = "tfds:"
ENV_DIR = "GDBENCH_TFDS_DIR"
TFDS_ENV_DIR = "TFDS_DATA_DIR"
POOL_SPLIT = "train"
TEST_SPLIT = "test"

# What TFDS raises for a dataset it cannot open: a bad version (AssertionError), a bad
# config or name syntax or an unknown split (ValueError, KeyError), data that are not prepared
# or not in a random-access format (NotImplementedError), unreadable files (OSError).
# DatasetNotFoundError (a ValueError) is handled first, as an unknown name.
_TFDS_OPEN_ERRORS = (AssertionError, KeyError, ValueError, NotImplementedError, OSError)
_CONSTRUCT_PREFIX = re.compile(r'^Failed to construct dataset "[^"]*", builder_kwargs "[^"]*": ')


def dataset_name(name: str) -> str:
    """The TFDS name in ``tfds:<name>`` (``<name>`` may carry ``/config`` and ``:version``)."""
    if not name.startswith(PREFIX):
        raise TaskError(f"task '{name}' is not a TFDS task; use tfds:<name>, e.g. tfds:mnist")
    ds = name[len(PREFIX) :]
    if not ds or ds != ds.strip() or any(ch.isspace() for ch in ds):
        raise TaskError(
            f"task '{name}' needs a TFDS dataset name without spaces: tfds:<name>, e.g. tfds:mnist"
        )
    return ds


def check(name: str) -> None:
    """Cheap syntax check of a ``tfds:`` name (imports nothing, reads nothing)."""
    dataset_name(name)


def data_dir() -> str:
    """The TFDS data directory gdbench reads: $GDBENCH_TFDS_DIR, $TFDS_DATA_DIR, else TFDS's."""
    for var in (ENV_DIR, TFDS_ENV_DIR):
        value = os.environ.get(var)
        if value:
            return os.path.abspath(os.path.expanduser(value))
    from tensorflow_datasets.core import constants  # ~/tensorflow_datasets

    return os.path.abspath(os.path.expanduser(constants.DATA_DIR))


def prepare_command(ds: str, root: str) -> str:
    """A shell command that prepares ``ds`` in ``root`` in a format ``data_source`` can read."""
    # With an explicit data_dir, TFDS would default to TFRecord files, which have no random
    # access; array_record is what tfds.data_source itself picks without a data_dir.
    return (
        'python -c "import tensorflow_datasets as tfds; '
        f"tfds.data_source({ds!r}, data_dir={root!r}, download=True, "
        "builder_kwargs={'file_format': 'array_record'})\""
    )


def load(name: str) -> Task:
    """Load a prepared TFDS dataset (never downloads)."""
    ds = dataset_name(name)
    import tensorflow_datasets as tfds

    root = data_dir()
    with _quiet_absl():  # TFDS warns on stderr about what the one-line error below says
        try:
            pool_src, test_src = tfds.data_source(
                ds, split=[POOL_SPLIT, TEST_SPLIT], data_dir=root, download=False
            )
        except tfds.core.DatasetNotFoundError:
            raise _unknown_dataset(tfds, ds) from None
        except _TFDS_OPEN_ERRORS as err:
            raise _diagnose(tfds, ds, root, err) from None

    info = pool_src.dataset_info
    image_key, label_key = _pick_features(ds, info.features)
    label_feature = info.features[label_key]
    num_classes = int(label_feature.num_classes)
    class_names = tuple(str(n) for n in label_feature.names)
    x_pool, y_pool, shape = _to_arrays(ds, pool_src, POOL_SPLIT, image_key, label_key)
    x_test, y_test, test_shape = _to_arrays(ds, test_src, TEST_SPLIT, image_key, label_key)
    if test_shape != shape:
        raise TaskError(
            f"TFDS dataset '{ds}' has {shape} images in '{POOL_SPLIT}' but {test_shape} in "
            f"'{TEST_SPLIT}'; gdbench needs one image shape"
        )
    for split, y in ((POOL_SPLIT, y_pool), (TEST_SPLIT, y_test)):
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            raise TaskError(
                f"TFDS dataset '{ds}' split '{split}' has label {int(y[bad][0])}, outside "
                f"0..{num_classes - 1} of its {num_classes} classes"
            )
    absent = np.setdiff1d(np.arange(num_classes), y_pool)
    if absent.size:
        raise TaskError(
            f"class '{class_names[absent[0]]}' of TFDS dataset '{ds}' has no example in the "
            f"'{POOL_SPLIT}' split; every class needs training examples"
        )

    x_all = (x_pool, x_test)
    if all(np.all((x == 0) | (x == 1)) for x in x_all):
        kind = "binary"
    elif all(np.all(x == np.round(x)) for x in x_all):
        kind = "integer"
    else:
        kind = "real"
    h, w, c = shape
    version = getattr(info, "version", None)
    return Task(
        name=name,
        x_pool=x_pool,
        y_pool=y_pool,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        class_names=class_names,
        feature_kind=kind,
        preprocess="none" if kind == "binary" else "standardize",
        description=(
            f"TFDS {ds}: {h}x{w}x{c} images as {h * w * c} {kind} features, {num_classes} "
            f"classes; {len(y_pool)} train / {len(y_test)} test examples"
        ),
        source=f"tfds:{ds} in {root}",
        version=f"{getattr(info, 'name', ds)} {version} (tensorflow-datasets {tfds.__version__})",
        split=f"TFDS '{POOL_SPLIT}' split as pool, '{TEST_SPLIT}' split as test set",
        image_shape=(h, w) if c == 1 else None,
    )


def _pick_features(ds: str, features) -> tuple[str, str]:
    import tensorflow_datasets as tfds

    keys = list(features.keys())
    images = [k for k in keys if isinstance(features[k], tfds.features.Image)]
    labels = [k for k in keys if isinstance(features[k], tfds.features.ClassLabel)]
    image = "image" if "image" in keys else (images[0] if len(images) == 1 else None)
    label = "label" if "label" in labels else (labels[0] if len(labels) == 1 else None)
    if image is None or label is None:
        raise TaskError(
            f"TFDS dataset '{ds}' is not an image classification dataset gdbench can read: it "
            f"needs an 'image' feature and a 'label' class feature (it has: {', '.join(keys)})"
        )
    return image, label


def _to_arrays(ds: str, source, split: str, image_key: str, label_key: str):
    """All examples of a split: float32 ``[N, H*W*C]`` images, int32 labels, (H, W, C)."""
    n = len(source)
    if n == 0:
        raise TaskError(f"TFDS dataset '{ds}' has no examples in its '{split}' split")
    first = np.asarray(source[0][image_key])
    if first.ndim == 2:
        first = first[..., None]
    if first.ndim != 3:
        raise TaskError(
            f"TFDS dataset '{ds}' feature '{image_key}' has shape {first.shape}; gdbench reads "
            "images of shape (H, W) or (H, W, C)"
        )
    shape = tuple(int(s) for s in first.shape)
    x = np.empty((n, first.size), dtype=np.float32)
    y = np.empty(n, dtype=np.int32)
    for i in range(n):
        example = source[i]
        image = np.asarray(example[image_key])
        if image.size != first.size or image.shape[:2] != shape[:2]:
            raise TaskError(
                f"TFDS dataset '{ds}' split '{split}' has images of different shapes "
                f"({shape} and {image.shape} at index {i}); gdbench needs one image shape"
            )
        x[i] = image.reshape(-1)
        y[i] = int(example[label_key])
    return x, y, shape


def _unknown_dataset(tfds, ds: str) -> TaskError:
    base = ds.split("/")[0].split(":")[0]
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(base, known, n=1, cutoff=0.6)
    hint = f" (did you mean 'tfds:{close[0]}'?)" if close else ""
    return TaskError(
        f"unknown TFDS dataset '{ds}'{hint}; valid: the names of "
        "tensorflow_datasets.list_builders(), e.g. tfds:mnist"
    )


def _diagnose(tfds, ds: str, root: str, err: BaseException) -> TaskError:
    """A one-line TaskError saying why ``data_source`` failed (not prepared, wrong format...)."""
    try:
        builder = tfds.builder(ds, data_dir=root)
    except tfds.core.DatasetNotFoundError:
        return _unknown_dataset(tfds, ds)
    except (AssertionError, ValueError) as bad:
        why = _CONSTRUCT_PREFIX.sub("", _first_line(bad))
        why = why.split(" Here are ")[0]
        return TaskError(
            f"TFDS dataset '{ds}' cannot be loaded: {why} (use tfds:<name>[/<config>][:<version>], "
            "e.g. tfds:mnist)"
        )
    if not builder.is_prepared():
        return TaskError(
            f"TFDS dataset '{ds}' is not prepared in {root}; with network access (and the "
            f"tensorflow package) run: {prepare_command(ds, root)} (or set {ENV_DIR} to a "
            "directory where it is prepared)"
        )
    splits = sorted(str(s) for s in builder.info.splits)
    missing = [s for s in (POOL_SPLIT, TEST_SPLIT) if s not in splits]
    if missing:
        return TaskError(
            f"TFDS dataset '{ds}' has no '{missing[0]}' split (it has: {', '.join(splits)}); "
            f"gdbench uses '{POOL_SPLIT}' as the training pool and '{TEST_SPLIT}' as the test set"
        )
    if isinstance(err, NotImplementedError):
        fmt = getattr(builder.info.file_format, "value", builder.info.file_format)
        return TaskError(
            f"TFDS dataset '{ds}' in {Path(root)} is stored as {fmt} files, which have no random "
            f"access; prepare it again as array_record in another directory (set {ENV_DIR} to "
            f"it), with network access and tensorflow: {prepare_command(ds, '<dir>')}"
        )
    return TaskError(
        f"TFDS dataset '{ds}' in {root} cannot be read: {type(err).__name__}: {_first_line(err)}"
    )


@contextlib.contextmanager
def _quiet_absl():
    """Hold back TFDS's (absl) warnings, e.g. 'Variant folder ... has no dataset_info.json'."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
