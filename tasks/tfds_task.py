"""Prepared TensorFlow Datasets image classification data: ``tfds:<name>`` (e.g. ``tfds:mnist``).

Names: ``tfds:<name>[/<config>][:<version>][?binarize=<t>]``: the part before ``?`` is TFDS's own
dataset name (which never contains ``?``), the query holds gdbench's options. The one option,
``binarize=<t>`` with ``0 < t <= 1``, thresholds every pixel at ``pixel / max >= t`` (``max``
is 255 for uint8 images, 65535 for uint16, 1 for float pixels), giving ``binary`` features
that are used as they are (``preprocess`` ``none``) and recorded in ``Task.transform``.
``tfds:mnist?binarize=0.5`` is *the* binarized MNIST of gdbench: MNIST thresholded at one
half, with MNIST's labels and split. TFDS's own ``binarized_mnist`` (the fixed stochastic
binarization of Salakhutdinov & Murray, 2008, ICML, as split by Larochelle & Murray, 2011,
AISTATS) cannot be used as a task: it has no labels.

Read with ``tensorflow_datasets.data_source(name, data_dir=..., download=False)``: random access
to prepared ArrayRecord (or Parquet) files, which needs no TensorFlow. Nothing is downloaded by
``load``. The dataset's ``train`` split is the training pool and its ``test`` split the test
set. The image feature (``image``, else the one image feature) is flattened in (H, W, C) order
to float32 ``[N, H*W*C]``; the class label (``label``, else the one ClassLabel feature) becomes
int32 with the dataset's class names. ``feature_kind`` is ``binary`` when every pixel is 0 or 1;
integer pixels (e.g. uint8) are dequantized by default, as the bundled ``digits`` are: plus
U[0, 1) noise drawn once with fixed seeds (``Task.transform`` ``dequantize(u~U[0,1))``), so that
continuous densities give bits/dim bounding the discrete likelihood (``?dequantize=0`` keeps
them ``integer``); other pixels are ``real``; ``image_shape`` is (H, W) for
single-channel images and (H, W, C) for colour ones. ``version`` records the dataset version
and the TFDS release. Examples are read in batches (``__getitems__``) and images decoded by the
image feature itself: over twice as fast as reading example by example.

Data directory: ``$GDBENCH_TFDS_DIR``, else ``$TFDS_DATA_DIR``, else TFDS's default
(``~/tensorflow_datasets``). A dataset that is not prepared there gives a one-line ``TaskError``
with the command that prepares it: ``gdbench prepare tfds:<name>`` (``prepare`` here), which
downloads and prepares the dataset as ArrayRecord files. That needs network access and the
``tensorflow`` package (TFDS encodes images with it); TFDS 4.9.10 also imports
``importlib_resources`` when preparing (both pinned in the ``prepare`` extra of
pyproject.toml: ``pip install -e '.[prepare]'``).
``tensorflow_datasets`` is imported only when a ``tfds:`` task is loaded or prepared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gdbench.tasks.base import DEQUANTIZE, Task, TaskError, dequantize

PREFIX = "tfds:"
USAGE = "tfds:<name>[/<config>][:<version>][?binarize=<t>|?dequantize=0]"
QUERY_KEYS = ("binarize", "dequantize")
ENV_DIR = "GDBENCH_TFDS_DIR"
TFDS_ENV_DIR = "TFDS_DATA_DIR"
POOL_SPLIT = "train"
TEST_SPLIT = "test"
#: What preparing needs besides tensorflow-datasets (the ``prepare`` extra of pyproject.toml).
PREPARE_REQUIREMENTS = ("tensorflow==2.21.0", "importlib_resources==7.1.0")
#: Examples per batched read.
CHUNK = 2048
#: Splits with more examples than this get a note on stderr while they are read.
NOTE_ABOVE = 20_000

# What TFDS raises for a dataset it cannot open: a bad version (AssertionError), a bad
# config or name syntax or an unknown split (ValueError, KeyError), data that are not prepared
# or not in a random-access format (NotImplementedError), unreadable files (OSError).
# DatasetNotFoundError (a ValueError) is handled first, as an unknown name.
_TFDS_OPEN_ERRORS = (AssertionError, KeyError, ValueError, NotImplementedError, OSError)
_CONSTRUCT_PREFIX = re.compile(r'^Failed to construct dataset "[^"]*", builder_kwargs "[^"]*": ')


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """A parsed ``tfds:`` task name: the TFDS dataset name and gdbench's options."""

    name: str
    dataset: str
    binarize: float | None = None
    #: Add U[0, 1) noise to integer pixels (the default; ``?dequantize=0`` keeps them integer).
    dequantize: bool = True


