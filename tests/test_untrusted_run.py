"""Opening someone else's run directory never runs their code: ``report``, ``compare`` and
``load`` read only data formats (Parquet, JSON, NPZ without pickles)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from gdbench import cli
from gdbench.results import store

SMALL = ["--tasks", "iris", "--models", "gnb", "--sizes", "6,20", "--seeds", "2"]


class _Planted:
    """Unpickling this creates the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("untrusted")
    run = root / "run"
    assert cli.main(["run", *SMALL, "--out", str(run), "--no-progress"]) == 0
    marker = root / "code-ran"
    payload = pickle.dumps(_Planted(str(marker)))
    (run / "rows" / "evil.pkl").write_bytes(payload)
    (run / "evil.pickle").write_bytes(payload)
    evil = np.empty(1, dtype=object)
    evil[0] = _Planted(str(marker))
    for folder in (store.SAMPLES_DIR, store.TRACES_DIR):
        (run / folder).mkdir(exist_ok=True)
        with open(run / folder / "evil.npz", "wb") as f:
            np.savez(f, meta=np.asarray('{"task": "iris"}'), samples=evil, real=evil)
    assert not marker.exists()
    return run, marker


@pytest.mark.fast
def test_load_reads_no_pickle(planted_run):
    run, marker = planted_run
    rows = store.load(run)
    assert len(rows) == 4  # the stored cells; the planted files are not rows
    with pytest.raises(store.CorruptPartError, match="unreadable"):
        store.read_samples(run)
    with pytest.raises(store.CorruptPartError, match="unreadable"):
        store.read_traces(run)
    assert not marker.exists()


def test_report_and_compare_run_no_planted_code(planted_run, tmp_path, capsys):
    run, marker = planted_run
    code = cli.main(["report", str(run), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    # The planted sample file is refused as unreadable (one line, exit 2), never unpickled.
    assert code in (0, 2), err
    if code == 2:
        assert "unreadable" in err and "Traceback" not in err
    clean = tmp_path / "clean"
    shutil.copytree(run, clean)
    for folder in (store.SAMPLES_DIR, store.TRACES_DIR):
        shutil.rmtree(clean / folder)
    assert cli.main(["compare", str(run), str(clean)]) in (0, 2)
    assert cli.main(["report", str(clean), "--out", str(tmp_path / "r2")]) == 0
    assert not marker.exists()
