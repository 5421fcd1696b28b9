"""Real data bundled with scikit-learn (no download): breast_cancer, wine, iris, digits.

Split: a stratified 70 % train pool / 30 % test split drawn once with NumPy seed 0, the same
for every run and model. Features are kept in their original units; the engine standardizes
each cell with its training subset's statistics (``binary`` tasks are left as 0/1).

- ``digits_0v1`` / ``digits_2v3``: the two-class subsets of digits (label 1 is the second digit).
- ``digits_bin``: all ten digits with pixels binarized, ``x >= 8`` on the 0..16 intensity scale.

Dequantization: the digits tasks' pixels are integers 0..16, on which a continuous density is
not a likelihood. Every digits task except ``digits_bin`` therefore adds uniform noise once,
``x + u`` with ``u ~ U[0, 1)`` (NumPy seed 1 for the pool, 2 for the test set; Theis et al.,
2016), before any model sees the data, for every model alike. A density of the dequantized
pixels, in the original intensity units (bins of width 1), is a lower bound on the discrete
log-probability of the integer pixels, and ``bits_per_dim`` an upper bound on their code length.
"""

from __future__ import annotations

import numpy as np

from gdbench.tasks.base import DEQUANTIZE, Task, dequantize, stratified_split

TEST_FRACTION = 0.3
SPLIT_SEED = 0


#: The files scikit-learn's loaders read (``sklearn/datasets/data``), by loader.
_FILES = {
    "load_breast_cancer": "breast_cancer.csv",
    "load_wine": "wine_data.csv",
    "load_iris": "iris.csv",
    "load_digits": "digits.csv.gz",
}


def _sklearn_data(loader_name: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(features, labels, class names, scikit-learn version) of a bundled dataset: the file
    scikit-learn ships, read the way its loader reads it (``_read_bundled``) without importing
    scikit-learn (whose import, with SciPy's, took about 0.8 s of a ~4 s ``gdbench run``);
    through ``sklearn.datasets`` itself when the file is not where that expects it."""
    fast = _read_bundled(loader_name)
    if fast is not None:
        return fast
    import sklearn
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    return bunch.data, bunch.target, [str(n) for n in bunch.target_names], sklearn.__version__


def _read_bundled(loader_name: str) -> tuple[np.ndarray, np.ndarray, list[str], str] | None:
    """The dataset from its file in the installed scikit-learn, None if it is not there. The
    CSV files start with a header ``n_samples,n_features,class names...`` and hold the label
    in the last column (``sklearn.datasets._base.load_csv_data``); ``digits.csv.gz`` is 64
    pixels and the digit per row, classes 0..9 (``load_digits``). tests/test_bundled_tasks.py checks
    the result equals scikit-learn's loaders."""
    import gzip
    import importlib.metadata
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / _FILES[loader_name]
    try:
        version = importlib.metadata.version("scikit-learn")
        if path.suffix == ".gz":
            with gzip.open(path, "rt") as f:
                table = np.loadtxt(f, delimiter=",")
            names = [str(c) for c in range(10)]
        else:
            with path.open(encoding="utf-8") as f:
                header = f.readline().strip().split(",")
                table = np.loadtxt(f, delimiter=",", ndmin=2)
            names = header[2:]
            if table.shape != (int(header[0]), int(header[1]) + 1):
                return None
    except (OSError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    return table[:, :-1], table[:, -1].astype(np.int64), names, version


def _make(
    name, x, y, class_names, version, kind, description, loader_name, image_shape=None,
    transform="",
):  # fmt: skip
    pool, test = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int32)
    x_pool, x_test = x[pool], x[test]
    if kind == "integer":
        x_pool, x_test = dequantize(x_pool, 1), dequantize(x_test, 2)
        kind, transform = "real", DEQUANTIZE
    return Task(
        name=name,
        x_pool=x_pool,
        y_pool=y[pool],
        x_test=x_test,
        y_test=y[test],
        num_classes=len(class_names),
        class_names=tuple(class_names),
        feature_kind=kind,
        transform=transform,
        preprocess="none" if kind == "binary" else "standardize",
        description=description,
        source=f"sklearn.datasets.{loader_name}",
        version=f"scikit-learn {version}",
        split=f"stratified {1 - TEST_FRACTION:.0%} pool / {TEST_FRACTION:.0%} test, numpy seed "
        f"{SPLIT_SEED}",
        image_shape=image_shape,
    )


def breast_cancer() -> Task:
    x, y, names, v = _sklearn_data("load_breast_cancer")
    return _make(
        "breast_cancer", x, y, names, v, "real",
        "Wisconsin diagnostic breast cancer, 30 real features, 2 classes", "load_breast_cancer",
    )  # fmt: skip


def wine() -> Task:
    x, y, names, v = _sklearn_data("load_wine")
    return _make(
        "wine", x, y, names, v, "real", "wine cultivars, 13 real features, 3 classes", "load_wine"
    )


def iris() -> Task:
    x, y, names, v = _sklearn_data("load_iris")
    return _make("iris", x, y, names, v, "real", "iris, 4 real features, 3 classes", "load_iris")


def digits() -> Task:
    x, y, names, v = _sklearn_data("load_digits")
    return _make(
        "digits", x, y, names, v, "integer",
        "8x8 handwritten digits, 64 dequantized pixels (0..17), 10 classes", "load_digits", (8, 8),
    )  # fmt: skip


def _digit_pair(a: int, b: int) -> Task:
    x, y, _, v = _sklearn_data("load_digits")
    keep = (y == a) | (y == b)
    return _make(
        f"digits_{a}v{b}", x[keep], (y[keep] == b).astype(int), [str(a), str(b)], v, "integer",
        f"8x8 digits {a} vs {b}, 64 dequantized pixels (0..17)", "load_digits", (8, 8),
    )  # fmt: skip


def digits_0v1() -> Task:
    return _digit_pair(0, 1)


def digits_2v3() -> Task:
    return _digit_pair(2, 3)


def digits_bin() -> Task:
    x, y, names, v = _sklearn_data("load_digits")
    return _make(
        "digits_bin", (x >= 8).astype(np.float32), y, names, v, "binary",
        "8x8 digits binarized at intensity >= 8, 64 binary pixels, 10 classes", "load_digits",
        (8, 8), transform="binarize(>=8)",
    )  # fmt: skip
