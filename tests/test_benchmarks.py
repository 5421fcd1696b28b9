"""Smoke tests of the benchmark code paths (bench/benchmarks) on tiny grids; no timing asserted.

What is checked against independent references:

- the scikit-learn loop fits exactly the cells gdbench fits (same subsets from ``gdbench.plan``,
  standardized with the same statistics as the engine's ``_standardizer``), and the two agree
  on the test accuracy of every cell: Gaussian naive Bayes exactly, logistic regression with
  C = 1e4 against scikit-learn solved to a tight tolerance;
- the accuracy-agreement summary against a hand computation;
- the analytic matmul FLOP count of the MLP against the FLOPs of the ``dot_general``
  operations in the jaxpr of a real training step;
- the baseline script runs as a process without importing JAX;
- timed rounds alternate the two sides of a ratio (and the matmul peak), and a paired ratio is
  the median of the rounds' ratios, against a hand computation;
- the PyTorch mirror of the MLP learns digits (skipped without torch, which is never a
  dependency of gdbench).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gdbench import engine, models, plan, suites, tasks
from gdbench.benchmarks import common, mlp_torch, ngjordan, scaling, sklearn_loop
from gdbench.benchmarks.__main__ import main as bench_main
from gdbench.benchmarks.grid import CompiledGrid

ROOT = Path(__file__).resolve().parent.parent


def _cells(task, pairs):
    return plan.make_cells_for(task.y_pool, task.num_classes, pairs, validation=False)


def test_sklearn_loop_standardizes_like_the_engine():
    task = tasks.load("breast_cancer")
    cells = _cells(task, [(25, 3)])
    fit = cells.w_train[0] > 0
    mean, scale = plan.standardizer(task.x_pool[fit].astype(np.float64))
    e_mean, e_scale = engine._standardizer(jnp.asarray(task.x_pool), jnp.asarray(cells.w_train[0]))
    np.testing.assert_allclose(mean, np.asarray(e_mean), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scale, np.asarray(e_scale), rtol=1e-4)
    # Independent: NumPy's population standard deviation of the 25 examples.
    np.testing.assert_allclose(scale, task.x_pool[fit].astype(np.float64).std(0), rtol=1e-12)
    # A constant feature keeps scale 1.
    x = np.ones((4, 2))
    x[:, 1] = [0.0, 1.0, 2.0, 3.0]
    _, s = plan.standardizer(x)
    assert s[0] == 1.0 and s[1] == pytest.approx(np.std([0, 1, 2, 3]))


def test_gnb_grid_and_sklearn_loop_fit_the_same_cells_and_agree_exactly():
    task = tasks.load("breast_cancer")
    pairs = [(n, s) for n in (8, 40, 200) for s in range(3)]
    grid = CompiledGrid(task, models.get("gnb"), pairs)
    cells = _cells(task, pairs)
    # Same subsets on both sides, of the asked sizes.
    np.testing.assert_array_equal(grid.cells.w_train, cells.w_train)
    assert (cells.w_train.sum(1) == [n for n, _ in pairs]).all()
    assert not cells.w_val.any()
    ours = np.asarray(grid.evaluate(grid.fit())["accuracy"])
    theirs = sklearn_loop.fit_cells(task, cells, "gnb")
    assert theirs["cells"] == len(pairs) and theirs["hit_max_iter"] == 0
    n_test = len(task.y_test)
    np.testing.assert_array_equal(
        np.round(ours * n_test), np.round(np.asarray(theirs["accuracy"]) * n_test)
    )
    summary = ngjordan.agreement(list(ours), theirs["accuracy"], n_test)
    assert summary["identical_fraction"] == 1.0 and summary["max_abs_diff"] < 1e-6


def test_logreg_grid_agrees_with_converged_sklearn():
    task = tasks.load("breast_cancer")
    pairs = [(n, s) for n in (60, 240) for s in range(2)]
    grid = CompiledGrid(task, models.get("logreg?C=10000"), pairs)
    ours = np.asarray(grid.evaluate(grid.fit())["accuracy"])
    ref = sklearn_loop.fit_cells(task, _cells(task, pairs), sklearn_loop.TIGHT)
    n_test = len(task.y_test)
    diff = np.abs(np.round(ours * n_test) - np.round(np.asarray(ref["accuracy"]) * n_test))
    assert diff.max() <= 1, diff
    assert np.mean(diff == 0) >= 0.75, diff


def test_agreement_summary_by_hand():
    n_test = 4
    ours = [1.0, 0.5, 0.25]
    theirs = [1.0, 0.75, 0.25]
    out = ngjordan.agreement(ours, theirs, n_test)
    assert out["cells"] == 3
    assert out["mean_abs_diff"] == pytest.approx(0.25 / 3)
    assert out["max_abs_diff"] == pytest.approx(0.25)
    assert out["identical_fraction"] == pytest.approx(2 / 3)
    assert out["mean_diff"] == pytest.approx(-0.25 / 3)
    with pytest.raises(ValueError, match="cell counts differ"):
        ngjordan.agreement([1.0], [1.0, 0.5], n_test)


def test_compiled_grid_reuses_programs_for_other_cells_of_the_same_count():
    task = tasks.load("breast_cancer")
    spec = models.get("gnb")
    grid = CompiledGrid(task, spec, [(30, 0), (30, 1)])
    other = grid.with_pairs([(10, 0), (50, 0)])
    assert other.fit_compiled is grid.fit_compiled
    timing, metrics = other.time(repeats=2)
    assert len(timing.fit_s) == 2 and timing.compile_s > 0
    fresh = CompiledGrid(task, spec, [(10, 0), (50, 0)])
    np.testing.assert_array_equal(
        metrics["accuracy"], np.asarray(fresh.evaluate(fresh.fit())["accuracy"])
    )
    with pytest.raises(ValueError, match="need 2 cells"):
        grid.with_pairs([(10, 0)])


def _jaxpr_dot_flops(jaxpr) -> float:
    """2 x (multiply-adds) of every dot_general in a jaxpr, nested jaxprs included."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            skip = set(rhs_contract) | set(rhs_batch)
            rhs_free = [d for i, d in enumerate(rhs) if i not in skip]
            total += 2.0 * math.prod(lhs) * math.prod(rhs_free)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += _jaxpr_dot_flops(sub)
    return total


