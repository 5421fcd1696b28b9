"""``gdbench prepare tfds:<name>`` (``gdbench.tasks.tfds_task.prepare``), offline.

- The command line: parsing, one-line errors for names that need no preparing (bundled tasks,
  non-TFDS names), checked before anything is prepared.
- Missing ``tensorflow`` / ``importlib_resources``: one line with the pinned pip command, and
  nothing written.
- A dataset already prepared (really written by TFDS's writer): reported as such, checked by
  loading it, with no network and no TensorFlow; one prepared as TFRecord is refused.
- Preparing for real: a registered generator-based builder (which downloads nothing) is
  prepared by ``prepare`` as ArrayRecord files and loaded back; a download that fails is a
  one-line error. Every test fails if anything opens a network connection.
"""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from gdbench import cli  # noqa: E402
from gdbench.tasks import TaskError, tfds_task  # noqa: E402
from tests.test_tfds_task import TinyDigits, one_line, prepare  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_network")

tfds.disable_progress_bar()


class GdbenchPrepareDigits(TinyDigits):
    """Registered (so ``tfds.builder`` finds it by name), as real TFDS datasets are."""


def run_cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what came before (e.g. TFDS preparing a test dataset)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def importing_without(*missing: str):
    """``tfds_task``'s import of a package preparing needs, as if ``missing`` were absent."""

    def fake(module: str):
        if module in missing:
            raise ModuleNotFoundError(f"No module named '{module}'")
        return types.ModuleType(module)  # not imported: a stand-in

    return fake


@pytest.fixture
def no_tensorflow(monkeypatch):
    """gdbench finds no tensorflow (as in this test environment, where it is not installed)."""
    monkeypatch.setattr(tfds_task, "_import", importing_without("tensorflow"))


def test_the_network_is_refused_here():
    import socket

    with pytest.raises(AssertionError, match="tried to use the network"):
        socket.create_connection(("localhost", 9))


def test_cli_parses_prepare():
    args = cli._parser().parse_args(["prepare", "tfds:mnist", "tfds:cifar10", "--data-dir", "d"])
    assert args.command == "prepare"
    assert args.names == ["tfds:mnist", "tfds:cifar10"] and args.data_dir == Path("d")
    assert cli._parser().parse_args(["prepare", "tfds:mnist"]).data_dir is None
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["prepare"])


@pytest.mark.parametrize(
    "names, message",
    [
        (
            ["iris"],
            "task 'iris' is bundled with gdbench and needs no preparing; gdbench "
            "prepare takes tfds:<name> tasks, e.g. gdbench prepare tfds:mnist",
        ),
        (["digits_bin"], "task 'digits_bin' is bundled with gdbench and needs no preparing"),
        (["mnist"], "task 'mnist' is not a TFDS task and needs no preparing"),
        # Known before downloading: TFDS's binarized_mnist has no labels.
        (
            ["tfds:binarized_mnist"],
            "TFDS dataset 'binarized_mnist' is not an image "
            "classification dataset gdbench can read",
        ),
        (["csv:data.csv"], "task 'csv:data.csv' is not a TFDS task and needs no preparing"),
        # Checked before anything is prepared: the first name would need tensorflow.
        (["tfds:mnist", "iris"], "task 'iris' is bundled with gdbench"),
        (
            ["tfds:mnist?binarize=2"],
            "option 'binarize' in task 'tfds:mnist?binarize=2' needs a threshold t with 0 < t",
        ),
    ],
)
def test_names_that_cannot_be_prepared(tmp_path, capsys, no_tensorflow, names, message):
    code, out, err = run_cli(["prepare", *names, "--data-dir", str(tmp_path / "d")], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"gdbench: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def test_missing_tensorflow_names_the_pip_command(tmp_path, capsys, no_tensorflow):
    code, out, err = run_cli(["prepare", "tfds:mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err == (
        "gdbench: error: preparing a TFDS dataset needs the tensorflow package, which is not "
        "installed; run: pip install tensorflow==2.21.0 importlib_resources==7.1.0\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None, reason="tensorflow is installed"
)
def test_really_missing_tensorflow(tmp_path):
    with pytest.raises(TaskError) as err:
        tfds_task.prepare("tfds:mnist", tmp_path, echo=lambda line: None)
    assert "needs the tensorflow package, which is not installed" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_missing_importlib_resources_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_task, "_import", importing_without("importlib_resources"))
    with pytest.raises(TaskError) as err:
        tfds_task.prepare("tfds:mnist", tmp_path, echo=lambda line: None)
    assert one_line(err).startswith(
        "preparing a TFDS dataset needs the importlib_resources package, which is not "
        "installed; run: pip install tensorflow==2.21.0 importlib_resources==7.1.0"
    )


@pytest.mark.fast
def test_pins_match_the_prepare_extra():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["prepare"]
    assert sorted(extra) == sorted(tfds_task.PREPARE_REQUIREMENTS)


def test_already_prepared_is_checked_not_downloaded(tmp_path, monkeypatch, no_tensorflow):
    prepare(TinyDigits, tmp_path)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file())
    lines: list[str] = []
    path = tfds_task.prepare("tfds:tiny_digits", echo=lines.append)
    assert path == tmp_path / "tiny_digits" / "1.0.0"
    assert lines == [
        f"TFDS dataset 'tiny_digits' is already prepared in {path}; nothing to do",
        f"tfds:tiny_digits is ready in {path}: 30 train / 12 test examples, 4x3x1 images, "
        "3 classes",
    ]
    after = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # nothing rewritten


