"""``csv:<path>[?target=<column>]`` tasks: properties of loading any table, and every error path.

The property tests write hypothesis-generated tables with pandas and check the loaded task
against an oracle computed here from the generated values (not from the loader): the target
column rule, class order, split sizes, stratification, feature values (as float32, in some row
order), feature kind, provenance and determinism. Messy tables must load or raise ``TaskError``
with a one-line message, never anything else.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdbench import tasks
from gdbench.tasks import TaskError, csv_task

# GDBENCH_HYPOTHESIS_EXAMPLES=2000 for a longer search than the default run's.
SETTINGS = settings(
    max_examples=int(os.environ.get("GDBENCH_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text for column names and string labels. Excluded: NUL (such a file is rejected as binary)
# and a leading byte-order mark (stripped from the file's start as its encoding marker).
TEXT = st.text(
    alphabet=st.characters(exclude_characters="\x00\ufeff", exclude_categories=["Cs"]),
    min_size=1,
    max_size=6,
)


def write_csv(
    directory: Path, frame: pd.DataFrame, name: str = "table.csv", style: str = "plain"
) -> Path:
    """Write ``frame`` as a CSV file. ``style``: ``plain`` (pandas' defaults, '\\n' line ends),
    ``crlf`` ('\\r\\n' line ends) or ``quoted`` (every non-numeric field quoted).

    With '\\n' line ends pandas leaves a bare '\\r' in a field unquoted, which readers take as
    a line end, so text with '\\r' is written as ``crlf`` or ``quoted``.
    """
    path = directory / name
    if style == "crlf":
        frame.to_csv(path, index=False, lineterminator="\r\n")
    elif style == "quoted":
        frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    else:
        frame.to_csv(path, index=False)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message and "\r" not in message, message
    return message


# --- the oracle ----------------------------------------------------------------------------


def expected_target(columns: list[str], explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    for c in columns:
        if c.strip().lower() in ("label", "target", "class", "y"):
            return c
    return columns[-1]


def expected_class_order(names: set[str]) -> list[str]:
    """By numeric value when every label is a finite number, else by text."""
    try:
        values = {n: float(n) for n in names}
    except ValueError:
        return sorted(names)
    if not all(math.isfinite(v) for v in values.values()):
        return sorted(names)
    return sorted(names, key=lambda n: (values[n], n))


def expected_kind(x: np.ndarray) -> str:
    if np.all((x == 0) | (x == 1)):
        return "binary"
    return "integer" if np.all(x == np.floor(x)) else "real"


def row_multiset(x: np.ndarray, labels: list[str]) -> list[tuple]:
    return sorted((tuple(r.tolist()), lab) for r, lab in zip(x, labels, strict=True))


# --- valid tables --------------------------------------------------------------------------


@st.composite
def valid_tables(draw):
    """(frame, explicit target or None, CSV style) of a table that must load."""
    n_features = draw(st.integers(1, 5))
    n_classes = draw(st.integers(2, 4))
    label_kind = draw(st.sampled_from(["str", "int"]))
    if label_kind == "str":
        classes = draw(st.lists(TEXT, min_size=n_classes, max_size=n_classes, unique=True))
    else:
        ints = st.integers(-30, 30)
        classes = draw(st.lists(ints, min_size=n_classes, max_size=n_classes, unique=True))
    counts = draw(st.lists(st.integers(2, 7), min_size=n_classes, max_size=n_classes))
    labels = [c for c, k in zip(classes, counts, strict=True) for _ in range(k)]
    labels = draw(st.permutations(labels))
    n_rows = len(labels)

    feature_values = []
    for _ in range(n_features):
        kind = draw(st.sampled_from(["int", "float", "binary"]))
        if kind == "int":
            values = st.integers(-(10**6), 10**6)
        elif kind == "float":
            values = st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False)
        else:
            values = st.integers(0, 1)
        feature_values.append(draw(st.lists(values, min_size=n_rows, max_size=n_rows)))

    names = draw(st.lists(TEXT, min_size=n_features + 1, max_size=n_features + 1, unique=True))
    if draw(st.booleans()):  # a conventional target name somewhere
        conventional = draw(st.sampled_from(["label", "Target", " class", "Y", "y "]))
        if conventional not in names:
            names[draw(st.integers(0, n_features))] = conventional
    explicit = draw(st.booleans())
    if explicit:
        target_pos = draw(st.integers(0, n_features))
    else:
        target_pos = names.index(expected_target(names, None))
    features = iter(feature_values)
    data = {name: labels if pos == target_pos else next(features) for pos, name in enumerate(names)}
    frame = pd.DataFrame(data)
    style = draw(st.sampled_from(["crlf", "quoted"]))
    return frame, (names[target_pos] if explicit else None), style


@SETTINGS
@given(table=valid_tables())
def test_valid_tables_load_with_every_invariant(table):
    frame, explicit, style = table
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp), frame, style=style)
        name = f"csv:{path}" + (f"?target={quote(explicit, safe='')}" if explicit else "")
        tasks.check_name(name)
        task = csv_task.load(name)
        again = csv_task.load(name)
        data = path.read_bytes()

    columns = [str(c) for c in frame.columns]
    target = expected_target(columns, explicit)
    labels = [str(v) for v in frame[target]]
    x = frame[[c for c in columns if c != target]].to_numpy(np.float64).astype(np.float32)
    n = len(frame)

    # Sizes, dtypes, split proportions and every class on both sides.
    assert task.x_pool.dtype == task.x_test.dtype == np.float32
    assert task.y_pool.dtype == task.y_test.dtype == np.int32
    assert task.pool_size + len(task.y_test) == n
    assert task.dim == x.shape[1]
    assert task.class_names == tuple(expected_class_order(set(labels)))
    assert task.num_classes == len(task.class_names)
    for c in range(task.num_classes):
        assert (task.y_pool == c).any() and (task.y_test == c).any()
        k = labels.count(task.class_names[c])
        assert (task.y_test == c).sum() == round(0.3 * k)

    # The rows (features with their class name) are the CSV's, in some order.
    x_all = np.concatenate([task.x_pool, task.x_test])
    y_all = np.concatenate([task.y_pool, task.y_test])
    loaded = row_multiset(x_all, [task.class_names[i] for i in y_all])
    assert loaded == row_multiset(x, labels)

    assert task.feature_kind == expected_kind(x)
    assert task.preprocess == ("none" if task.feature_kind == "binary" else "standardize")
    assert task.source == str(path)
    assert task.version == "sha256:" + hashlib.sha256(data).hexdigest()[:12]
    assert f"{n} rows" in task.description and f"{task.num_classes} classes" in task.description

    # Determinism: the same arrays and checksum on a second load.
    for a, b in zip(
        (task.x_pool, task.y_pool, task.x_test, task.y_test),
        (again.x_pool, again.y_pool, again.x_test, again.y_test),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert task.checksum == again.checksum and task.class_names == again.class_names


# --- messy tables: only TaskError ----------------------------------------------------------

CELLS = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "nan", "NA", "inf", "x", " ", "1e400", "True", "3,4", '"']),
    TEXT,
)


@st.composite
def messy_tables(draw):
    n_cols = draw(st.integers(1, 4))
    n_rows = draw(st.integers(0, 8))
    names = draw(st.lists(TEXT, min_size=n_cols, max_size=n_cols, unique=True))
    data = {n: draw(st.lists(CELLS, min_size=n_rows, max_size=n_rows)) for n in names}
    target = draw(st.one_of(st.none(), st.sampled_from(names), TEXT))
    return pd.DataFrame(data, dtype=object), target


@SETTINGS
@given(table=messy_tables())
def test_messy_tables_load_or_raise_one_line_task_error(table):
    frame, target = table
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp), frame)
        name = f"csv:{path}" + (f"?target={quote(target, safe='')}" if target else "")
        try:
            task = csv_task.load(name)
        except TaskError as err:
            assert str(err) and "\n" not in str(err) and "\r" not in str(err)
            return
    assert task.num_classes >= 2
    assert np.isfinite(task.x_pool).all() and np.isfinite(task.x_test).all()
    for c in range(task.num_classes):
        assert (task.y_pool == c).any() and (task.y_test == c).any()


# --- semantics, one case each --------------------------------------------------------------


def test_registry_accepts_csv_names_and_keeps_listing_builtins(tmp_path):
    path = write_csv(tmp_path, pd.DataFrame({"a": [1.5, 2, 3, 4], "label": ["p", "q"] * 2}))
    name = f"csv:{path}"
    assert name not in tasks.names() and "iris" in tasks.names()
    tasks.check_name(name)
    task = tasks.load(name)
    assert tasks.load(name) is task  # cached
    assert task.name == name and task.class_names == ("p", "q")
    assert task.feature_kind == "real" and task.preprocess == "standardize"


def test_unknown_task_message_mentions_the_csv_and_tfds_families():
    with pytest.raises(TaskError) as err:
        tasks.check_name("wines")
    msg = one_line(err)
    assert "unknown task 'wines' (did you mean 'wine'?)" in msg
    assert "csv:<path>[?target=<column>]" in msg and "tfds:<name>" in msg


def test_target_rule_named_then_first_conventional_then_last(tmp_path):
    frame = pd.DataFrame(
        {"f": [0, 1, 2, 3], " Y ": [1, 2] * 2, "Class": [7, 8] * 2, "z": [5, 6] * 2}
    )
    path = write_csv(tmp_path, frame)
    assert csv_task.load(f"csv:{path}").class_names == ("1", "2")  # ' Y ' comes first
    task = csv_task.load(f"csv:{path}?target=z")
    assert task.class_names == ("5", "6") and task.dim == 3
    assert "(target column 'z')" in task.description
    plain = write_csv(tmp_path, frame.drop(columns=[" Y ", "Class"]), "plain.csv")
    task = csv_task.load(f"csv:{plain}")
    assert task.class_names == ("5", "6") and task.dim == 1  # the last column


def test_target_with_escaped_characters(tmp_path):
    path = write_csv(tmp_path, pd.DataFrame({"a&b=c %": ["u", "v"] * 2, "x": [1, 2, 3, 4]}))
    task = csv_task.load(f"csv:{path}?target={quote('a&b=c %', safe='')}")
    assert task.class_names == ("u", "v")


def test_numeric_labels_sort_by_value_and_text_labels_stay_text(tmp_path):
    labels = [str(v) for v in (9, 10, -1, 2)] * 2
    path = write_csv(tmp_path, pd.DataFrame({"x": range(8), "label": labels}))
    assert csv_task.load(f"csv:{path}").class_names == ("-1", "2", "9", "10")
    text = ["NA", "None", "01", "1"] * 2  # not missing values; '01' and '1' are two classes
    path = write_csv(tmp_path, pd.DataFrame({"x": range(8), "label": text}), "t.csv")
    assert csv_task.load(f"csv:{path}").class_names == ("01", "1", "NA", "None")


def test_feature_kinds_and_boolean_columns(tmp_path):
    y = ["a", "b"] * 3
    cases = [
        ({"f": [0, 1, 1, 0, 1, 0]}, "binary"),
        ({"f": [True, False, True, True, False, False]}, "binary"),
        ({"f": [0, 1, 2, 0, 1, 2]}, "integer"),
        ({"f": [0.0, 1.0, 2.5, 0, 1, 2]}, "real"),
    ]
    for i, (cols, kind) in enumerate(cases):
        path = write_csv(tmp_path, pd.DataFrame({**cols, "y": y}), f"k{i}.csv")
        task = csv_task.load(f"csv:{path}")
        assert task.feature_kind == kind
        assert task.preprocess == ("none" if kind == "binary" else "standardize")


@pytest.mark.fast
def test_floats_parse_with_correct_rounding(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400) * 10.0 ** rng.integers(-30, 30, 400)
    path = write_csv(tmp_path, pd.DataFrame({"x": x, "y": ["a", "b"] * 200}))
    task = csv_task.load(f"csv:{path}")
    got = np.sort(np.concatenate([task.x_pool, task.x_test])[:, 0])
    np.testing.assert_array_equal(got, np.sort(x.astype(np.float32)))


def test_utf8_bom_and_quoted_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes('\ufeff"a,b",label\n1,x\n2,y\n3,x\n4,y\n'.encode())
    task = csv_task.load(f"csv:{path}")
    assert task.class_names == ("x", "y") and task.dim == 1


# --- every error, one line each --------------------------------------------------------------


def load_error(name: str) -> str:
    with pytest.raises(TaskError) as err:
        tasks.load(name)
    return one_line(err)


@pytest.fixture
def good_csv(tmp_path) -> Path:
    frame = pd.DataFrame({"a": [1, 2, 3, 4], "b": [0.5, 1, 2, 3], "label": ["x", "y"] * 2})
    return write_csv(tmp_path, frame, "good.csv")


def test_error_missing_file(tmp_path):
    msg = load_error(f"csv:{tmp_path}/nope.csv")
    assert f"CSV file '{tmp_path}/nope.csv'" in msg and "does not exist" in msg
    assert "csv:<path>[?target=<column>]" in msg
    with pytest.raises(TaskError, match="does not exist"):
        tasks.check_name(f"csv:{tmp_path}/nope.csv")  # checked before anything is run


def test_error_relative_missing_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = load_error("csv:data/x.csv")
    assert f"looked for '{tmp_path}/data/x.csv'" in msg


def test_error_no_path_and_directory(tmp_path):
    assert "names no file" in load_error("csv:")
    assert "names no file" in load_error("csv:?target=y")
    assert "is a directory, not a CSV file" in load_error(f"csv:{tmp_path}")


def test_error_binary_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00binary")
    assert "is not a CSV file: it holds binary data" in load_error(f"csv:{path}")
    path.write_bytes(b"a,label\n\xff\xfe,x\n")
    msg = load_error(f"csv:{path}")
    assert "is not a UTF-8 text file (byte 0xff at offset 8)" in msg


def test_error_empty_file_header_only_and_ragged(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("")
    assert "is empty; it needs a header row and data rows" in load_error(f"csv:{path}")
    path.write_text("\n\n  \n")
    assert "is empty" in load_error(f"csv:{path}")
    path.write_text("a,b,label\n")
    assert "has a header but no data rows" in load_error(f"csv:{path}")
    path.write_text("a,label\n1,x\n2,y,3\n")
    msg = load_error(f"csv:{path}")
    assert "cannot be read as CSV" in msg and "Expected 2 fields in line 3, saw 3" in msg


def test_error_target_column_not_found_lists_columns(good_csv):
    msg = load_error(f"csv:{good_csv}?target=lable")
    assert "column 'lable' given by ?target= is not in" in msg
    assert "(did you mean 'label'?)" in msg and "columns: 'a', 'b', 'label'" in msg


def test_error_target_column_list_is_shortened(tmp_path):
    frame = pd.DataFrame({f"px{i}": [0, 1, 0, 1] for i in range(30)} | {"y": ["a", "b"] * 2})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}?target=nope")
    assert "'px19', ... (11 more)" in msg


def test_error_bad_query(good_csv):
    msg = load_error(f"csv:{good_csv}?targt=label")
    assert "unknown option 'targt'" in msg and "valid: target" in msg
    assert "needs a value: ?target=<column>" in load_error(f"csv:{good_csv}?target=")
    assert "given twice" in load_error(f"csv:{good_csv}?target=a&target=b")
    with pytest.raises(TaskError, match="unknown option"):
        tasks.check_name(f"csv:{good_csv}?sep=;")


def test_error_non_numeric_feature(tmp_path):
    frame = pd.DataFrame({"age": [1, 2, "?", 4], "label": ["x", "y"] * 2})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "feature column 'age'" in msg and "is not numeric: data row 3 holds '?'" in msg


def test_error_missing_feature_values(tmp_path):
    frame = pd.DataFrame({"a": [1, None, 3, None, 5, 6], "label": ["x", "y"] * 3})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "feature column 'a'" in msg
    assert "has 2 empty or NaN cell(s) (first at data row 2)" in msg
    frame = pd.DataFrame({"a": ["1", "nan", "3", "4"], "label": ["x", "y"] * 2})
    msg = load_error(f"csv:{write_csv(tmp_path, frame, 'n.csv')}")
    assert "has 1 empty or NaN cell(s) (first at data row 2)" in msg


def test_error_infinite_or_float32_overflow(tmp_path):
    frame = pd.DataFrame({"a": [1, "inf", 3, 1e300], "label": ["x", "y"] * 2})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "feature column 'a'" in msg and "has 2 infinite value(s)" in msg
    assert "(first at data row 2: inf)" in msg


def test_error_missing_labels(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3, 4, 5], "label": ["x", "", "y", "x", ""]})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "target column 'label'" in msg
    assert "has 2 empty cell(s) (first at data row 2); every row needs a class label" in msg


def test_error_single_class(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "label": ["x"] * 3})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "has a single class 'x'; a classification task needs at least 2 classes" in msg


def test_error_class_with_one_row(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3, 4, 5], "label": ["x", "x", "y", "y", "rare"]})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "class 'rare' of target column 'label'" in msg and "has a single row" in msg
    assert "every class needs at least 2 rows" in msg


def test_error_class_per_row_hints_at_a_regression_target(tmp_path):
    frame = pd.DataFrame({"a": range(30), "price": np.linspace(0, 1, 30)})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "(30 classes have a single row)" in msg
    assert "30 distinct values in 30 rows: is 'price' really a class label?" in msg


def test_error_no_feature_columns(tmp_path):
    msg = load_error(f"csv:{write_csv(tmp_path, pd.DataFrame({'label': ['x', 'y'] * 2}))}")
    assert "has no feature columns, only the target column 'label'" in msg
    path = tmp_path / "semi.csv"
    path.write_text("a;b;label\n1;2;x\n3;4;y\n")
    assert "separated by semicolons" in load_error(f"csv:{path}")


def test_error_names_with_newlines_stay_on_one_line(tmp_path):
    frame = pd.DataFrame({"bad\ncol": ["p", "q", "r", "s"], "label": ["x", "y"] * 2})
    msg = load_error(f"csv:{write_csv(tmp_path, frame)}")
    assert "feature column 'bad\\ncol'" in msg


def test_error_unreadable_file(good_csv, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root
    msg = load_error(f"csv:{good_csv}")
    assert f"cannot read CSV file '{good_csv}': Permission denied" in msg


def test_cli_reports_csv_errors_in_one_line(tmp_path, capsys):
    from gdbench import cli

    code = cli.main(["run", "--tasks", f"csv:{tmp_path}/nope.csv", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gdbench: error: CSV file") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_csv_task_runs_end_to_end(tmp_path, monkeypatch, capsys):
    from gdbench import cli, results

    rng = np.random.default_rng(1)
    y = rng.choice(["cat", "dog", "eel"], 90)
    frame = pd.DataFrame(rng.normal(size=(90, 3)) + (y == "dog")[:, None], columns=list("abc"))
    frame.insert(1, "species", y)
    write_csv(tmp_path, frame, "pets.csv")
    monkeypatch.chdir(tmp_path)  # a relative path, as a user would type it
    name = "csv:pets.csv?target=species"
    argv = ["run", "--tasks", name, "--models", "gnb", "--sizes", "10,30", "--seeds", "2"]
    assert cli.main([*argv, "--out", "runs/pets", "--no-progress"]) == 0
    rows = results.load(tmp_path / "runs" / "pets")
    assert len(rows) == 4 and set(rows["task"]) == {name} and (rows["status"] == "ok").all()
    meta = results.read_manifest(tmp_path / "runs" / "pets")["tasks"][name]
    assert meta["source"] == str(tmp_path / "pets.csv") and meta["version"].startswith("sha256:")
    assert meta["pool_size"] == 63 and meta["num_classes"] == 3


# --- display names (?name=, for csv:, npz: and tfds: tasks) --------------------------------


def test_display_name_is_split_from_the_spec():
    from gdbench.tasks import registry

    split = registry.split_display_name
    assert split("csv:t.csv?target=y&name=bc") == ("csv:t.csv?target=y", "bc")
    assert split("csv:t.csv?name=bc&target=y") == ("csv:t.csv?target=y", "bc")
    assert split("csv:t.csv?name=bc") == ("csv:t.csv", "bc")
    assert split("npz:a.npz?name=arr_1.v2") == ("npz:a.npz", "arr_1.v2")
    assert split("tfds:mnist?binarize=0.5&name=bmnist") == ("tfds:mnist?binarize=0.5", "bmnist")
    assert split("csv:t.csv?target=y") == ("csv:t.csv?target=y", None)
    assert split("iris") == ("iris", None)
    for bad in ("", "1x", "a/b", "a b", "a:b", "x" * 65, "é"):
        with pytest.raises(TaskError, match="bad display name") as err:
            split(f"csv:t.csv?name={bad}")
        one_line(err)
    with pytest.raises(TaskError, match="option 'name' is given twice"):
        split("csv:t.csv?name=a&name=b")


def test_display_name_of_npz_and_tfds_tasks(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(20, 2)), y_train=np.arange(20) % 2)
    task = tasks.load(f"npz:{path}?name=arrays")
    assert task.name == "arrays" and task.pool_size > 0
    tasks.check_name("tfds:mnist?binarize=0.5&name=bmnist")  # syntax only, reads nothing
    with pytest.raises(TaskError, match="unknown option 'nam'"):
        tasks.check_name("tfds:mnist?nam=x")


def test_csv_display_name_names_rows_progress_and_report(tmp_path, monkeypatch, capsys):
    from gdbench import cli, results

    rng = np.random.default_rng(2)
    y = rng.choice(["p", "q"], 60)
    frame = pd.DataFrame(rng.normal(size=(60, 2)) + (y == "q")[:, None], columns=["a", "b"])
    frame["label"] = y
    path = write_csv(tmp_path, frame, "long name table.csv")
    name = f"csv:{path}?target=label&name=tbl"
    out = tmp_path / "run"
    argv = ["run", "--tasks", name, "--models", "gnb", "--sizes", "10,20", "--seeds", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err  # stderr is not a terminal here: one line per grid
    assert "gdbench: grid 1/1 tbl x gnb: compile" in err
    rows = results.load(out)
    assert set(rows["task"]) == {"tbl"} and (rows["status"] == "ok").all()
    meta = results.read_manifest(out)["tasks"][name]  # the whole spec is kept
    assert meta["name"] == "tbl" and meta["source"] == str(path)
    assert cli.main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "figures" / "learning_curve_tbl.png").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "tbl" in md
    # Two tasks of one display name in one run: refused before anything is computed.
    other = write_csv(tmp_path, frame, "other.csv")
    twice = f"{name},csv:{other}?name=tbl"
    capsys.readouterr()
    code = cli.main(["run", "--tasks", twice, "--models", "gnb", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "are both called 'tbl' in this run; give each its own display name" in err
    assert not (tmp_path / "r2" / "manifest.json").exists()
