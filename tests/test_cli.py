"""The command line end to end: list, run, resume, report, env, and every bad-input path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gdbench import cli, results
from gdbench.results.schema import unpack_correct

SMALL = ["--tasks", "iris", "--models", "gnb,logreg", "--sizes", "6,20", "--seeds", "2"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "small"
    assert cli.main(["run", *SMALL, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.fast
def test_list_names_every_task_model_and_suite(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    from gdbench import models, suites, tasks

    for name in [*models.names(), *tasks.names(), *suites.SUITES]:
        assert f"  {name} " in out


@pytest.mark.fast
def test_list_tasks_shows_every_family_with_an_example_and_whole_descriptions(capsys):
    from gdbench import suites
    from gdbench.tasks import registry as tasks

    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 100  # wrapped, not paragraph-long
    flat = " ".join(out.split())
    for example in (
        "csv:data/table.csv?target=label&name=table",
        "npz:arrays.npz",
        "tfds:mnist",
        "my_tasks.py:make_task",
        "mypkg.tasks:make_task",
        "entry point in the group gdbench.tasks",
    ):
        assert example in flat
    for name in tasks.names():  # whole descriptions, nothing cut short
        assert f"{name} {tasks.describe(name)}" in flat
    assert " cl." not in flat
    for suite in suites.SUITES.values():
        assert f"{suite.name} {' '.join(suite.doc.split())}" in flat


def test_run_writes_one_row_per_cell_with_provenance(small_run):
    df = results.load(small_run)
    assert len(df) == 2 * 2 * 2  # tasks x models x sizes x seeds = 1 x 2 x 2 x 2
    assert set(df["model"]) == {"gnb", "logreg"}
    assert sorted(df["n_train"].unique()) == [6, 20]
    assert (df["status"] == "ok").all()
    assert df.loc[df.model == "gnb", "log_lik"].notna().all()
    assert df.loc[df.model == "logreg", "log_lik"].isna().all()
    manifest = json.loads((small_run / "manifest.json").read_text())
    assert manifest["tasks"]["iris"]["sha256"] and manifest["finished_utc"]
    assert manifest["provenance"]["versions"]["jax"]
    assert manifest["provenance"]["device_count"] >= 1
    assert manifest["config"]["seeds"] == [0, 1]


def test_rerun_resumes_without_recomputing(small_run, capsys):
    before = json.loads((small_run / "manifest.json").read_text())["grids"]
    code, _, _ = run_cli(capsys, "run", *SMALL, "--out", str(small_run), "--no-progress")
    assert code == 0
    after = json.loads((small_run / "manifest.json").read_text())["grids"]
    assert after == before  # nothing recomputed: same grid records, same finish times


def test_report_writes_markdown_csv_and_figures(small_run, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "report", str(small_run), "--out", str(tmp_path / "rep"))
    assert code == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "iris" in md and "logreg" in md and "gnb" in md
    csv = pd.read_csv(tmp_path / "rep" / "results.csv")
    assert len(csv) == 8
    # per-example outcomes as hex text: bytes.fromhex gives the stored bits back
    for _, row in csv.iterrows():
        bits = unpack_correct(bytes.fromhex(row["test_correct"]), row["n_test"])
        assert bits.mean() == pytest.approx(row["accuracy"], abs=1e-6)
    png = tmp_path / "rep" / "figures" / "learning_curve_iris.png"
    assert png.stat().st_size > 1000


def _not_a_run(tmp_path: Path) -> list[str]:
    d = tmp_path / "notarun"
    d.mkdir()
    (d / "x.txt").write_text("hello")
    return ["report", str(d)]


def _not_empty_out(tmp_path: Path) -> list[str]:
    d = tmp_path / "occupied"
    d.mkdir()
    (d / "data.csv").write_text("a,b\n")
    return ["run", *SMALL, "--out", str(d)]


def _file_as_out(tmp_path: Path) -> list[str]:
    f = tmp_path / "afile"
    f.write_text("")
    return ["run", *SMALL, "--out", str(f)]


BAD_INPUTS = [
    # (id, argv or builder, text the one-line error must contain)
    ("unknown task", ["run", "--tasks", "wines"], "unknown task 'wines' (did you mean 'wine'?)"),
    ("unknown model", ["run", "--models", "logreq"], "unknown model 'logreq' (did you mean"),
    ("unknown suite", ["run", "--suite", "quik"], "unknown suite 'quik' (did you mean 'quick'?)"),
    (
        "bad hyperparameter",
        ["run", "--models", "logreg?c=1"],
        "has no hyperparameter 'c' (did you mean 'C'?); valid: C, newton_steps",
    ),
    ("bad hyperparameter value", ["run", "--models", "logreg?C=big"], "bad value 'big'"),
    ("zero-width layer", ["run", "--models", "mlp?hidden=64-0"], "bad value '64-0'"),
    (
        "hyperparameter value the model rejects",
        ["run", "--models", "vae?decoder=poisson"],
        "bad hyperparameters for model 'vae': ",
    ),
    (
        "size above pool",
        ["run", "--tasks", "iris", "--sizes", "10,500"],
        "training size 500 exceeds the training pool of task 'iris' (105 examples)",
    ),
    (
        "size below classes",
        ["run", "--tasks", "iris", "--sizes", "2"],
        "smaller than the 3 classes",
    ),
    ("zero size", ["run", "--tasks", "iris", "--sizes", "0,10"], "must be positive"),
    ("zero seeds", ["run", "--tasks", "iris", "--seeds", "0"], "--seeds must be at least 1"),
    ("negative seeds", ["run", "--tasks", "iris", "--seeds", "-3"], "--seeds must be at least 1"),
    ("report of a non-run", _not_a_run, "not a gdbench run"),
    ("report of a missing dir", ["report", "/nonexistent/run"], "not a gdbench run"),
    ("out not empty", _not_empty_out, "is not empty and is not a gdbench run"),
    ("out is a file", _file_as_out, "exists and is not a directory"),
    ("resume nothing", ["run", "--resume", "--out", "/nonexistent/x"], "holds no gdbench run"),
]


@pytest.mark.parametrize(
    "argv, expected", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
@pytest.mark.fast
def test_bad_input_is_one_line_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out (runs/<suite>) lands in tmp_path
    if callable(argv):
        argv = argv(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gdbench: error: ")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_different_config_into_existing_run_is_refused(small_run, capsys):
    before = results.load(small_run)
    code, _, err = run_cli(capsys, "run", *SMALL[:-1], "3", "--out", str(small_run))
    assert code == 2
    assert "cannot be resumed with these settings: it holds 2 seeds, asked for 3" in err
    pd.testing.assert_frame_equal(results.load(small_run), before)  # nothing lost


USAGE_ERRORS = [
    # (argv, text the one-line error must contain): argparse's own errors, one line as well
    (
        ["run", "--sizes", "ten"],
        "argument --sizes: 'ten' is not a comma-separated list of integers",
    ),
    (["run", "--seeds", "ten"], "argument --seeds: 'ten' is not a number of seeds"),
    (["run", "--devices", "0"], "argument --devices: '0' is not a positive integer"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--quality", "--no-quality"], "not allowed with argument"),
    (["list", "task"], "invalid choice: 'task'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("argv, expected", USAGE_ERRORS)
@pytest.mark.fast
def test_usage_error_is_one_line_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("gdbench: error: ") and expected in err
    assert "--help" in err and "usage:" not in err


def test_non_integer_sizes_exit_2_from_a_real_process():
    proc = subprocess.run(cli.command("run", "--sizes", "ten"), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gdbench: error: argument --sizes: 'ten' is not a comma")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_error_exit_status_from_a_real_process():
    proc = subprocess.run(
        cli.command("run", "--tasks", "nope"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown task 'nope'" in proc.stderr


def test_run_logs_one_line_per_grid_and_a_summary_when_stderr_is_not_a_terminal(tmp_path):
    """stderr to a pipe (as to a log file): no carriage-return progress bar, one plain line per
    finished grid; stdout ends with the one-line summary naming the report command."""
    out = tmp_path / "logged"
    proc = subprocess.run(
        cli.command("run", *SMALL, "--out", str(out)), capture_output=True, text=True, check=True
    )
    assert "\r" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line.split(":")[1] for line in lines] == [
        " grid 1/2 iris x gnb",
        " grid 2/2 iris x logreg",
    ], proc.stderr
    assert all(line.startswith("gdbench: grid ") and "compile" in line for line in lines)
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"run written to {out}: 8 cells, 8 ok, ")
    assert summary.endswith(f"report: gdbench report {out}")
    # Run again: every grid is stored, and says so.
    again = subprocess.run(
        cli.command("run", *SMALL, "--out", str(out)), capture_output=True, text=True, check=True
    )
    assert again.stderr.count(": stored (") == 2, again.stderr


def test_failed_cells_are_counted_in_the_summary(small_run, capsys, monkeypatch):
    from gdbench import api
    from gdbench.results import store

    cells = store.stored_cells(small_run)
    failed = cells.assign(status=["failed"] + ["ok"] * (len(cells) - 1))
    monkeypatch.setattr(api, "execute", lambda *args, **kwargs: small_run)  # nothing computed
    monkeypatch.setattr(store, "stored_cells", lambda run: failed)
    code, out, _ = run_cli(capsys, "run", *SMALL, "--out", str(small_run), "--no-progress")
    assert code == 0
    assert f"run written to {small_run}: 8 cells, 7 ok, 1 not ok (see the report)" in out


def test_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from gdbench import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "execute", interrupted)
    out = tmp_path / "my run"
    code, _, err = run_cli(capsys, "run", *SMALL, "--out", str(out))
    assert code == 130
    assert len(err.strip().splitlines()) == 1
    assert "finished grids are stored and will be skipped" in err
    again = " ".join(["gdbench", "run", *SMALL, "--out", f"'{out}'"])
    assert err.strip().endswith(f"run the same command again: {again}")


def test_compare_lists_the_runs_configuration_differences(small_run, tmp_path, capsys):
    import shutil

    from gdbench.results import store

    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(small_run, same)
    shutil.copytree(small_run, other)
    manifest = store.read_manifest(other)
    jax_version = manifest["provenance"]["versions"]["jax"]
    manifest["provenance"]["versions"]["jax"] = "9.9.9"
    manifest["provenance"]["device_kind"] = "NVIDIA H100"
    manifest["identity"]["code_version"] = "0123abcd"
    store.write_manifest(other, manifest)

    code, out, err = run_cli(capsys, "compare", str(small_run), str(other))
    assert code == 0 and err == ""
    assert "8 cells compared (ok in both runs)" in out
    section = out.split("## Configuration differences")[1].split("\n## ")[0]
    assert f"| jax | {jax_version} | 9.9.9 |" in section
    assert "| device | cpu | NVIDIA H100 |" in section
    assert "| code version | " in section and "| 0123abcd |" in section
    assert section.count("\n| ") == 4  # header and the three settings changed, nothing else

    code, out, err = run_cli(capsys, "compare", str(small_run), str(same))
    assert code == 0 and err == ""
    assert "The runs' manifests record the same configuration and versions." in out


def test_compare_warns_when_the_runs_share_no_cell(small_run, tmp_path, capsys):
    other = tmp_path / "wine"
    argv = ["--tasks", "wine", "--models", "gnb", "--sizes", "6", "--seeds", "1", "--out"]
    assert cli.main(["run", *argv, str(other), "--no-progress"]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "compare", str(small_run), str(other))
    assert code == 0
    assert err.startswith("gdbench: warning: small and wine share no cell")
    assert len(err.strip().splitlines()) == 1
    assert "0 cells compared" in out
    assert "| tasks | iris | wine |" in out and "| models | gnb, logreg | gnb |" in out
    assert "| seeds | 2 (0..1) | 1 (0..0) |" in out and "| sizes | 6, 20 | 6 |" in out


def test_python_compare_returns_the_differences_and_warns_when_nothing_is_shared(
    small_run, tmp_path
):
    import shutil

    import gdbench
    from gdbench.api import NoSharedCellsWarning
    from gdbench.results import store

    other = tmp_path / "other"
    shutil.copytree(small_run, other)
    manifest = store.read_manifest(other)
    manifest["provenance"]["versions"]["jax"] = "9.9.9"
    store.write_manifest(other, manifest)
    result = gdbench.compare(small_run, other)
    assert result.n_cells == 8
    assert [d[0] for d in result.differences] == ["jax"]
    assert result.differences[0][2] == "9.9.9"

    wine = tmp_path / "wine"
    argv = ["--tasks", "wine", "--models", "gnb", "--sizes", "6", "--seeds", "1", "--out"]
    assert cli.main(["run", *argv, str(wine), "--no-progress"]) == 0
    with pytest.warns(NoSharedCellsWarning, match="share no cell"):
        result = gdbench.compare(small_run, wine)
    assert result.n_cells == 0 and len(result.only_b) == 1
    assert ("tasks", "iris", "wine") in result.differences


def test_env_reports_devices_versions_and_peak(capsys, monkeypatch):
    from gdbench import env

    monkeypatch.setattr(env, "matmul_peak_flops", lambda: 1.25e10)
    code, out, _ = run_cli(capsys, "env")
    assert code == 0
    assert "jax: 0." in out and "device 0: cpu" in out and "12.5 GFLOP/s" in out


def test_second_run_loads_its_programs_from_the_compile_cache(tmp_path, capsys):
    """In one process JAX would reuse programs anyway; a fresh process shows the disk cache."""
    cache = tmp_path / "xla"
    argv = ["run", *SMALL, "--no-progress", "--compile-cache", str(cache)]
    root = Path(__file__).resolve().parents[1]
    for name in ("first", "second"):
        subprocess.run(cli.command(*argv, "--out", str(tmp_path / name)), check=True, cwd=root)
    grids = {
        name: json.loads((tmp_path / name / "manifest.json").read_text())["grids"]
        for name in ("first", "second")
    }
    assert [g["cached_programs"] for g in grids["first"].values()] == [0, 0]
    assert [g["cached_programs"] for g in grids["second"].values()] == [2, 2]
    # Same programs, same numbers.
    cols = ["task", "model", "n_train", "seed", "accuracy", "nll", "log_lik"]
    first, second = (results.load(tmp_path / n)[cols] for n in ("first", "second"))
    pd.testing.assert_frame_equal(first, second)


def test_no_compile_cache_flag_compiles_afresh(tmp_path, capsys):
    code, out, _ = run_cli(
        capsys, "run", *SMALL, "--out", str(tmp_path / "r"), "--no-progress", "--no-compile-cache"
    )
    assert code == 0 and "compile cache" not in out


def test_run_on_bundled_tasks_imports_no_plotting_tfds_or_reports(tmp_path):
    code = (
        "import sys\n"
        "from gdbench import cli\n"
        f"cli.main(['run', *{SMALL!r}, '--out', {str(tmp_path / 'r')!r}, '--no-progress'])\n"
        "heavy = ('matplotlib', 'seaborn', 'tensorflow_datasets', 'tensorflow',\n"
        "         'gdbench.reports', 'markdown')\n"
        "loaded = {p for m in sys.modules for p in (m.split('.')[0], '.'.join(m.split('.')[:2]))}\n"
        "print(sorted(loaded & set(heavy)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_quality_follows_the_suite_unless_a_flag_says_otherwise():
    """The ngjordan suite scores no samples by default (its study does not use them); the
    others do; --quality and --no-quality override either, and not both at once."""
    from gdbench import runner, suites

    def config(*flags):
        args = cli._parser().parse_args(["run", *flags])
        quality = True if args.quality else (False if args.no_quality else None)
        suite = suites.get(args.suite)
        return runner.make_config(suite, ["iris"], ["gnb"], quality=quality)

    assert config("--suite", "ngjordan").quality is False
    assert config("--suite", "quick").quality is True
    assert config("--suite", "ngjordan", "--quality").quality is True
    assert config("--suite", "quick", "--no-quality").quality is False
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["run", "--quality", "--no-quality"])