def test_cli_already_prepared_elsewhere_says_how_to_use_it(tmp_path, monkeypatch, capsys):
    prepare(TinyDigits, tmp_path / "mine")
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path / "other"))
    argv = ["prepare", "tfds:tiny_digits?binarize=0.5", "--data-dir", str(tmp_path / "mine")]
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("TFDS dataset 'tiny_digits' is already prepared in ")
    assert lines[-1] == (
        f"gdbench reads {tmp_path / 'other'}; to use {tmp_path / 'mine'}: export "
        f"GDBENCH_TFDS_DIR={tmp_path / 'mine'}"
    )


def test_prepared_as_tfrecord_is_refused(tmp_path, no_tensorflow):
    prepare(TinyDigits, tmp_path)
    info_path = tmp_path / "tiny_digits" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    with pytest.raises(TaskError) as err:
        tfds_task.prepare("tfds:tiny_digits", tmp_path, echo=lambda line: None)
    assert one_line(err) == (
        f"TFDS dataset 'tiny_digits' is already prepared in {tmp_path} as tfrecord files, "
        "which have no random access; prepare it in another directory: gdbench prepare "
        "tfds:tiny_digits --data-dir '<dir>'"
    )


def test_unknown_name_is_one_line(tmp_path, no_tensorflow):
    with pytest.raises(TaskError) as err:
        tfds_task.prepare("tfds:mnistt", tmp_path, echo=lambda line: None)
    assert one_line(err).startswith("unknown TFDS dataset 'mnistt' (did you mean 'tfds:mnist'?)")


def test_prepare_writes_array_record_and_loads_it(tmp_path, monkeypatch, capsys):
    # A generator-based builder needs neither network nor TensorFlow, so the check for
    # tensorflow is the only thing replaced: TFDS's real download_and_prepare runs.
    monkeypatch.setattr(tfds_task, "_require_prepare_packages", lambda: None)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    code, out, err = run_cli(["prepare", "tfds:gdbench_prepare_digits"], capsys)
    assert code == 0, err
    folder = tmp_path / "gdbench_prepare_digits" / "1.0.0"
    assert out.splitlines()[0] == (
        f"preparing TFDS dataset 'gdbench_prepare_digits' in {tmp_path} (downloads it: needs "
        "network access) ..."
    )
    assert out.splitlines()[-1].startswith(f"tfds:gdbench_prepare_digits is ready in {folder}:")
    assert "gdbench reads" not in out  # prepared where gdbench reads
    assert {p.name.split(".array_record")[0] for p in folder.glob("*.array_record-*")} == {
        "gdbench_prepare_digits-train",
        "gdbench_prepare_digits-test",
    }
    assert json.loads((folder / "dataset_info.json").read_text())["fileFormat"] == "array_record"
    task = tfds_task.load("tfds:gdbench_prepare_digits")
    assert task.pool_size == 30 and len(task.y_test) == 12
    np.testing.assert_array_equal(np.bincount(task.y_pool), [10, 10, 10])
    # A second prepare finds it and does not prepare again.
    lines: list[str] = []
    tfds_task.prepare("tfds:gdbench_prepare_digits", echo=lines.append)
    assert lines[0].startswith("TFDS dataset 'gdbench_prepare_digits' is already prepared")


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_task, "_require_prepare_packages", lambda: None)
    formats = []

    def offline(self, *args, **kwargs):
        formats.append(self.info.file_format)
        raise ConnectionError("[Errno 101] Network is unreachable\nmore detail")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(TaskError) as err:
        tfds_task.prepare("tfds:mnist", tmp_path, echo=lambda line: None)
    assert one_line(err) == (
        f"preparing TFDS dataset 'mnist' in {tmp_path} failed (it needs network access): "
        "ConnectionError: [Errno 101] Network is unreachable"
    )
    assert [getattr(f, "value", f) for f in formats] == ["array_record"]
