"""The bundled datasets read straight from scikit-learn's files equal scikit-learn's loaders."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
import sklearn.datasets

from gdbench.tasks import bundled


@pytest.mark.parametrize("loader", sorted(bundled._FILES))
def test_files_read_as_scikit_learn_reads_them(loader: str):
    fast = bundled._read_bundled(loader)
    assert fast is not None
    x, y, names, version = fast
    bunch = getattr(sklearn.datasets, loader)()
    np.testing.assert_array_equal(x, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)
    assert x.dtype == bunch.data.dtype and y.dtype == bunch.target.dtype
    assert names == [str(n) for n in bunch.target_names]
    assert version == sklearn.__version__


def test_without_the_file_the_loader_is_used(monkeypatch):
    monkeypatch.setitem(bundled._FILES, "load_iris", "no_such_file.csv")
    assert bundled._read_bundled("load_iris") is None
    x, y, names, _ = bundled._sklearn_data("load_iris")
    bunch = sklearn.datasets.load_iris()
    np.testing.assert_array_equal(x, bunch.data)
    assert names == ["setosa", "versicolor", "virginica"] and len(y) == 150
