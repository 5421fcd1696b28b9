"""Models and tasks of your own, written outside the repository: as a file spec on the command
line, as objects passed to ``gdbench.run``, as entry points; the protocol check; the source in
the cache key and the run identity; one import name (a folder with its own ``models/``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid

import gdbench
from gdbench import cli, plugins
from gdbench.models import registry as model_registry
from gdbench.tasks import registry as task_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "nearest_mean.py"


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A folder outside the repository with the example model and a task function."""
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "nearest_mean.py")
    (folder / "my_task.py").write_text(
        "import numpy as np\n\n"
        "def blobs():\n"
        '    """Two Gaussian blobs, 4 features."""\n'
        "    rng = np.random.default_rng(1)\n"
        "    y = np.repeat([0, 1], 150)\n"
        "    x = rng.normal(size=(300, 4)) + 1.5 * y[:, None]\n"
        "    return x[::2], y[::2], x[1::2], y[1::2]\n"
    )
    return folder


def _independent_accuracy(task) -> float:
    """Nearest class mean (scikit-learn's NearestCentroid) on the pool standardized as the
    engine does (population standard deviation of the training subset: here the whole pool)."""
    mean, std = task.x_pool.mean(0), task.x_pool.std(0)
    std = np.where(std > 0, std, 1.0)
    clf = NearestCentroid().fit((task.x_pool - mean) / std, task.y_pool)
    return float((clf.predict((task.x_test - mean) / std) == task.y_test).mean())


