"""Result schema, run store and provenance: round trips, errors, atomic writes."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gdbench import results
from gdbench.results import provenance, schema, store


def grid_rows(task: str = "gauss_2d", model: str = "gnb", n_seeds: int = 3) -> pd.DataFrame:
    """Rows of one small grid with distinct, exactly representable values."""
    rows = []
    for i, (n, seed) in enumerate((n, s) for n in (10, 40) for s in range(n_seeds)):
        rows.append(
            {
                "task": task,
                "model": model,
                "paradigm": "generative",
                "n_train": n,
                "n_val": n // 10,
                "seed": seed,
                "accuracy": 0.5 + i / 64,
                "nll": 0.25 * (i + 1),
                "ece": 0.015625 * i,
                "brier": 0.125 + i / 128,
                "log_lik": -3.5 - i,
                "bits_per_dim": (3.5 + i) / (2 * math.log(2)),
                "likelihood_is_bound": i % 2 == 0,
                "fit_s": 0.5,
                "predict_s": 0.0625,
                "compile_s": 2.25,
                "grid_cells": 2 * n_seeds,
                "flops": np.nan,
                "status": "ok" if i != 1 else "diverged",
                "message": "" if i != 1 else "nan loss at step 12",
                "bayes_accuracy": 0.9375,
                "true_log_lik": -2.75,
                "model_config": json.dumps({"var_smoothing": 1e-9}),
                "preprocess": "standardize",
                "schema_version": schema.SCHEMA_VERSION,
            }
        )
    return pd.DataFrame(rows)


def make_run(run_dir: Path, grids: list[pd.DataFrame]) -> Path:
    store.write_manifest(run_dir, {"name": run_dir.name, "suite": {"seeds": 3}})
    for g in grids:
        store.write_grid(run_dir, g, f"{g['task'].iloc[0]}__{g['model'].iloc[0]}")
    return run_dir


# --- schema -------------------------------------------------------------------------------


def test_column_order_and_version_match_contract():
    assert schema.SCHEMA_VERSION == 1
    names = list(schema.COLUMNS)
    assert names[:6] == ["task", "model", "paradigm", "n_train", "n_val", "seed"]
    assert names[-1] == "schema_version"
    assert schema.COLUMNS["likelihood_is_bound"].dtype == "boolean"
    assert all(c.description for c in schema.COLUMNS.values())


def test_empty_frame_has_every_column_and_dtype():
    empty = schema.empty_frame()
    assert list(empty.columns) == list(schema.COLUMNS)
    assert len(empty) == 0
    assert empty["n_train"].dtype == np.int64
    assert empty["accuracy"].dtype == np.float64
    assert str(empty["likelihood_is_bound"].dtype) == "boolean"
    pd.testing.assert_frame_equal(schema.validate(empty), empty)


def test_validate_orders_columns_coerces_and_fills_optional():
    df = grid_rows()
    required = [n for n, c in schema.COLUMNS.items() if c.required]
    shuffled = df[required[::-1]].copy()
    shuffled["n_train"] = shuffled["n_train"].astype(float)
    out = schema.validate(shuffled)
    assert list(out.columns) == list(schema.COLUMNS)
    assert out["n_train"].dtype == np.int64
    assert out["n_train"].tolist() == df["n_train"].tolist()
    assert out["log_lik"].isna().all()
    assert out["likelihood_is_bound"].isna().all()
    assert (out["message"] == "").all()
    assert (out["schema_version"] == 1).all()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.drop(columns="accuracy"), "missing required column 'accuracy'"),
        (lambda d: d.assign(acc=1.0), "unknown column 'acc'"),
        (lambda d: d.assign(paradigm="bayesian"), "column 'paradigm' has 'bayesian'"),
        (lambda d: d.assign(status="crashed"), "column 'status' has 'crashed'"),
        (lambda d: d.assign(accuracy=1.5), "column 'accuracy' has 1.5"),
        (lambda d: d.assign(nll=-0.1), "column 'nll'"),
        (lambda d: d.assign(seed=0.5), "column 'seed' must hold integers"),
        (lambda d: d.assign(n_val=d["n_train"]), "column 'n_val'"),
        (lambda d: d.assign(task=None), "column 'task' has"),
        (lambda d: d.assign(model_config="not json"), "column 'model_config'"),
        (lambda d: d.assign(likelihood_is_bound="yes"), "column 'likelihood_is_bound'"),
        (lambda d: d.assign(seed=0), "duplicate cell"),
        (lambda d: d.assign(accuracy=np.nan), "'accuracy' is NaN on a row with status 'ok'"),
    ],
)
def test_validate_rejects_bad_rows_with_one_line_message(mutate, fragment):
    with pytest.raises(schema.SchemaError) as err:
        schema.validate(mutate(grid_rows()))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_validate_rejects_other_schema_version():
    with pytest.raises(schema.SchemaVersionError, match="schema_version 2"):
        schema.validate(grid_rows().assign(schema_version=2))


# --- store --------------------------------------------------------------------------------


@pytest.mark.fast
def test_write_grid_and_load_round_trip_values_and_dtypes(tmp_path):
    df = grid_rows()
    run = make_run(tmp_path / "run_a", [df])
    loaded = results.load(run)
    assert list(loaded.columns) == ["run", *schema.COLUMNS]
    assert (loaded["run"] == "run_a").all()
    expected = schema.validate(df)
    pd.testing.assert_frame_equal(loaded.drop(columns="run"), expected)
    assert loaded["likelihood_is_bound"].tolist() == [True, False, True, False, True, False]
    assert loaded.loc[1, "message"] == "nan loss at step 12"
    assert loaded["bits_per_dim"].tolist() == df["bits_per_dim"].tolist()
    assert math.isnan(loaded.loc[0, "flops"])


def test_load_two_runs_adds_run_column(tmp_path):
    run_a = make_run(tmp_path / "a" / "cpu", [grid_rows(model="gnb"), grid_rows(model="lda")])
    run_b = make_run(tmp_path / "gpu", [grid_rows(model="gnb", n_seeds=2)])
    loaded = results.load([run_a, str(run_b)])
    assert loaded.groupby("run").size().to_dict() == {"cpu": 12, "gpu": 4}
    assert sorted(loaded.loc[loaded["run"] == "cpu", "model"].unique()) == ["gnb", "lda"]
    assert loaded["n_train"].dtype == np.int64


def test_load_rejects_non_run_and_same_named_runs(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(results.NotARunError, match="not a gdbench run: .*plain .no manifest.json"):
        results.load(tmp_path / "plain")
    assert not store.is_run_dir(tmp_path / "plain")
    run = make_run(tmp_path / "x" / "run", [grid_rows()])
    other = make_run(tmp_path / "y" / "run", [grid_rows()])
    assert store.is_run_dir(run)
    with pytest.raises(ValueError, match="two runs are named 'run'"):
        results.load([run, other])


def test_load_rejects_schema_version_mismatch(tmp_path):
    run = make_run(tmp_path / "old", [grid_rows()])
    store.write_manifest(run, {"schema_version": 0})
    with pytest.raises(results.SchemaVersionError, match="schema_version 0; this gdbench reads"):
        results.load(run)


def test_load_rejects_a_cell_stored_in_two_parts(tmp_path):
    run = make_run(tmp_path / "dup", [grid_rows()])
    store.write_grid(run, grid_rows(), "copy")
    with pytest.raises(results.SchemaError, match="more than one part"):
        results.load(run)


def test_rewriting_a_part_replaces_it(tmp_path):
    run = make_run(tmp_path / "r", [grid_rows()])
    store.write_grid(run, grid_rows().assign(fit_s=0.75), "gauss_2d__gnb")
    assert results.load(run)["fit_s"].tolist() == [0.75] * 6


def test_stored_cells_reads_each_part_once_until_it_is_replaced(tmp_path, monkeypatch):
    keyed = grid_rows().assign(cell_key=[f"k{i}" for i in range(6)])
    run = make_run(
        tmp_path / "r", [keyed, keyed.assign(model="lda", cell_key="m" + keyed["cell_key"])]
    )
    reads = []
    read_part = store._read_part
    monkeypatch.setattr(
        store, "_read_part", lambda path, **kw: reads.append(path.name) or read_part(path, **kw)
    )
    first = store.stored_cells(run)
    assert len(first) == 12 and len(reads) == 2
    assert store.stored_cells(run).equals(first) and len(reads) == 2  # nothing read again
    # A rewritten part (a resumed grid) and a new part are read; the other part is not.
    store.write_grid(run, keyed.assign(status="failed"), "gauss_2d__gnb")
    store.write_grid(run, keyed.assign(model="qda", cell_key="q" + keyed["cell_key"]), "extra")
    cells = store.stored_cells(run)
    assert sorted(reads[2:]) == ["extra.parquet", "gauss_2d__gnb.parquet"]
    assert len(cells) == 18
    assert (cells.loc[cells["part"] == "gauss_2d__gnb.parquet", "status"] == "failed").all()
    store.delete_part(run, "extra.parquet")
    assert len(store.stored_cells(run)) == 12


def test_manifest_round_trip_and_schema_version(tmp_path):
    manifest = {
        "suite": {"tasks": ["iris"], "sizes": [10, 20]},
        "n": np.int64(3),
        "out": tmp_path,
        "ratio": np.float32(0.5),
    }
    store.write_manifest(tmp_path / "run", manifest)
    back = results.read_manifest(tmp_path / "run")
    assert back == {
        "schema_version": 1,
        "suite": {"tasks": ["iris"], "sizes": [10, 20]},
        "n": 3,
        "out": str(tmp_path),
        "ratio": 0.5,
    }
    with pytest.raises(results.NotARunError):
        results.read_manifest(tmp_path)
    with pytest.raises(TypeError, match="not JSON-serializable"):
        store.write_manifest(tmp_path / "bad", {"x": object()})


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    run = make_run(tmp_path / "r", [grid_rows()])
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "rows"]
    assert [p.name for p in (run / "rows").iterdir()] == ["gauss_2d__gnb.parquet"]
    with pytest.raises(schema.SchemaError):
        store.write_grid(run, grid_rows().drop(columns="nll"), "broken")
    with pytest.raises(TypeError):
        store.write_manifest(run, {"x": object()})
    assert [p.name for p in (run / "rows").iterdir()] == ["gauss_2d__gnb.parquet"]
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "rows"]
    assert results.read_manifest(run)["suite"] == {"seeds": 3}


def test_atomic_write_cleans_up_when_the_writer_fails(tmp_path):
    def failing(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        store.atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_part_names_are_sanitized_without_collisions(tmp_path):
    assert store.safe_name("iris__logreg") == "iris__logreg"
    a = store.safe_name("tfds:mnist__sk:LogisticRegression")
    b = store.safe_name("tfds_mnist__sk_LogisticRegression")
    assert a != b
    assert all(ch.isalnum() or ch in "._-" for ch in a)
    path = store.write_grid(tmp_path / "r", grid_rows(), "csv:/data/x.csv?target=y__gnb")
    assert path.parent == tmp_path / "r" / "rows"
    assert path.name.startswith("csv_data_x.csv_target_y__gnb-")
    assert not path.name.startswith(".")


# --- provenance ---------------------------------------------------------------------------


def test_provenance_collects_versions_and_device_extra(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    monkeypatch.setenv("JAX_ENABLE_X64", "1")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    info = provenance.collect({"device_kind": "cpu", "device_count": 4})
    assert info["gdbench_version"] == "0.1.0"
    assert info["versions"]["pandas"] == pd.__version__
    assert info["versions"]["numpy"] == np.__version__
    assert set(info["versions"]) >= {"jax", "jaxlib", "flax", "optax", "tensorflow-datasets"}
    assert info["env"] == {
        "JAX_ENABLE_X64": "1",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    assert info["device_kind"] == "cpu" and info["device_count"] == 4
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["timestamp_utc"].endswith("Z")
    json.dumps(info)
    with pytest.raises(ValueError, match="clashes"):
        provenance.collect({"versions": {}})


def test_provenance_git_commit_matches_repository():
    repo = Path(provenance.__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    commit, dirty = provenance.git_state(repo)
    if head.returncode != 0:
        assert (commit, dirty) == (None, None)
    else:
        assert commit == head.stdout.strip()
        assert isinstance(dirty, bool)


def test_git_dirty_ignores_run_outputs_but_not_code(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "reference" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "reference" / "quick" / "manifest.json").write_text("{}")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    assert provenance.git_state(tmp_path)[1] is False
    # make reference replaces a committed run: deleted and new outputs are not code changes.
    (tmp_path / "results" / "reference" / "quick" / "manifest.json").unlink()
    (tmp_path / "results" / "reference" / "hybrids").mkdir()
    (tmp_path / "results" / "reference" / "hybrids" / "rows.parquet").write_text("")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x").write_text("")
    assert provenance.git_state(tmp_path)[1] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path)[1] is True


def test_provenance_survives_missing_git(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert provenance.git_state(tmp_path) == (None, None)
    info = provenance.collect()
    assert info["git_commit"] is None and info["git_dirty"] is None


def test_results_package_imports_no_jax():
    code = (
        "import sys, gdbench.results, gdbench.results.provenance, gdbench.reports; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'jaxlib', 'flax', 'optax') or (m.startswith('gdbench.') and "
        "m.split('.')[1] not in ('results', 'reports'))]; "
        "assert not bad, bad"
    )
    repo = Path(results.__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)


# --- per-example test outcomes ------------------------------------------------------------


@pytest.mark.parametrize("n_test", [1, 7, 8, 9, 171, 540])
def test_packed_outcomes_are_msb_first_bits_and_unpack_exactly(n_test):
    rng = np.random.default_rng(n_test)
    correct = rng.random(n_test) < 0.7
    packed = schema.pack_correct(correct)
    assert len(packed) == (n_test + 7) // 8  # 68 bytes for the ngjordan suite's 540
    # independent reference: bit i is bit 7 - i % 8 of byte i // 8 (most significant first)
    for i, c in enumerate(correct):
        assert bool(packed[i // 8] >> (7 - i % 8) & 1) == bool(c)
    assert all(packed[-1] & (1 << k) == 0 for k in range(8 - (n_test % 8 or 8)))  # zero pad
    np.testing.assert_array_equal(schema.unpack_correct(packed, n_test), correct)
    with pytest.raises(ValueError, match="outcomes need"):
        schema.unpack_correct(packed + b"\0", n_test)
    with pytest.raises(ValueError, match="outcomes need"):
        schema.unpack_correct(b"", n_test)


def test_outcomes_and_spreads_survive_the_store_and_old_rows_get_the_fallback(tmp_path):
    rng = np.random.default_rng(0)
    new = grid_rows()
    outcomes = [rng.random(171) < 0.9 for _ in range(len(new))]
    new["n_test"] = 171
    new["test_correct"] = [schema.pack_correct(c) for c in outcomes]
    new["nll_sd"] = 0.5
    new["brier_sd"] = 0.25
    new["ece_sd"] = 0.125
    new["log_lik_sd"] = 2.0
    old = grid_rows(model="logreg")  # written before the per-example columns existed
    run = make_run(tmp_path / "run", [new, old])
    loaded = results.load(run)
    got = loaded[loaded["model"] == "gnb"].sort_values(["n_train", "seed"])
    for packed, n, c in zip(got["test_correct"], got["n_test"], outcomes, strict=True):
        np.testing.assert_array_equal(schema.unpack_correct(packed, n), c)
    assert (got["nll_sd"] == 0.5).all() and (got["log_lik_sd"] == 2.0).all()
    before = loaded[loaded["model"] == "logreg"]
    assert (before["n_test"] == 0).all() and (before["test_correct"] == b"").all()
    assert before[["nll_sd", "brier_sd", "ece_sd", "log_lik_sd"]].isna().all().all()


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.assign(n_test=171, test_correct=[b"\xff"] * len(d)), "ceil(n_test / 8)"),
        (lambda d: d.assign(n_test=-1), "'n_test' must be >= 0"),
        (lambda d: d.assign(test_correct="abc"), "must hold bytes"),
        (lambda d: d.assign(nll_sd=-0.1), "'nll_sd'"),
    ],
)
def test_validate_rejects_bad_per_example_columns(mutate, fragment):
    with pytest.raises(schema.SchemaError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        schema.validate(mutate(grid_rows()))


def test_provenance_records_cpu_model_and_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gdbench", "run", "--suite", "quick"])
    info = provenance.collect()
    assert info["argv"] == ["gdbench", "run", "--suite", "quick"]
    assert "cpu_model" in info
    if Path("/proc/cpuinfo").is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if names:
            assert info["cpu_model"] == names[0].strip()
    json.dumps(info)


def test_cpu_model_falls_back_to_platform_processor(monkeypatch):
    import builtins

    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(provenance.sys, "platform", "linux")
    monkeypatch.setattr(provenance.platform, "processor", lambda: "x86_64 test cpu")
    assert provenance.cpu_model() == "x86_64 test cpu"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    assert provenance.cpu_model() is None


def test_git_diff_sha256_hashes_the_uncommitted_diff_of_tracked_code(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True
        ).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "log.txt").write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    empty = hashlib.sha256(b"").hexdigest()
    assert provenance.git_diff_sha256(tmp_path) == empty
    # Changes to run outputs are not in the hash (as they do not make the tree dirty).
    (tmp_path / "runs" / "log.txt").write_text("b\n")
    assert provenance.git_diff_sha256(tmp_path) == empty
    (tmp_path / "code.py").write_text("x = 2\n")
    digest = provenance.git_diff_sha256(tmp_path)
    # The documented command line gives the same hash.
    diff = git(
        "diff", "HEAD", "--no-ext-diff", "--no-color", "--binary", "--", ":(top)",
        ":(top,exclude)results/reference", ":(top,exclude)results/benchmarks",
        ":(top,exclude)runs",
    )  # fmt: skip
    assert b"x = 2" in diff and b"log.txt" not in diff
    assert digest == hashlib.sha256(diff).hexdigest() != empty
    (tmp_path / "code.py").write_text("x = 3\n")
    assert provenance.git_diff_sha256(tmp_path) not in (digest, empty)
    # Staged changes count too (the diff is against HEAD).
    git("add", "code.py")
    assert provenance.git_diff_sha256(tmp_path) not in (digest, empty, None)
    assert provenance.git_diff_sha256(tmp_path / "nowhere") is None


def test_collect_hashes_the_diff_only_when_dirty(monkeypatch):
    monkeypatch.setattr(provenance, "git_state", lambda d: ("abc", False))
    assert provenance.collect()["git_diff_sha256"] is None
    monkeypatch.setattr(provenance, "git_state", lambda d: ("abc", True))
    monkeypatch.setattr(provenance, "git_diff_sha256", lambda d: "f" * 64)
    info = provenance.collect()
    assert info["git_dirty"] is True and info["git_diff_sha256"] == "f" * 64
