"""The robustness step inside runs: ``gdbench run --robustness / --ood`` and the suites.

What the numbers mean is checked in tests/test_robustness.py; here: that a run computes the
columns on the largest size's cells only, that they are part of the run's identity, and that
the flags pick the OOD set."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import cli, results, runner, suites
from gdbench.tasks import TaskError


def run(tmp_path, *flags):
    out = tmp_path / "run"
    argv = ["run", "--tasks", "iris", "--models", "gnb_shared,logreg", "--sizes", "12,60"]
    code = cli.main([*argv, "--seeds", "2", "--out", str(out), "--no-progress", *flags])
    return code, out


def test_ood_flag_computes_robustness_columns_on_the_largest_cells(tmp_path):
    code, out = run(tmp_path, "--ood", "noise")
    assert code == 0
    df = results.load(out)
    big, small = df[df["n_train"] == 60], df[df["n_train"] == 12]
    assert (big["ood_task"] == "iris:noise").all() and (small["ood_task"] == "").all()
    for col in ("ood_auroc_msp", "acc_miss25", "acc_miss50", "acc_miss75"):
        assert big[col].between(0, 1).all() and small[col].isna().all()
    gen = big[big["model"] == "gnb_shared"]
    disc = big[big["model"] == "logreg"]
    # Uniform noise over the features' range is far from iris's clusters: log p(x) sees it.
    assert (gen["ood_auroc_logpx"] > 0.9).all() and disc["ood_auroc_logpx"].isna().all()
    assert (gen["missing_method"] == "marginalize").all()
    assert (disc["missing_method"] == "impute-mean").all()
    # Hiding more features never helps on average.
    assert (big["acc_miss25"] >= big["acc_miss75"] - 0.1).all()

    # The robustness setting is part of the run's identity: asking without it is refused.
    assert run(tmp_path, "--no-robustness")[0] == cli.EXIT_USAGE


def test_without_robustness_the_columns_stay_empty(tmp_path):
    code, out = run(tmp_path)
    assert code == 0
    df = results.load(out)
    assert (df["ood_task"] == "").all() and df["acc_miss50"].isna().all()


@pytest.mark.fast
def test_config_picks_ood_sets():
    suite = suites.get("robustness")
    config = runner.make_config(suite, tasks=["digits", "iris"], models=["gnb"])
    assert config.robustness
    # digits pairs with its lower-contrast copy by default; iris has no default OOD set.
    assert config.ood == (("digits", "digits:contrast0.3"),)
    config = runner.make_config(suite, tasks=["digits", "iris"], models=["gnb"], ood="permute")
    assert config.ood_for("iris") == "iris:permute"
    off = runner.make_config(suites.get("quick"), tasks=["digits"], models=["gnb"])
    assert not off.robustness and off.ood == ()
    assert "robustness" not in runner.identity(off, {}, {})
    with pytest.raises(TaskError, match="unknown task"):
        runner.make_config(suite, tasks=["digits"], models=["gnb"], ood="no_such_task")


def test_images_suite_pairs_the_tfds_tasks():
    config = runner.make_config(suites.get("images"), models=["gnb"])
    pairs = dict(config.ood)
    assert pairs["tfds:fashion_mnist"] == "tfds:mnist"
    assert pairs["tfds:mnist"] == "tfds:fashion_mnist"
    assert pairs["tfds:cifar10"] == "tfds:svhn_cropped"
    assert np.all([m in suites.IMAGE_MODELS for m in ("cnn", "conv_vae", "conv_flow")])


def test_a_resumed_grid_scores_only_the_grids_largest_size():
    """The runner passes the grid's largest size: a call holding only smaller cells (a resumed
    grid whose largest cells are stored) scores none of them."""
    from gdbench import engine, models, plan, tasks

    task, spec = tasks.load("iris"), models.get("gnb_shared")
    grid = plan.GridPlan.make(task, (12, 30, 60), (0,))
    assert grid.scored_size == 60
    small = engine.run_cells(
        task, spec, grid.only([(12, 0), (30, 0)]), quality=False, robustness=True,
        ood="iris:noise",
    )  # fmt: skip
    assert all(np.isnan(r["acc_miss50"]) and r["ood_task"] == "" for r in small.rows)
    both = engine.run_cells(
        task, spec, grid.only([(12, 0), (60, 0)]), quality=False, robustness=True,
        ood="iris:noise",
    )  # fmt: skip
    scored = {r["n_train"]: not np.isnan(r["acc_miss50"]) for r in both.rows}
    assert scored == {12: False, 60: True}