def parse(name: str) -> TfdsSpec:
    """Split ``tfds:<name>[?binarize=<t>]`` into its parts (imports nothing, reads nothing)."""
    if not name.startswith(PREFIX):
        raise TaskError(f"task '{name}' is not a TFDS task; use {USAGE}, e.g. tfds:mnist")
    ds, sep, query = name[len(PREFIX) :].partition("?")
    if not ds or ds != ds.strip() or any(ch.isspace() for ch in ds):
        raise TaskError(
            f"task '{name}' needs a TFDS dataset name without spaces: {USAGE}, e.g. tfds:mnist"
        )
    options: dict[str, str] = {}
    if sep:
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            if key not in QUERY_KEYS:
                raise TaskError(
                    f"unknown option '{key}' in task '{name}'; valid: {', '.join(QUERY_KEYS)} "
                    f"({USAGE}, e.g. tfds:mnist?binarize=0.5)"
                )
            if key in options:
                raise TaskError(f"option '{key}' is given twice in task '{name}'; give it once")
            options[key] = value if eq else ""
    binarize = None
    if "binarize" in options:
        try:
            binarize = float(options["binarize"])
        except ValueError:
            binarize = math.nan
        if not 0.0 < binarize <= 1.0:  # also rejects NaN
            raise TaskError(
                f"option 'binarize' in task '{name}' needs a threshold t with 0 < t <= 1 on "
                "the pixel / max scale, e.g. tfds:mnist?binarize=0.5"
            )
    dequantize = options.get("dequantize", "1")
    if dequantize not in ("0", "1"):
        raise TaskError(
            f"option 'dequantize' in task '{name}' is 0 or 1 (default 1: integer pixels get "
            "U[0,1) noise), e.g. tfds:mnist?dequantize=0"
        )
    if binarize is not None and "dequantize" in options:
        raise TaskError(f"task '{name}' cannot both binarize and dequantize; give one option")
    return TfdsSpec(name=name, dataset=ds, binarize=binarize, dequantize=dequantize == "1")


def dataset_name(name: str) -> str:
    """The TFDS name in ``tfds:<name>`` (``<name>`` may carry ``/config`` and ``:version``)."""
    return parse(name).dataset


def check(name: str) -> None:
    """Cheap syntax check of a ``tfds:`` name and its options (imports nothing, reads nothing)."""
    parse(name)


def data_dir() -> str:
    """The TFDS data directory gdbench reads: $GDBENCH_TFDS_DIR, $TFDS_DATA_DIR, else TFDS's."""
    for var in (ENV_DIR, TFDS_ENV_DIR):
        value = os.environ.get(var)
        if value:
            return os.path.abspath(os.path.expanduser(value))
    from tensorflow_datasets.core import constants  # ~/tensorflow_datasets

    return os.path.abspath(os.path.expanduser(constants.DATA_DIR))


def prepare_command(ds: str, root: str) -> str:
    """The shell command that prepares ``ds`` in ``root`` in a format ``data_source`` reads."""
    return f"gdbench prepare {shlex.quote(PREFIX + ds)} --data-dir {shlex.quote(str(root))}"


def _pip_hint() -> str:
    return "pip install " + " ".join(PREPARE_REQUIREMENTS)


# --- loading ---------------------------------------------------------------------------------


def load(name: str) -> Task:
    """Load a prepared TFDS dataset from ``data_dir()`` (never downloads)."""
    return _load(parse(name), data_dir())