def test_file_spec_on_the_command_line(user_dir, tmp_path):
    spec = f"{user_dir / 'nearest_mean.py'}:NearestMean"
    task = f"{user_dir / 'my_task.py'}:blobs"
    out = tmp_path / "run"
    argv = ["run", "--tasks", task, "--models", f"{spec},gnb", "--sizes", "20,150"]
    assert cli.main([*argv, "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    rows = gdbench.load(out)
    mine = rows[rows.model == spec]
    assert len(mine) == 4 and (mine.status == "ok").all()
    assert set(mine.paradigm) == {"generative"}
    # At n = pool every seed fits the same subset: the independent nearest-centroid rule.
    full = mine[mine.n_train == 150]
    expected = _independent_accuracy(task_registry.load(task))
    np.testing.assert_allclose(full.accuracy, expected)
    assert np.isfinite(mine.log_lik).all()  # a density: log p(x) reported
    config = json.loads(mine.model_config.iloc[0])
    assert len(config["source"]) == 16 and config["scale"] == 1.0


def test_objects_through_the_python_api(tmp_path):
    module = plugins.load_reference(f"{EXAMPLE}:NearestMean")[0]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = np.where(x[:, 0] + 0.3 * rng.normal(size=240) > 0, "pos", "neg")
    task = gdbench.Task.from_arrays("toy", x, y)
    assert task.class_names == ("neg", "pos") and task.num_classes == 2
    rows = gdbench.run(
        tasks=[task],
        models=[module, "logreg"],
        sizes=[10, 40],
        seeds=3,
        out=tmp_path / "api",
        compile_cache=None,
    )
    assert len(rows) == 2 * 2 * 3 and (rows.status == "ok").all()
    assert set(rows.task) == {"toy"}
    report = gdbench.report(tmp_path / "api")
    assert report["index.html"].is_file()
    comparison = gdbench.compare(tmp_path / "api", tmp_path / "api")
    assert comparison.n_cells == 12 and comparison.changed.empty
    assert comparison.differences == ()  # one run against itself: the same configuration


def test_entry_point(user_dir, tmp_path, monkeypatch):
    """An installed package's entry points (groups ``gdbench.models`` and ``gdbench.tasks``),
    resolved by name and run."""
    site = tmp_path / "site"
    package = site / "myplug"
    package.mkdir(parents=True)
    shutil.copy(EXAMPLE, package / "__init__.py")
    shutil.copy(user_dir / "my_task.py", package / "tasks.py")
    dist = site / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[gdbench.models]\nnearest = myplug:NearestMean\n\n"
        "[gdbench.tasks]\nmyblobs = myplug.tasks:blobs\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert "nearest" in plugins.entry_point_names(plugins.MODEL_GROUP)
    assert "myblobs" in plugins.entry_point_names(plugins.TASK_GROUP)
    spec = model_registry.get(plugins.resolve_model("nearest?scale=2"))
    assert spec.cls.__name__ == "NearestMean" and spec.spec == "nearest?scale=2"
    assert spec.paradigm == "generative" and spec.source
    rows = gdbench.run(
        tasks=["myblobs"],
        models=["nearest"],
        sizes=[150],
        seeds=1,
        out=tmp_path / "ep",
        compile_cache=None,
    )
    assert len(rows) == 1 and rows.status.iloc[0] == "ok" and rows.task.iloc[0] == "myblobs"
    task = task_registry.load(plugins.resolve_task("myblobs"))
    assert rows.accuracy.iloc[0] == pytest.approx(_independent_accuracy(task))


def test_module_specs_from_the_python_path(user_dir, tmp_path, monkeypatch):
    """``module:Class`` and ``module:function`` specs of modules importable from ``sys.path``
    (a folder of the user's, not a file path), on the command line."""
    monkeypatch.syspath_prepend(str(user_dir))
    out = tmp_path / "mod"
    argv = ["run", "--tasks", "my_task:blobs", "--models", "nearest_mean:NearestMean"]
    assert (
        cli.main([*argv, "--sizes", "150", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    )
    rows = gdbench.load(out)
    assert len(rows) == 1 and rows.status.iloc[0] == "ok"
    assert rows.model.iloc[0] == "nearest_mean:NearestMean"
    task = task_registry.load(plugins.resolve_task(f"{user_dir / 'my_task.py'}:blobs"))
    assert rows.accuracy.iloc[0] == pytest.approx(_independent_accuracy(task))


def test_editing_the_file_changes_the_key_and_refuses_resume(user_dir, tmp_path):
    path = user_dir / "nearest_mean.py"
    spec = f"{path}:NearestMean"
    before = model_registry.get(plugins.resolve_model(spec)).config_json()
    out = tmp_path / "run"
    argv = ["run", "--tasks", "iris", "--models", spec, "--sizes", "20", "--seeds", "1"]
    assert cli.main([*argv, "--out", str(out), "--no-progress"]) == 0
    path.write_text(path.read_text() + "\n# edited\n")
    after = model_registry.get(plugins.resolve_model(spec)).config_json()
    assert before != after  # the source hash is in the config, hence in the program's key
    with pytest.raises(Exception, match="code of a model of your own changed"):
        gdbench.run(tasks=["iris"], models=[spec], sizes=[20], seeds=1, out=out)


def test_protocol_errors_name_what_is_missing(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "class NotAModel:\n"
        "    paradigm = 'generative'\n"
        "    def __init__(self, dim, num_classes, *, rngs):\n"
        "        pass\n"
        "    def fit_plan(self):\n"
        "        return ()\n"
        "def not_a_class():\n"
        "    pass\n"
    )
    argv = ["run", "--tasks", "iris", "--sizes", "20", "--seeds", "1", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--models", f"{bad}:NotAModel"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing predict_logits; log_prob; log_prior" in err
    assert cli.main([*argv, "--models", f"{bad}:not_a_class"]) == 2
    assert "is not a class" in capsys.readouterr().err
    assert cli.main([*argv, "--models", f"{bad}:Missing"]) == 2
    assert "has no 'Missing'" in capsys.readouterr().err
    assert cli.main([*argv, "--models", f"{tmp_path / 'nope.py'}:X"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_optional_abilities_are_typed_protocols_checked_at_spec_time(user_dir, tmp_path, capsys):
    from gdbench.abilities import draws_samples, marginalizes_missing, needs_image
    from gdbench.models import base

    for name in model_registry.REGISTRY:  # every built-in model implements what it has
        model_registry.check_protocol(model_registry.get(name).cls, name)
    abilities = {
        name: {
            ability
            for ability, protocol in base.ABILITIES.items()
            if base.has_ability(model_registry.get(name).cls, protocol)
        }
        for name in ("gnb", "logreg", "vae", "gan", "cnn")
    }
    assert abilities["gnb"] == {"sampling", "density", "missing features"}
    assert abilities["logreg"] == set()
    assert abilities["vae"] == {"sampling", "density"}
    assert abilities["gan"] == {"sampling"}
    assert abilities["cnn"] == {"image input"}
    assert needs_image(model_registry.get("cnn").cls)
    assert marginalizes_missing(model_registry.get("lda").cls)

    mine = user_dir / "abilities.py"
    mine.write_text(
        (user_dir / "nearest_mean.py").read_text() + "\n\nclass BadSampler(NearestMean):\n"
        "    def sample(self, key):\n"
        "        return key\n"
        "\n\nclass NoSampler(NearestMean):\n"
        "    sample = None\n"
        "\n\nclass OddImages(NearestMean):\n"
        "    needs_image = 'yes'\n"
    )
    argv = ["run", "--tasks", "iris", "--sizes", "20", "--seeds", "1", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--models", f"{mine}:BadSampler"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing sample(key, y, n) (sampling, Sampler)" in err
    assert cli.main([*argv, "--models", f"{mine}:OddImages"]) == 2
    assert "needs_image as a bool (image input; it has 'yes')" in capsys.readouterr().err
    # A generative model without a sampler is a density and a classifier, without samples.
    cls = plugins.load_reference(f"{mine}:NoSampler")[0]
    task = task_registry.load("iris")
    assert not draws_samples(cls, task)
    assert draws_samples(plugins.load_reference(f"{mine}:NearestMean")[0], task)
    out = tmp_path / "nosampler"
    assert cli.main([*argv[:-1], str(out), "--models", f"{mine}:NoSampler", "--no-progress"]) == 0
    rows = gdbench.load(out)
    assert (rows.status == "ok").all() and np.isfinite(rows.log_lik).all()
    assert rows.fd.isna().all()


def test_npz_task(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 3))
    y = (x[:, 1] > 0).astype(int)
    np.savez(tmp_path / "data.npz", x_train=x[:70], y_train=y[:70], x_test=x[70:], y_test=y[70:])
    task = task_registry.load(f"npz:{tmp_path / 'data.npz'}")
    assert task.pool_size == 70 and len(task.y_test) == 30 and task.feature_kind == "real"
    np.testing.assert_array_equal(task.y_test, y[70:])


@pytest.mark.fast
def test_from_arrays_rejects_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(gdbench.TaskError, match="single class"):
        gdbench.Task.from_arrays("t", x, np.zeros(10))
    with pytest.raises(gdbench.TaskError, match="10 rows in x_train, 9 labels"):
        gdbench.Task.from_arrays("t", x, np.arange(9) % 2)
    x[0, 0] = np.nan
    with pytest.raises(gdbench.TaskError, match="NaN"):
        gdbench.Task.from_arrays("t", x, np.arange(10) % 2)


def test_one_import_name_beside_folders_called_models_tasks_results(tmp_path):
    """Run from a folder with packages of its own called models, tasks and results (and bench,
    reports): gdbench's code is found under gdbench.*, never theirs, and theirs stays theirs."""
    for name in ("bench", "models", "tasks", "results", "reports"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"WHO = 'user {name}'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = (
        "import gdbench, gdbench.models, gdbench.tasks, gdbench.results, models\n"
        "assert models.WHO == 'user models', models\n"
        "assert gdbench.models.__name__ == 'gdbench.models'\n"
        "print(gdbench.__version__)\n"
    )
    subprocess.run([sys.executable, "-c", check], cwd=tmp_path, check=True, env=env)
    gdbench_script = Path(sys.executable).parent / "gdbench"
    cmd = (
        [str(gdbench_script)] if gdbench_script.exists() else [sys.executable, "-m", "gdbench.cli"]
    )
    run = [*cmd, "run", "--tasks", "iris", "--models", "gnb", "--sizes", "20", "--seeds", "1"]
    proc = subprocess.run(
        [*run, "--out", "out", "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_a_class_defined_in_a_function_runs_through_the_api(tmp_path):
    """A class object need not be importable by name (defined in a function, a notebook)."""
    base = plugins.load_reference(f"{EXAMPLE}:NearestMean")[0]

    class Local(base):
        """A local subclass."""

    rows = gdbench.run(
        tasks=["iris"], models=[Local], sizes=[20], seeds=1, out=tmp_path / "r", compile_cache=None
    )
    assert len(rows) == 1 and rows.status.iloc[0] == "ok" and "<locals>" in rows.model.iloc[0]
