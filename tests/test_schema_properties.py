"""Property tests of the result schema: any valid rows survive ``write_grid`` +
``gdbench.results.load``
unchanged (values, NaNs, nulls, unicode, dtypes), and invalid rows raise ``SchemaError``.

Rows are generated from ``gdbench.results.schema.COLUMNS`` itself, with the value ranges that
``validate`` documents; a column added to the schema later gets a generic strategy for its
dtype. The expected frame is built here from the generated values, not with ``validate``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdbench import results
from gdbench.results import schema, store
from gdbench.results.schema import COLUMNS, SchemaError

SETTINGS = settings(
    max_examples=int(os.environ.get("GDBENCH_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TEXT = st.text(max_size=12)  # any unicode but lone surrogates (not encodable as UTF-8)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NAN = st.just(math.nan)


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), FINITE, TEXT)

#: column -> strategy of a valid value (NaN included where validate accepts it)
VALUE: dict[str, st.SearchStrategy] = {
    "paradigm": st.sampled_from(schema.PARADIGMS),
    "status": st.sampled_from(schema.STATUSES),
    "model_config": st.dictionaries(TEXT, JSON_VALUES, max_size=3).map(
        lambda d: json.dumps(d, ensure_ascii=False)
    ),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "grid_cells": st.integers(1, 2**31),
    "schema_version": st.just(schema.SCHEMA_VERSION),
    "accuracy": floats(0.0, 1.0),  # NaN only off status 'ok': see rows()
    "ece": st.one_of(floats(0.0, 1.0), NAN),
    "bayes_accuracy": st.one_of(floats(0.0, 1.0), NAN),
    "brier": st.one_of(floats(0.0, 2.0), NAN),
    **{n: st.one_of(floats(0.0, 1.0), NAN) for n in schema._UNIT_INTERVAL if n != "accuracy"},
    **{n: st.one_of(floats(0.0, 1e300), NAN) for n in schema._NON_NEGATIVE},
    **{n: st.one_of(st.integers(0, 5).map(float), NAN) for n in schema._COUNTS},
    "likelihood_is_bound": st.sampled_from([True, False, None]),
    "n_test": st.integers(0, 600),  # test_correct is drawn to match: see rows()
}
BY_DTYPE = {
    "str": TEXT,
    "int64": st.integers(0, 2**31),
    "float64": st.one_of(FINITE, NAN),
    "boolean": st.sampled_from([True, False, None]),
    "bytes": st.just(b""),
}


def value_strategy(name: str) -> st.SearchStrategy:
    return VALUE.get(name, BY_DTYPE[COLUMNS[name].dtype])


@st.composite
def row(draw) -> dict:
    r = {name: draw(value_strategy(name)) for name in COLUMNS if name not in ("n_train", "n_val")}
    r["n_train"] = draw(st.integers(1, 2**40))
    r["n_val"] = draw(st.integers(0, r["n_train"] - 1))
    if r["n_test"] and draw(st.booleans()):
        r["test_correct"] = draw(
            st.binary(min_size=(r["n_test"] + 7) // 8, max_size=(r["n_test"] + 7) // 8)
        )
    if r["status"] != "ok" and draw(st.booleans()):
        r["accuracy"] = math.nan  # a failed or diverged cell may have no accuracy
    return r


def cell(r: dict) -> tuple:
    return tuple(r[k] for k in schema.CELL_KEY)


@st.composite
def grids(draw) -> tuple[list[dict], set[str]]:
    """Rows with distinct cells, and the optional columns to leave out of the frame."""
    rows = draw(st.lists(row(), min_size=1, max_size=6, unique_by=cell))
    optional = sorted(n for n, c in COLUMNS.items() if not c.required)
    dropped = set(draw(st.lists(st.sampled_from(optional), unique=True))) if optional else set()
    if "n_test" in dropped:  # outcomes cannot be unpacked without their count
        dropped.add("test_correct")
    return rows, dropped


def expected_frame(rows: list[dict], dropped: set[str]) -> pd.DataFrame:
    """The rows as results.load must return them: schema order and dtypes, defaults filled."""
    out = {}
    for name, col in COLUMNS.items():
        values = [col.default if name in dropped else r[name] for r in rows]
        if col.dtype in ("str", "bytes"):
            out[name] = pd.Series(values, dtype=object)
        elif col.dtype == "boolean":
            out[name] = pd.Series(
                [pd.NA if v is None or v is pd.NA else v for v in values], dtype="boolean"
            )
        else:
            out[name] = pd.Series(values, dtype=col.dtype)
    return pd.DataFrame(out)


def frame_of(rows: list[dict], dropped: set[str] = frozenset()) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in r.items() if k not in dropped} for r in rows])


def sort_cells(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(schema.CELL_KEY), kind="stable").reset_index(drop=True)


# --- round trip ------------------------------------------------------------------------------


@SETTINGS
@given(grid=grids(), split=st.integers(0, 6))
def test_valid_rows_round_trip_through_the_store(grid, split):
    rows, dropped = grid
    parts = [p for p in (rows[:split], rows[split:]) if p]  # one or two parts
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run-ü"
        store.write_manifest(run_dir, {"name": "property"})
        for i, part in enumerate(parts):
            store.write_grid(run_dir, frame_of(part, dropped), f"task{i}__model")
        loaded = results.load(run_dir)

    assert list(loaded.columns) == [store.RUN_COLUMN, *COLUMNS]
    assert (loaded[store.RUN_COLUMN] == "run-ü").all()
    for name, col in COLUMNS.items():
        want = "object" if col.dtype in ("str", "bytes") else col.dtype
        assert str(loaded[name].dtype) == want, name
    got = sort_cells(loaded.drop(columns=[store.RUN_COLUMN]))
    want = sort_cells(expected_frame(rows, dropped))
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # NaN == NaN, NA == NA


@SETTINGS
@given(grid=grids())
def test_validate_is_idempotent(grid):
    rows, dropped = grid
    once = schema.validate(frame_of(rows, dropped))
    pd.testing.assert_frame_equal(schema.validate(once), once, check_exact=True)


# --- invalid rows ----------------------------------------------------------------------------

OUT_OF_RANGE = {
    "accuracy": st.one_of(floats(1.0 + 1e-5, 1e300), floats(-1e300, -1e-5)),
    "ece": floats(1.0 + 1e-5, 1e300),
    "brier": st.one_of(floats(2.0 + 1e-5, 1e300), floats(-1e300, -1e-5)),
    "nll": floats(-1e300, -1e-5),
    **{
        n: floats(-1e300, -1e-5)
        for n in ("fit_s_min", "predict_per_s", "bytes", "peak_bytes", "flop_rate")
    },
    "recall": st.one_of(floats(1.0 + 1e-5, 1e300), floats(-1e300, -1e-5)),
    "fd": floats(-1e300, -1e-5),
    "fit_repeats": st.one_of(st.integers(-100, -1).map(float), floats(0.01, 0.99)),
    "predict_repeats": floats(1.01, 1.99),
}


def assert_rejected(df: pd.DataFrame, column: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        store.write_manifest(run_dir, {"name": "property"})
        with pytest.raises(SchemaError) as err:
            store.write_grid(run_dir, df, "t__m")
        assert store.part_paths(run_dir) == []  # nothing written
    message = str(err.value)
    assert "\n" not in message and repr(column) in message, message


@SETTINGS
@given(
    grid=grids(),
    data=st.data(),
    column=st.sampled_from(sorted(OUT_OF_RANGE)),
)
def test_out_of_range_metric_is_rejected(grid, data, column):
    rows, _ = grid
    i = data.draw(st.integers(0, len(rows) - 1))
    rows[i][column] = data.draw(OUT_OF_RANGE[column])
    assert_rejected(frame_of(rows), column)


@SETTINGS
@given(grid=grids(), data=st.data())
@pytest.mark.fast
def test_unknown_status_is_rejected(grid, data):
    rows, _ = grid
    bad = data.draw(TEXT.filter(lambda s: s not in schema.STATUSES))
    rows[data.draw(st.integers(0, len(rows) - 1))]["status"] = bad
    assert_rejected(frame_of(rows), "status")


@SETTINGS
@given(grid=grids(), data=st.data())
def test_missing_required_column_is_rejected(grid, data):
    rows, _ = grid
    required = sorted(n for n, c in COLUMNS.items() if c.required)
    column = data.draw(st.sampled_from(required))
    df = frame_of(rows).drop(columns=[column])
    with pytest.raises(SchemaError, match=f"missing required column {column!r}"):
        schema.validate(df)
    assert_rejected(df, column)


def test_out_of_range_row_written_behind_the_stores_back_fails_on_load(tmp_path):
    bad = {
        "task": "t",
        "model": "m",
        "paradigm": "generative",
        "n_train": 10,
        "n_val": 0,
        "seed": 0,
        "accuracy": 1.5,  # invalid
        "nll": 0.1,
        "ece": 0.0,
        "brier": 0.1,
        "fit_s": 0.0,
        "predict_s": 0.0,
        "compile_s": 0.0,
        "grid_cells": 1,
        "status": "ok",
        "model_config": "{}",
        "preprocess": "none",
    }
    frame = expected_frame([{**{n: c.default for n, c in COLUMNS.items()}, **bad}], set())
    run_dir = tmp_path / "run"
    store.write_manifest(run_dir, {"name": "x"})
    (run_dir / store.ROWS_DIR).mkdir()
    table = pa.Table.from_pandas(frame, schema=store.ARROW_SCHEMA, preserve_index=False)
    pq.write_table(table, run_dir / store.ROWS_DIR / "t__m.parquet")
    with pytest.raises(SchemaError, match=r"column 'accuracy' has 1\.5, outside \[0\.0, 1\.0\]"):
        results.load(run_dir)


#: The columns of rows written before steady-state timing and loop-aware costs (gdbench 0.x
#: parts on disk): they must still load, the new measurement columns as NaN.
OLD_COLUMNS = (
    "task", "model", "paradigm", "n_train", "n_val", "seed", "accuracy", "nll", "ece", "brier",
    "log_lik", "bits_per_dim", "likelihood_is_bound", "elbo", "fit_s", "predict_s", "compile_s",
    "grid_cells", "flops", "status", "message", "bayes_accuracy", "true_log_lik",
    "model_config", "preprocess", "cell_key", "schema_version",
)  # fmt: skip
NEW_MEASUREMENTS = (
    "fit_s_min", "fit_s_max", "fit_repeats", "predict_s_min", "predict_s_max",
    "predict_repeats", "predict_per_s", "fit_flops", "bytes", "peak_bytes", "flop_rate",
    "peak_fraction",
)  # fmt: skip


def test_old_parts_without_measurement_columns_still_load(tmp_path):
    assert set(NEW_MEASUREMENTS) <= set(COLUMNS) and set(OLD_COLUMNS) <= set(COLUMNS)
    assert not any(COLUMNS[n].required for n in NEW_MEASUREMENTS)
    old = {
        "task": "wine", "model": "gnb", "paradigm": "generative", "n_train": 10, "n_val": 0,
        "seed": 0, "accuracy": 0.9, "nll": 0.3, "ece": 0.05, "brier": 0.2, "log_lik": -12.5,
        "bits_per_dim": 1.4, "likelihood_is_bound": False, "elbo": math.nan, "fit_s": 0.01,
        "predict_s": 0.002, "compile_s": 1.5, "grid_cells": 2, "flops": 1.0e6, "status": "ok",
        "message": "", "bayes_accuracy": math.nan, "true_log_lik": math.nan,
        "model_config": "{}", "preprocess": "standardize", "cell_key": "k0",
        "schema_version": schema.SCHEMA_VERSION,
    }  # fmt: skip
    frame = pd.DataFrame([old, {**old, "seed": 1, "cell_key": "k1"}])[list(OLD_COLUMNS)]
    # Written as an older gdbench did: only its columns in the Parquet file.
    run_dir = tmp_path / "old"
    store.write_manifest(run_dir, {"name": "old"})
    (run_dir / store.ROWS_DIR).mkdir()
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), run_dir / store.ROWS_DIR / "p.parquet"
    )
    loaded = results.load(run_dir)
    assert len(loaded) == 2
    for name in NEW_MEASUREMENTS:
        assert str(loaded[name].dtype) == "float64" and loaded[name].isna().all(), name
    assert loaded["fit_s"].tolist() == [0.01, 0.01] and loaded["flops"].tolist() == [1e6, 1e6]
