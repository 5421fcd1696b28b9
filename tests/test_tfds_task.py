"""``tfds:<name>`` tasks, offline.

- The loader runs unchanged under ``tfds.testing.mock_data`` (random examples with the real
  dataset's features), as TFDS recommends for tests.
- Tiny datasets are also *prepared for real* into a temporary data directory by TFDS's own
  writer (ArrayRecord and Parquet files; a Tensor feature, and PNG images encoded with PIL,
  need no TensorFlow) and read back through ``$GDBENCH_TFDS_DIR``, so the data-directory
  handling, batched reading, image decoding and the exact values are checked without a mock.
- ``?binarize=<t>`` against thresholding done here, on mocked and on real data; colour images
  keep their (H, W, C) shape.
- Every error path: not prepared (with no network use), unknown name, bad version, missing
  split, a non-random-access file format, bad options, a dataset without labels.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import tasks  # noqa: E402
from gdbench.tasks import TaskError, tfds_task  # noqa: E402

tfds.disable_progress_bar()


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "tfds"
    d.mkdir()
    monkeypatch.setenv(tfds_task.ENV_DIR, str(d))
    return d


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


# --- the real loader under tfds.testing.mock_data -------------------------------------------


@pytest.mark.parametrize(
    "name, n, dim, image_shape",
    [("mnist", 64, 784, (28, 28)), ("cifar10", 40, 3072, (32, 32, 3))],
)
@pytest.mark.fast
def test_mocked_dataset_shapes_dtypes_labels(empty_data_dir, name, n, dim, image_shape):
    with tfds.testing.mock_data(num_examples=n):
        task = tfds_task.load(f"tfds:{name}")
        again = tfds_task.load(f"tfds:{name}")
    assert task.name == f"tfds:{name}"
    assert task.x_pool.shape == (n, dim) and task.x_test.shape == (n, dim)
    assert task.x_pool.dtype == task.x_test.dtype == np.float32
    assert task.y_pool.dtype == task.y_test.dtype == np.int32
    assert task.num_classes == 10 and len(task.class_names) == 10
    for y in (task.y_pool, task.y_test):
        assert y.min() >= 0 and y.max() < task.num_classes
    # Integer pixels are dequantized by default (as the bundled digits): x = pixel + u,
    # u ~ U[0, 1) with fixed seeds; ?dequantize=0 keeps the pixels themselves.
    with tfds.testing.mock_data(num_examples=n):
        raw = tfds_task.load(f"tfds:{name}?dequantize=0")
    x_raw = np.concatenate([raw.x_pool, raw.x_test])
    assert x_raw.min() >= 0 and x_raw.max() <= 255 and np.all(x_raw == np.round(x_raw))
    assert raw.feature_kind == "integer" and raw.transform == ""
    x = np.concatenate([task.x_pool, task.x_test])
    np.testing.assert_array_equal(np.floor(x), x_raw)
    noise = (x - x_raw).ravel()
    assert noise.min() >= 0 and noise.max() < 1 and 0.45 < noise.mean() < 0.55
    assert task.feature_kind == "real" and task.preprocess == "standardize"
    assert task.image_shape == image_shape and task.transform == "dequantize(u~U[0,1))"
    assert task.checksum == again.checksum  # mock data are deterministic, and so is loading
    assert task.version.startswith(f"{name} ") and "tensorflow-datasets" in task.version
    assert str(empty_data_dir) in task.source


def test_mocked_mnist_class_names(empty_data_dir):
    # (mock_data's max_value does not reach data_source: its pixels are always 0..254.)
    with tfds.testing.mock_data(num_examples=100):
        task = tfds_task.load("tfds:mnist")
        raw = tfds_task.load("tfds:mnist?dequantize=0")
    assert task.class_names == tuple(str(i) for i in range(10))
    assert "28x28x1 images dequantized (integer pixels + U[0,1) noise) as 784 real" in (
        task.description
    )
    assert "28x28x1 images as 784 integer features, 10 classes" in raw.description


def test_registry_loads_tfds_names(empty_data_dir):
    assert not any(n.startswith("tfds:") for n in tasks.names())
    tasks.check_name("tfds:mnist")
    try:
        with tfds.testing.mock_data(num_examples=100):
            task = tasks.load("tfds:mnist")
        assert task.x_pool.shape == (100, 784)
    finally:
        tasks.load.cache_clear()  # keep the mock's data out of later tests


# --- a dataset prepared for real ---------------------------------------------------------------


class TinyDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Three classes of 4x3 uint8 'images' whose pixels encode the example's index."""

    VERSION = tfds.core.Version("1.0.0")
    SPLITS = {"train": 30, "test": 12}
    # tfds 4.9.10 looks up the builder's source file with importlib_resources, which the
    # environment may lack; a builder defined in a test needs no checksums file anyway.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(4, 3, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=["zero", "one", "two"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {s: self._generate_examples(s, n) for s, n in self.SPLITS.items()}

    def _generate_examples(self, split, n):
        offset = 100 if split == "test" else 0
        for i in range(n):
            yield i, {"image": self.image(offset + i), "label": i % 3}

    @staticmethod
    def image(i: int) -> np.ndarray:
        return (np.arange(12, dtype=np.uint8).reshape(4, 3, 1) + i).astype(np.uint8)