def _load(spec: TfdsSpec, root: str) -> Task:
    ds = spec.dataset
    import tensorflow_datasets as tfds

    with _quiet_absl():  # TFDS warns on stderr about what the one-line errors below say
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
        total = len(pool_src) + len(test_src)
        note = total > NOTE_ABOVE
        if note:
            print(
                f"gdbench: reading {total} examples of TFDS dataset '{ds}' from {root} ...",
                file=sys.stderr,
                flush=True,
            )
        start = time.perf_counter()
        x_pool, y_pool, shape = _to_arrays(ds, pool_src, POOL_SPLIT, image_key, label_key)
        x_test, y_test, test_shape = _to_arrays(ds, test_src, TEST_SPLIT, image_key, label_key)
        if note:
            print(
                f"gdbench: read TFDS dataset '{ds}' in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )
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

    transform = ""
    if spec.binarize is not None:
        scale = _pixel_scale(ds, info.features[image_key], image_key)
        x_pool, x_test = (_binarize(x, spec.binarize, scale) for x in (x_pool, x_test))
        transform = f"binarize(x/{scale:g}>={spec.binarize:g})"
    x_all = (x_pool, x_test)
    if all(np.all((x == 0) | (x == 1)) for x in x_all):
        kind = "binary"
    elif all(np.all(x == np.round(x)) for x in x_all):
        kind = "integer"
        if spec.dequantize:  # as the bundled digits: a density of the data is then defined
            x_pool = dequantize(x_pool, 1)
            x_test = dequantize(x_test, 2)
            kind, transform = "real", DEQUANTIZE
    else:
        kind = "real"
    h, w, c = shape
    version = getattr(info, "version", None)
    how = f"binarized at x/{scale:g} >= {spec.binarize:g} " if spec.binarize else ""
    if transform == DEQUANTIZE:
        how = "dequantized (integer pixels + U[0,1) noise) "
    return Task(
        name=spec.name,
        x_pool=x_pool,
        y_pool=y_pool,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        class_names=class_names,
        feature_kind=kind,
        preprocess="none" if kind == "binary" else "standardize",
        description=(
            f"TFDS {ds}: {h}x{w}x{c} images {how}as {h * w * c} {kind} features, "
            f"{num_classes} classes; {len(y_pool)} train / {len(y_test)} test examples"
        ),
        source=f"tfds:{ds} in {root}",
        version=f"{getattr(info, 'name', ds)} {version} (tensorflow-datasets {tfds.__version__})",
        split=f"TFDS '{POOL_SPLIT}' split as pool, '{TEST_SPLIT}' split as test set",
        image_shape=(h, w) if c == 1 else (h, w, c),
        transform=transform,
    )


def _pixel_scale(ds: str, feature, key: str) -> float:
    """The largest pixel value of the image feature's dtype: the ``max`` of ``binarize``."""
    dtype = np.dtype(getattr(feature, "np_dtype", np.uint8))
    if dtype in (np.uint8, np.uint16):
        return float(np.iinfo(dtype).max)
    if dtype == np.bool_ or np.issubdtype(dtype, np.floating):
        return 1.0
    raise TaskError(
        f"TFDS dataset '{ds}' feature '{key}' holds {dtype} pixels; binarize needs uint8, uint16 "
        "or float pixels"
    )


def _binarize(x: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """``x / scale >= threshold`` as float32 0/1, evaluated in float64 as written."""
    out = np.empty_like(x, dtype=np.float32)
    for start in range(0, len(x), CHUNK):  # in chunks: no float64 copy of the whole set
        block = x[start : start + CHUNK].astype(np.float64)
        out[start : start + CHUNK] = block / scale >= threshold
    return out


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
    x = y = shape = None
    for start in range(0, n, CHUNK):
        keys = list(range(start, min(n, start + CHUNK)))
        images, labels = _read_batch(source, keys, image_key, label_key)
        if shape is None:
            shape = images[0].shape
            if len(shape) != 3:
                raise TaskError(
                    f"TFDS dataset '{ds}' feature '{image_key}' has shape {shape}; gdbench "
                    "reads images of shape (H, W) or (H, W, C)"
                )
            x = np.empty((n, math.prod(shape)), dtype=np.float32)
            y = np.empty(n, dtype=np.int32)
        for i, image in zip(keys, images, strict=True):
            if image.shape != shape:
                raise TaskError(
                    f"TFDS dataset '{ds}' split '{split}' has images of different shapes "
                    f"({shape} and {image.shape} at index {i}); gdbench needs one image shape"
                )
        x[start : start + len(keys)] = np.stack(images).reshape(len(keys), -1)
        y[start : start + len(keys)] = labels
    return x, y, tuple(int(s) for s in shape)


def _read_batch(source, keys: list[int], image_key: str, label_key: str):
    """Images (each (H, W, C)) and labels of the examples ``keys``, read in one batch.

    For an ``Image`` feature the records are parsed with the image left encoded and each image
    is then decoded by the feature's own ``decode_example_np``: the same pixels as TFDS's full
    decoding, without its per-example overhead. Other features are decoded by the source.
    """
    import tensorflow_datasets as tfds

    features = source.dataset_info.features
    feature = features[image_key]
    records = None
    raw = getattr(source, "data_source", None)  # the file reader under the data source
    if (
        isinstance(feature, tfds.features.Image)
        and getattr(source, "decoders", None) is None
        and getattr(source, "deserialize_method", None)
        == tfds.decode.DeserializeMethod.DESERIALIZE_AND_DECODE
        and hasattr(raw, "__getitems__")
    ):
        try:
            records = raw.__getitems__(keys)
        except TypeError:  # the reader of tfds.testing.mock_data reads one record at a time
            records = [raw[k] for k in keys]
    if records is not None and len(records) == len(keys):
        skip = {image_key: tfds.decode.SkipDecoding()}
        examples = [features.deserialize_example_np(r, decoders=skip) for r in records]
        encoded = (bytes, bytearray, memoryview)
        images = [
            feature.decode_example_np(bytes(e[image_key]))
            if isinstance(e[image_key], encoded)
            else e[image_key]
            for e in examples
        ]
    else:
        examples = source.__getitems__(keys)
        images = [e[image_key] for e in examples]
    images = [np.asarray(im) for im in images]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    labels = np.fromiter((int(e[label_key]) for e in examples), dtype=np.int64, count=len(keys))
    return images, labels


# --- preparing -------------------------------------------------------------------------------


def prepare(
    name: str, data_dir: str | os.PathLike | None = None, *, echo: Callable[[str], None] = print
) -> Path:
    """Download and prepare ``tfds:<name>`` as ArrayRecord files; return the dataset's folder.

    ``data_dir`` defaults to the directory gdbench reads (``data_dir()``). A dataset already
    prepared there in a random-access format is only checked (no network use). Otherwise TFDS
    downloads and prepares it, which needs network access, ``tensorflow`` and
    ``importlib_resources`` (one-line ``TaskError`` naming the pip command when either is
    missing). Either way the result is then loaded once as gdbench would, to check it. ``echo``
    receives progress lines for the user. Options such as ``?binarize=`` do not change what is
    prepared.
    """
    ds = check_prepare(name).dataset
    default_root = _gdbench_data_dir()  # (the argument hides the function ``data_dir``)
    root = default_root if data_dir is None else os.path.abspath(os.path.expanduser(data_dir))
    import tensorflow_datasets as tfds

    with _quiet_absl():
        try:
            builder = tfds.builder(ds, data_dir=root)
        except tfds.core.DatasetNotFoundError:
            raise _unknown_dataset(tfds, ds) from None
        except (AssertionError, ValueError) as bad:
            raise _bad_name(ds, bad) from None
        except ImportError as err:
            raise TaskError(
                f"TFDS dataset '{ds}' needs a package that is not installed: {_first_line(err)}"
            ) from None
        prepared = builder.is_prepared()
        _pick_features(ds, builder.info.features)  # an image classification dataset?
    if prepared:
        fmt = _format_name(builder.info.file_format)
        if fmt not in ("array_record", "parquet"):
            raise TaskError(
                f"TFDS dataset '{ds}' is already prepared in {root} as {fmt} files, which have "
                "no random access; prepare it in another directory: "
                f"{prepare_command(ds, '<dir>')}"
            )
        echo(f"TFDS dataset '{ds}' is already prepared in {builder.data_path}; nothing to do")
    else:
        _require_prepare_packages()
        echo(f"preparing TFDS dataset '{ds}' in {root} (downloads it: needs network access) ...")
        try:
            builder = tfds.builder(ds, data_dir=root, file_format="array_record")
            builder.download_and_prepare()
        except Exception as err:  # noqa: BLE001 - any failure of TFDS's download and preparation
            raise TaskError(
                f"preparing TFDS dataset '{ds}' in {root} failed (it needs network access): "
                f"{type(err).__name__}: {_first_line(err)}"
            ) from None
    task = _load(TfdsSpec(name=PREFIX + ds, dataset=ds), root)
    shape = "x".join(str(s) for s in (*task.image_shape, 1)[:3])
    echo(
        f"tfds:{ds} is ready in {builder.data_path}: {task.pool_size} train / "
        f"{len(task.y_test)} test examples, {shape} images, {task.num_classes} classes"
    )
    if root != default_root:
        echo(f"gdbench reads {default_root}; to use {root}: export {ENV_DIR}={shlex.quote(root)}")
    return Path(str(builder.data_path))


def check_prepare(name: str) -> TfdsSpec:
    """The parsed name when ``name`` is a ``tfds:`` task that ``prepare`` takes, else a one-line
    ``TaskError`` (other tasks need no preparing)."""
    if not name.startswith(PREFIX):
        from gdbench.tasks.registry import REGISTRY

        why = "is bundled with gdbench" if name in REGISTRY else "is not a TFDS task"
        raise TaskError(
            f"task '{name}' {why} and needs no preparing; gdbench prepare takes {PREFIX}<name> "
            "tasks, e.g. gdbench prepare tfds:mnist"
        )
    return parse(name)


def _gdbench_data_dir() -> str:
    return data_dir()


def _require_prepare_packages() -> None:
    """Raise a one-line ``TaskError`` with the pip command when a package preparing needs is
    missing (checked before TFDS tries, and fails deep inside, the download)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up log lines
    for module, package in (("tensorflow", "tensorflow"), ("importlib_resources", None)):
        try:
            _import(module)
        except ImportError:
            what = package or module
            raise TaskError(
                f"preparing a TFDS dataset needs the {what} package, which is not installed; "
                f"run: {_pip_hint()}"
            ) from None


def _import(module: str):
    return importlib.import_module(module)


# --- errors ----------------------------------------------------------------------------------


def _unknown_dataset(tfds, ds: str) -> TaskError:
    base = ds.split("/")[0].split(":")[0]
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(base, known, n=1, cutoff=0.6)
    hint = f" (did you mean 'tfds:{close[0]}'?)" if close else ""
    return TaskError(
        f"unknown TFDS dataset '{ds}'{hint}; valid: the names of "
        "tensorflow_datasets.list_builders(), e.g. tfds:mnist"
    )


def _bad_name(ds: str, bad: BaseException) -> TaskError:
    why = _CONSTRUCT_PREFIX.sub("", _first_line(bad))
    why = why.split(" Here are ")[0]
    return TaskError(
        f"TFDS dataset '{ds}' cannot be loaded: {why} (use tfds:<name>[/<config>][:<version>], "
        "e.g. tfds:mnist)"
    )


def _format_name(file_format) -> str:
    return str(getattr(file_format, "value", file_format))


def _diagnose(tfds, ds: str, root: str, err: BaseException) -> TaskError:
    """A one-line TaskError saying why ``data_source`` failed (not prepared, wrong format...)."""
    try:
        builder = tfds.builder(ds, data_dir=root)
    except tfds.core.DatasetNotFoundError:
        return _unknown_dataset(tfds, ds)
    except (AssertionError, ValueError) as bad:
        return _bad_name(ds, bad)
    if not builder.is_prepared():
        return TaskError(
            f"TFDS dataset '{ds}' is not prepared in {root}; with network access run: "
            f"{prepare_command(ds, root)} (needs {_pip_hint()}), or set {ENV_DIR} to a "
            "directory where it is prepared"
        )
    splits = sorted(str(s) for s in builder.info.splits)
    missing = [s for s in (POOL_SPLIT, TEST_SPLIT) if s not in splits]
    if missing:
        return TaskError(
            f"TFDS dataset '{ds}' has no '{missing[0]}' split (it has: {', '.join(splits)}); "
            f"gdbench uses '{POOL_SPLIT}' as the training pool and '{TEST_SPLIT}' as the test set"
        )
    if isinstance(err, NotImplementedError):
        fmt = _format_name(builder.info.file_format)
        return TaskError(
            f"TFDS dataset '{ds}' in {Path(root)} is stored as {fmt} files, which have no random "
            f"access; prepare it again as array_record in another directory and set {ENV_DIR} "
            f"to it: {prepare_command(ds, '<dir>')}"
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