def test_mlp_matmul_flops_match_the_jaxpr_of_a_training_step():
    hidden, dim, classes, pool = (16, 8), 5, 3, 40
    model = models.get("mlp?hidden=16-8").build(dim, classes, nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    xb = jnp.zeros((mlp_torch.BATCH, dim))
    yb = jnp.zeros((mlp_torch.BATCH,), jnp.int32)

    def batch_loss(p):
        return nnx.merge(graphdef, p).loss(xb, yb).mean()

    step = _jaxpr_dot_flops(jax.make_jaxpr(jax.grad(batch_loss))(params).jaxpr)
    x_pool = jnp.zeros((pool, dim))
    fwd = _jaxpr_dot_flops(
        jax.make_jaxpr(lambda p: nnx.merge(graphdef, p).predict_logits(x_pool))(params).jaxpr
    )
    steps = 50  # two validation checkpoints
    expected = steps * step + 2 * fwd
    assert mlp_torch.matmul_flops(hidden, dim, classes, pool, steps) == pytest.approx(expected)


def test_sklearn_script_runs_without_jax(tmp_path):
    out = tmp_path / "sk.json"
    cmd = [sys.executable, "-m", "gdbench.benchmarks.sklearn_loop", "--tasks", "breast_cancer",
           "--models", "gnb,logreg?C=10000", "--sizes", "10,30", "--seeds", "2",
           "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=120)
    data = json.loads(out.read_text())
    assert data["jax_imported"] is False
    assert data["threads"] == 1
    for model in ("gnb", "logreg?C=10000"):
        res = data["results"]["breast_cancer"][model]
        assert res["cells"] == 4 and len(res["accuracy"]) == 4
        assert all(0.5 < a <= 1.0 for a in res["accuracy"])
    bad = subprocess.run(
        [*cmd[:5], "--models", "svm", *cmd[7:]], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no scikit-learn baseline for model 'svm'" in bad.stderr


def test_cell_data_and_torch_mirror_learn_digits():
    torch = pytest.importorskip("torch")
    task = tasks.load("digits")
    cells = plan.make_cells_for(task.y_pool, task.num_classes, [(400, 0)], validation=True)
    data = mlp_torch.cell_data(task, cells, 0)
    assert len(data["y_train"]) + len(data["y_val"]) == 400 and len(data["y_val"]) > 0
    # Standardized with the train + validation statistics, as the engine does.
    both = np.concatenate([data["x_train"], data["x_val"]])
    np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-5)
    torch.set_num_threads(1)
    seconds, acc = mlp_torch.torch_fit(data, (32,), seed=0, steps=150)
    assert seconds > 0 and acc > 0.85


def test_spread_sizes_and_grid_sizes():
    sizes = scaling.spread_sizes(6, 398, 64)
    assert len(set(sizes)) == 64 and min(sizes) == 6 and max(sizes) == 398
    assert scaling.spread_sizes(6, 398, 1) == [398]
    with pytest.raises(ValueError, match="cannot pick 10 distinct sizes"):
        scaling.spread_sizes(6, 10, 10)
    grid = ngjordan.grid_sizes()
    pool = min(tasks.load(t).pool_size for t in ngjordan.TASKS)
    assert len(grid) == 10 and grid[0] == 6 and grid[-1] == pool


def test_lines_verdicts_and_formatting():
    assert common.Line("s", "m", "", "", 31.0, 30.0).verdict == "PASS"
    assert common.Line("s", "m", "", "", 29.9, 30.0).verdict == "MISS"
    assert common.Line("s", "m", "", "", math.nan, 30.0).verdict == "n/a"
    assert common.Line("s", "m", "", "", 2.0).verdict == ""
    assert common.fmt_s(2.5) == "2.50 s" and common.fmt_s(0.0123) == "12.3 ms"
    assert common.fmt_s(4.2e-5) == "42 us" and common.fmt_s(math.nan) == "n/a"
    assert common.fmt_ratio(0.62, "%") == "62%" and common.fmt_ratio(12.34) == "12.3x"
    assert common.ratio(10.0, 2.0) == 5.0 and math.isnan(common.ratio(1.0, 0.0))
    table = common.markdown_table([common.Line("a", "b", "1 s", "2 s", 2.0, 3.0)])
    assert "| a | b | 1 s | 2 s | 2.0x | ≥ 3.0x | MISS |" in table
    info = common.machine()
    assert info["cores"] >= 1 and info["cpu_model"] and "jax" in info["versions"]


def test_percentages_never_round_a_part_to_all_or_nothing():
    # 287 identical cells of 288 once read "100%" in the results table.
    assert common.fmt_percent(287 / 288) == "99.7%" and common.fmt_ratio(287 / 288, "%") == "99.7%"
    assert common.fmt_percent(1 / 288) == "0.3%" and common.fmt_percent(0.9997) == "99.97%"
    assert common.fmt_percent(1.0) == "100%" and common.fmt_percent(0.0) == "0%"
    assert common.fmt_percent(0.215, digits=1) == "21.5%" and common.fmt_percent(0.5, " ") == "50 %"


def test_rerender_writes_the_table_again_from_the_json(tmp_path):
    out = tmp_path / "latest.md"
    line = common.Line("1 s", "agreement", "", "", 287 / 288, unit="%")
    (tmp_path / "latest.json").write_text(json.dumps({"lines": [line.to_json()]}))
    stale = "| benchmark | measurement | gdbench | baseline | ratio | target | result | note |"
    out.write_text(
        f"# head\n\n{stale}\n|---|\n| 1 s | agreement |  |  | 100% |  |  |  |\n\n## rest\n"
    )
    assert bench_main(["--rerender", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 1 s | agreement |  |  | 99.7% |" in text and "100%" not in text
    assert text.startswith("# head\n\n") and text.endswith("\n\n## rest\n")


def test_interleaved_rounds_and_paired_ratio():
    calls = []

    def record(name, value):
        def measure(r):
            calls.append((r, name))
            return value * (r + 1)

        return measure

    got = common.interleaved(3, {"ours": record("ours", 1.0), "base": record("base", 4.0)})
    # Round by round, every measurement in turn (not all of one side, then the other).
    assert calls == [(0, "ours"), (0, "base"), (1, "ours"), (1, "base"), (2, "ours"), (2, "base")]
    assert got == {"ours": [1.0, 2.0, 3.0], "base": [4.0, 8.0, 12.0]}
    # The median of the rounds' ratios, by hand: ratios 10/1, 2/2, 9/3 -> median 3, where the
    # ratio of the medians would be 9 / 2 = 4.5.
    assert common.paired_ratio([10.0, 2.0, 9.0], [1.0, 2.0, 3.0]) == 3.0
    assert common.paired_ratio([1.0, 4.0], [0.0, 2.0]) == 2.0  # an undefined round is dropped
    with pytest.raises(ValueError):
        common.paired_ratio([1.0, 2.0], [1.0])


def test_mlp_rounds_alternate_gdbench_pytorch_and_the_peak(monkeypatch):
    calls = []

    class Grid:
        def __init__(self, name):
            self.name = name

        def fit(self):
            calls.append(self.name)

    def torch_fit(data, hidden, seed, steps=mlp_torch.STEPS):
        calls.append(f"torch {data}")
        return 0.5, 0.9

    monkeypatch.setattr(mlp_torch, "torch_fit", torch_fit)
    monkeypatch.setattr("gdbench.env.matmul_peak_flops", lambda: calls.append("peak") or 1e11)
    got, accuracies = mlp_torch.timed_rounds(
        Grid("gd 1"), Grid("gd 10"), ["d0", "d1"], (8,), rounds=2, peak=True
    )
    one_round = ["gd 1", "torch d0", "gd 10", "torch d0", "torch d1", "peak"]
    assert calls == one_round * 2
    assert got["torch_1"] == [0.5, 0.5] and got["peak_flops"] == [1e11, 1e11]
    assert all(s >= 0 for s in got["gdbench_1"] + got["gdbench_10"] + got["torch_10"])
    assert accuracies == [0.9, 0.9]


def test_cli_rejects_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_shared_variance_nb_pools_the_per_class_variances():
    """SharedVarianceNB (the loop's gnb_shared) against a hand computation of the pooled
    within-class variance, and against gdbench's gnb_shared on the same cells (the same test
    accuracy on every cell)."""
    task = tasks.load("breast_cancer")
    cells = _cells(task, [(n, s) for n in (12, 40, 150) for s in range(3)])
    x, y = task.x_pool.astype(np.float64), task.y_pool
    train = cells.w_train[4] > 0
    mean, scale = plan.standardizer(x[train])
    z = (x[train] - mean) / scale
    est = sklearn_loop.estimator("gnb_shared").fit(z, y[train])
    within = sum(((z[y[train] == c] - z[y[train] == c].mean(0)) ** 2).sum(0) for c in (0, 1))
    expected = within / train.sum() + 1e-3 * z.var(0).max()
    np.testing.assert_allclose(est.var_, np.stack([expected, expected]), rtol=1e-10)
    theirs = sklearn_loop.fit_cells(task, cells, "gnb_shared")
    pairs = [(int(n), int(seed)) for n, seed in zip(cells.sizes, cells.seeds, strict=True)]
    result = engine.run_cells(task, models.get("gnb_shared"), pairs, quality=False)
    ours = [r["accuracy"] for r in result.rows]
    summary = ngjordan.agreement(ours, theirs["accuracy"], len(task.y_test))
    assert summary["identical_fraction"] == 1.0


def test_converged_loop_solves_gdbench_problem_on_unstandardized_binary_pixels():
    """``digits_bin`` keeps its 0/1 pixels (``preprocess`` none): the loop must too, or its
    L2 penalty acts on other coordinates and its "converged" fit is another problem's (0 % of
    identical accuracies against gdbench's ten-class logreg when it standardized)."""
    task = tasks.load("digits_bin")
    assert task.preprocess != "standardize"
    cells = _cells(task, [(90, 0), (90, 1), (400, 0)])
    theirs = sklearn_loop.fit_cells(task, cells, "logreg-tight?C=1")
    pairs = [(int(n), int(seed)) for n, seed in zip(cells.sizes, cells.seeds, strict=True)]
    result = engine.run_cells(task, models.get("logreg"), pairs, quality=False)
    ours = [r["accuracy"] for r in result.rows]
    summary = ngjordan.agreement(ours, theirs["accuracy"], len(task.y_test))
    assert summary["identical_fraction"] == 1.0


def test_suite_loop_covers_the_suite_and_scores_with_predict_proba(tmp_path):
    """The suite's loop as a process: every task and model of ``ngjordan`` (narrowed to two
    seeds and two sizes), sizes as gdbench chooses them without --sizes, cells sampled evenly;
    its accuracies and NLLs against scikit-learn fitted here on the same cells."""
    out = tmp_path / "suite.json"
    cmd = [sys.executable, "-m", "gdbench.benchmarks.sklearn_loop", "--suite", "ngjordan",
           "--tasks", "breast_cancer,digits_bin", "--seeds", "2", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    assert data["jax_imported"] is False and data["max_iter"] == sklearn_loop.SUITE_MAX_ITER
    # The estimators' BLAS/OpenMP pools were loaded before the limit, so it holds for them.
    assert data["thread_pools"] and all(p["num_threads"] == 1 for p in data["thread_pools"])
    assert {p["user_api"] for p in data["thread_pools"]} >= {"blas"}
    suite = suites.get("ngjordan")
    for name in ("breast_cancer", "digits_bin"):
        task = tasks.load(name)
        sizes = plan.auto_sizes(task.pool_size, task.num_classes, suite.size_count, 6)
        assert data["sizes"][name] == list(sizes) and len(sizes) == suite.size_count
        assert set(data["results"][name]) == set(suite.models)
        for res in data["results"][name].values():
            assert res["cells"] == res["grid_cells"] == 2 * len(sizes) == len(res["accuracy"])
            assert res["seconds"] > 0
    # Cell 5 of breast_cancer, refitted here: (sizes[2], seed 1) in the size-major order.
    task = tasks.load("breast_cancer")
    sizes = data["sizes"]["breast_cancer"]
    cells = plan.make_cells(task.y_pool, 2, tuple(sizes), (0, 1), validation=False)
    assert ngjordan._cell_of(5, sizes, 2) == (sizes[2], 1) == (cells.sizes[5], cells.seeds[5])
    train = cells.w_train[5] > 0
    mean, scale = plan.standardizer(task.x_pool[train].astype(np.float64))
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=1000).fit(
        (task.x_pool[train] - mean) / scale, task.y_pool[train]
    )
    proba = lr.predict_proba((task.x_test - mean) / scale)
    res = data["results"]["breast_cancer"]["logreg"]
    assert res["accuracy"][5] == pytest.approx((proba.argmax(1) == task.y_test).mean())
    nll = -np.log(proba[np.arange(len(task.y_test)), task.y_test]).mean()
    assert res["nll"][5] == pytest.approx(nll, rel=1e-9)
    # --sample: evenly spread cells, first and last included.
    assert sklearn_loop.sample_index(24, 4).tolist() == [0, 8, 15, 23]
    assert sklearn_loop.sample_index(3, 10).tolist() == [0, 1, 2]


def test_suite_benchmark_end_to_end_at_a_tiny_size():
    """``run_suite`` on one task, three models, two sizes, two seeds: the loop and gdbench as
    whole processes (empty then warm compilation cache), per-grid ratios from the run
    manifest, the converged loop on sampled cells of the logistic regressions."""
    out = ngjordan.run_suite(
        seeds=2, task_names=["iris"], models=["gnb", "logreg", "lda"], sizes=[10, 20], sample=2
    )
    raw, lines = out["raw"], out["lines"]
    assert raw["sizes"] == {"iris": [10, 20]}
    assert set(raw["per_grid"]) == {"iris / gnb", "iris / logreg", "iris / lda"}
    for p in raw["per_grid"].values():
        assert p["cells"] == 4 and p["gdbench_cold_s"] > 0 and p["gdbench_warm_s"] > 0
        assert p["ratio_cold"] == pytest.approx(p["sklearn_loop_s"] / p["gdbench_cold_s"])
        assert p["gdbench_compile_s"] < p["gdbench_cold_s"]
    tight = raw["per_grid"]["iris / logreg"]["tight"]
    assert tight["sampled"] == 2 and tight["agreement"]["cells"] == 2
    assert "tight" not in raw["per_grid"]["iris / gnb"]
    whole = {line.metric.split(" (")[0]: line for line in lines}
    cold = whole["whole process, empty compile cache"]
    assert cold.ratio == pytest.approx(raw["sklearn_process_s"] / raw["gdbench_process_cold_s"])
    assert cold.target == ngjordan.SUITE_COLD_TARGET
    assert whole["whole process, warm compile cache"].target == ngjordan.SUITE_WARM_TARGET
    assert "| iris / logreg | 4 |" in out["detail"]


# --- the PyTorch MLP baseline at a tiny size, with or without PyTorch ------------------------


@pytest.mark.fast
def test_torch_mlp_baseline_trains_at_a_tiny_size(monkeypatch):
    """``mlp_torch.torch_fit`` (the PyTorch side of the MLP benchmark) on one 200-example
    digits cell, 32 hidden units, 300 steps: with PyTorch where it is installed, else with the
    NumPy stand-in of ``tests/torch_stub.py`` (its gradients checked here against finite
    differences), so the baseline's loop, checkpointing and test prediction run in every CI.
    Its test accuracy is checked against scikit-learn's logistic regression on the same
    standardized cell: the MLP must come within 0.05 of it (measured with the stand-in: 0.878
    against 0.894; a baseline that trains on wrong labels or keeps no checkpoint falls far
    below)."""
    from sklearn.linear_model import LogisticRegression

    try:
        import torch
    except ImportError:
        from tests import torch_stub

        torch = torch_stub.install(monkeypatch)
        _check_stub_gradients(torch_stub)
    task = tasks.load("digits")
    cells = plan.make_cells_for(task.y_pool, task.num_classes, [(200, 0)], validation=True)
    data = mlp_torch.cell_data(task, cells, 0)
    torch.set_num_threads(1)
    seconds, acc = mlp_torch.torch_fit(data, (32,), seed=0, steps=300)
    assert seconds > 0
    assert mlp_torch.torch_fit(data, (32,), seed=0, steps=300)[1] == acc  # seeded
    reference = LogisticRegression(max_iter=5000).fit(data["x_train"], data["y_train"])
    assert acc >= reference.score(data["x_test"], data["y_test"]) - 0.05


def _check_stub_gradients(stub) -> None:
    rng = np.random.default_rng(0)
    x = stub.Tensor(rng.normal(size=(6, 4)))
    y = stub.Tensor(rng.integers(0, 3, 6))
    stub.manual_seed(0)
    model = stub.Sequential(stub.Linear(4, 5), stub.ReLU(), stub.Linear(5, 3))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    stub.cross_entropy(model(x), y).backward()
    for p in model.parameters():
        numeric = np.zeros_like(p.data)
        for i in np.ndindex(p.data.shape):
            old = p.data[i]
            p.data[i] = old + 1e-6
            up = stub.cross_entropy(model(x), y).item()
            p.data[i] = old - 1e-6
            numeric[i] = (up - stub.cross_entropy(model(x), y).item()) / 2e-6
            p.data[i] = old
        np.testing.assert_allclose(p.grad, numeric, atol=1e-6)