class TrainOnly(TinyDigits, skip_registration=True):
    SPLITS = {"train": 9}


class BinaryDigits(TinyDigits, skip_registration=True):
    @staticmethod
    def image(i: int) -> np.ndarray:
        return ((np.arange(12).reshape(4, 3, 1) + i) % 2).astype(np.uint8)


class TinyColour(TinyDigits, skip_registration=True):
    """5x4 RGB images in a real ``tfds.features.Image`` feature, stored as PNG files' bytes."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(5, 4, 3)),
                    "label": tfds.features.ClassLabel(names=["zero", "one", "two"]),
                }
            ),
        )

    def _generate_examples(self, split, n):
        from PIL import Image  # encodes PNG without TensorFlow

        offset = 100 if split == "test" else 0
        for i in range(n):
            buffer = io.BytesIO()
            Image.fromarray(self.image(offset + i)).save(buffer, format="png")
            yield i, {"image": buffer.getvalue(), "label": i % 3}

    @staticmethod
    def image(i: int) -> np.ndarray:
        return ((np.arange(60).reshape(5, 4, 3) * 37 + 11 * i) % 256).astype(np.uint8)


def prepare(builder_cls, data_dir: Path, file_format: str = "array_record") -> None:
    builder_cls(data_dir=str(data_dir), file_format=file_format).download_and_prepare()


@pytest.mark.parametrize("file_format", ["array_record", "parquet"])
def test_prepared_dataset_is_read_exactly(tmp_path, monkeypatch, file_format):
    prepare(TinyDigits, tmp_path, file_format)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(tfds_task, "CHUNK", 7)  # batched reads that do not divide the splits
    task = tfds_task.load("tfds:tiny_digits?dequantize=0")
    assert task.class_names == ("zero", "one", "two")
    assert task.x_pool.shape == (30, 12) and task.x_test.shape == (12, 12)
    # TFDS shuffles examples when preparing: compare as sets of (pixels, label) rows.
    for x, y, split, offset in (
        (task.x_pool, task.y_pool, "train", 0),
        (task.x_test, task.y_test, "test", 100),
    ):
        n = TinyDigits.SPLITS[split]
        want = sorted((TinyDigits.image(offset + i).ravel().tolist(), i % 3) for i in range(n))
        got = sorted((row.tolist(), int(label)) for row, label in zip(x, y, strict=True))
        assert got == want
    assert task.feature_kind == "integer" and task.image_shape == (4, 3)
    assert task.version.startswith("tiny_digits 1.0.0")
    assert task.source == f"tfds:tiny_digits in {tmp_path}"
    assert tfds_task.load("tfds:tiny_digits?dequantize=0").checksum == task.checksum
    # The default dequantizes: the same pixels plus noise in [0, 1), the same for every load.
    noisy = tfds_task.load("tfds:tiny_digits")
    np.testing.assert_array_equal(np.floor(noisy.x_pool), task.x_pool)
    np.testing.assert_array_equal(noisy.y_pool, task.y_pool)
    assert noisy.feature_kind == "real" and noisy.transform == "dequantize(u~U[0,1))"
    assert noisy.checksum == tfds_task.load("tfds:tiny_digits").checksum


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "tfds:mnist?dequantize=2",
            "option 'dequantize' in task 'tfds:mnist?dequantize=2' is 0 or 1",
        ),
        ("tfds:mnist?binarize=0.5&dequantize=1", "cannot both binarize and dequantize"),
    ],
)
def test_bad_dequantize_option(name, message):
    with pytest.raises(TaskError, match=message.replace("?", r"\?")):
        tfds_task.check(name)


def test_binary_pixels_need_no_preprocessing(tmp_path, monkeypatch):
    prepare(BinaryDigits, tmp_path)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    task = tfds_task.load("tfds:binary_digits")
    assert task.feature_kind == "binary" and task.preprocess == "none"


def test_colour_png_images_keep_their_shape_and_pixels(tmp_path, monkeypatch):
    prepare(TinyColour, tmp_path)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(tfds_task, "CHUNK", 8)
    task = tfds_task.load("tfds:tiny_colour?dequantize=0")
    assert task.image_shape == (5, 4, 3) and task.dim == 60
    assert task.feature_kind == "integer" and task.preprocess == "standardize"
    assert "5x4x3 images as 60 integer features" in task.description
    for x, y, split, offset in (
        (task.x_pool, task.y_pool, "train", 0),
        (task.x_test, task.y_test, "test", 100),
    ):
        n = TinyColour.SPLITS[split]
        want = sorted((TinyColour.image(offset + i).ravel().tolist(), i % 3) for i in range(n))
        got = sorted((row.tolist(), int(label)) for row, label in zip(x, y, strict=True))
        assert got == want  # PNG is lossless: exact pixels, in (H, W, C) order
        # Reshaping a row to image_shape gives the image back.
        row = x[np.argmax(y == 1)].reshape(task.image_shape)
        assert any(np.array_equal(row, TinyColour.image(offset + i)) for i in range(n))


@pytest.mark.parametrize("threshold", [0.02, 0.25, 1.0])
def test_binarize_thresholds_pixels_over_max(tmp_path, monkeypatch, threshold):
    prepare(TinyColour, tmp_path)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    plain = tfds_task.load("tfds:tiny_colour?dequantize=0")
    task = tfds_task.load(f"tfds:tiny_colour?binarize={threshold}")
    assert task.name == f"tfds:tiny_colour?binarize={threshold}"
    # uint8 images: max is 255; a pixel is 1 exactly when pixel / 255 >= t.
    for got, raw in ((task.x_pool, plain.x_pool), (task.x_test, plain.x_test)):
        want = np.array([[p / 255 >= threshold for p in row] for row in raw.astype(int).tolist()])
        assert got.dtype == np.float32 and np.array_equal(got, want)
    np.testing.assert_array_equal(task.y_pool, plain.y_pool)
    assert task.feature_kind == "binary" and task.preprocess == "none"
    assert task.transform == f"binarize(x/255>={threshold:g})"
    assert task.preprocessing == f"binarize(x/255>={threshold:g})+none"
    assert task.image_shape == (5, 4, 3) and task.checksum != plain.checksum


def test_binarized_mnist_under_mock_data(empty_data_dir):
    with tfds.testing.mock_data(num_examples=50):
        plain = tfds_task.load("tfds:mnist?dequantize=0")
        task = tfds_task.load("tfds:mnist?binarize=0.5")
    np.testing.assert_array_equal(task.x_pool, (plain.x_pool >= 127.5).astype(np.float32))
    np.testing.assert_array_equal(task.x_test, (plain.x_test >= 127.5).astype(np.float32))
    assert 0 < task.x_pool.mean() < 1  # both values occur
    assert task.feature_kind == "binary" and task.preprocess == "none"
    assert task.transform == "binarize(x/255>=0.5)" and task.image_shape == (28, 28)
    assert "binarized at x/255 >= 0.5 as 784 binary features" in task.description


def test_tfds_binarized_mnist_has_no_labels(empty_data_dir):
    # TFDS's own binarized_mnist is not a classification task; tfds:mnist?binarize=0.5 is.
    with tfds.testing.mock_data(num_examples=10):
        with pytest.raises(TaskError) as err:
            tfds_task.load("tfds:binarized_mnist")
    assert one_line(err) == (
        "TFDS dataset 'binarized_mnist' is not an image classification dataset gdbench can "
        "read: it needs an 'image' feature and a 'label' class feature (it has: image)"
    )


@pytest.mark.parametrize(
    "name, message",
    [
        ("tfds:mnist?binarize=0", "needs a threshold t with 0 < t <= 1"),
        ("tfds:mnist?binarize=1.5", "needs a threshold t with 0 < t <= 1"),
        ("tfds:mnist?binarize=nan", "needs a threshold t with 0 < t <= 1"),
        ("tfds:mnist?binarize=half", "needs a threshold t with 0 < t <= 1"),
        ("tfds:mnist?binarize", "needs a threshold t with 0 < t <= 1"),
        ("tfds:mnist?binarize=0.5&binarize=0.4", "option 'binarize' is given twice"),
        ("tfds:mnist?threshold=0.5", "unknown option 'threshold' in task"),
        ("tfds:mnist?", "unknown option '' in task"),
        ("tfds:?binarize=0.5", "needs a TFDS dataset name without spaces"),
    ],
)
def test_bad_options_are_one_line_errors(name, message):
    with pytest.raises(TaskError) as err:
        tasks.check_name(name)
    assert message in one_line(err)


def test_options_do_not_clash_with_config_and_version():
    spec = tfds_task.parse("tfds:mnist/config:3.0.1?binarize=0.25")
    assert spec.dataset == "mnist/config:3.0.1" and spec.binarize == 0.25
    assert tfds_task.parse("tfds:cifar10").binarize is None


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(tfds_task.ENV_DIR, raising=False)
    monkeypatch.delenv(tfds_task.TFDS_ENV_DIR, raising=False)
    from tensorflow_datasets.core import constants

    assert tfds_task.data_dir() == os.path.abspath(os.path.expanduser(constants.DATA_DIR))
    monkeypatch.setenv(tfds_task.TFDS_ENV_DIR, str(tmp_path / "b"))
    assert tfds_task.data_dir() == str(tmp_path / "b")
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path / "a"))
    assert tfds_task.data_dir() == str(tmp_path / "a")


def test_tfds_data_dir_is_used_without_the_gdbench_variable(tmp_path, monkeypatch):
    prepare(TinyDigits, tmp_path)
    monkeypatch.delenv(tfds_task.ENV_DIR, raising=False)
    monkeypatch.setenv(tfds_task.TFDS_ENV_DIR, str(tmp_path))
    assert tfds_task.load("tfds:tiny_digits").pool_size == 30


# --- errors ----------------------------------------------------------------------------------


def test_not_prepared_is_one_line_and_fetches_nothing(empty_data_dir):
    with pytest.raises(TaskError) as err:
        tasks.load("tfds:mnist")
    d = str(empty_data_dir)
    pip = " ".join(tfds_task.PREPARE_REQUIREMENTS)
    assert one_line(err) == (
        f"TFDS dataset 'mnist' is not prepared in {d}; with network access run: gdbench "
        f"prepare tfds:mnist --data-dir {d} (needs pip install {pip}), or set "
        "GDBENCH_TFDS_DIR to a directory where it is prepared"
    )
    assert list(empty_data_dir.iterdir()) == []  # nothing downloaded or written
    # The command in the message prepares exactly there:
    assert "gdbench prepare tfds:mnist --data-dir" in one_line(err)


def test_not_prepared_names_the_tfds_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(tfds_task.ENV_DIR, raising=False)
    monkeypatch.setenv(tfds_task.TFDS_ENV_DIR, str(tmp_path))
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:cifar10")
    assert f"TFDS dataset 'cifar10' is not prepared in {tmp_path};" in one_line(err)


def test_unknown_dataset_suggests_a_close_name(empty_data_dir):
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:mnistt")
    assert one_line(err).startswith("unknown TFDS dataset 'mnistt' (did you mean 'tfds:mnist'?)")
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:qwertyuiop")
    assert "unknown TFDS dataset 'qwertyuiop'; valid:" in one_line(err)


def test_bad_version_config_and_syntax(empty_data_dir):
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:mnist:9.9.9")
    assert "cannot be loaded at version 9.9.9, only: 3.0.1" in one_line(err)
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:mnist/nosuchconfig")
    assert "BuilderConfig nosuchconfig not found" in one_line(err)
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:Bad!")
    assert "TFDS dataset 'Bad!' cannot be loaded" in one_line(err)
    for name in ("tfds:", "tfds: mnist", "tfds:mn ist"):
        with pytest.raises(TaskError) as err:
            tasks.check_name(name)
        assert "needs a TFDS dataset name without spaces" in one_line(err)


def test_missing_test_split(tmp_path, monkeypatch):
    prepare(TrainOnly, tmp_path)
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:train_only")
    assert one_line(err) == (
        "TFDS dataset 'train_only' has no 'test' split (it has: train); gdbench uses 'train' "
        "as the training pool and 'test' as the test set"
    )


def test_tfrecord_files_have_no_random_access(tmp_path, monkeypatch):
    # Writing TFRecord files needs TensorFlow; relabel prepared files as TFRecord instead,
    # which is what data_source then sees.
    prepare(TinyDigits, tmp_path)
    info_path = tmp_path / "tiny_digits" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    monkeypatch.setenv(tfds_task.ENV_DIR, str(tmp_path))
    with pytest.raises(TaskError) as err:
        tfds_task.load("tfds:tiny_digits")
    msg = one_line(err)
    assert f"TFDS dataset 'tiny_digits' in {tmp_path} is stored as tfrecord files" in msg
    assert "gdbench prepare tfds:tiny_digits --data-dir '<dir>'" in msg


def test_cli_reports_tfds_errors_in_one_line(empty_data_dir, tmp_path):
    # A real process: TFDS's own warnings (absl, on stderr) must not add lines.
    proc = subprocess.run(
        [sys.executable, "-m", "gdbench.cli", "run", "--tasks", "tfds:mnist", "--models", "gnb"]
        + ["--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        env={**os.environ, tfds_task.ENV_DIR: str(empty_data_dir)},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("gdbench: error: TFDS dataset 'mnist' is not prepared in ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "run").exists()


# --- imports ----------------------------------------------------------------------------------


def test_tfds_is_imported_only_when_a_tfds_task_is_loaded():
    code = (
        "import sys; from gdbench import tasks; tasks.check_name('tfds:mnist'); "
        "import gdbench.tasks.tfds_task; import gdbench.tasks.csv_task; "
        "bad = [m for m in ('tensorflow_datasets', 'tensorflow', 'gdbench.engine', "
        "'gdbench.models', 'jax') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_mocked_dataset_runs_end_to_end(empty_data_dir, tmp_path, capsys):
    from gdbench import cli, results

    out = tmp_path / "run"
    argv = ["run", "--tasks", "tfds:mnist", "--models", "gnb", "--sizes", "20,60", "--seeds", "2"]
    try:
        with tfds.testing.mock_data(num_examples=100):
            assert cli.main([*argv, "--out", str(out), "--no-progress"]) == 0
    finally:
        tasks.load.cache_clear()  # keep the mock's data out of later tests
    rows = results.load(out)
    assert len(rows) == 4 and set(rows["task"]) == {"tfds:mnist"}
    assert (rows["status"] == "ok").all()
    manifest = results.read_manifest(out)
    assert manifest["tasks"]["tfds:mnist"]["dim"] == 784
