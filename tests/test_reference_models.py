"""scikit-learn reference models (sk:<Estimator>): the same subsets, metrics, store and reports
as gdbench's own models, checked against scikit-learn fitted directly on each cell's subset."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import stats as sps
from scipy.special import log_softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from statsmodels.stats.proportion import proportion_confint

from gdbench import cli, engine, models, plan, reference, reports, results, runner, suites, tasks
from gdbench.metrics import classification_metrics
from gdbench.models.registry import ModelSpecError
from gdbench.reports import figures
from gdbench.results import provenance, store
from gdbench.results.schema import COLUMNS, unpack_correct, validate

ROOT = Path(__file__).resolve().parents[1]


# --- independent reference: scikit-learn on the cell's subset, written out by hand ---------


def subset(task, n: int, seed: int) -> np.ndarray:
    """Pool indices of cell (n, seed): the first n of the seed's order (bench.plan's rule)."""
    return np.sort(plan.seed_order(task.y_pool, task.num_classes, seed)[:n])


def direct_fit(task, estimator, n: int, seed: int):
    """Fit `estimator` on the cell's subset (StandardScaler when the task standardizes);
    returns the fitted estimator and the transformed test features."""
    idx = subset(task, n, seed)
    x, y = task.x_pool[idx].astype(np.float64), task.y_pool[idx]
    x_test = task.x_test.astype(np.float64)
    if task.preprocess == "standardize":
        scaler = StandardScaler().fit(x)
        x, x_test = scaler.transform(x), scaler.transform(x_test)
    return estimator.fit(x, y), x_test


def calibrated_svc(task, n, seed):
    counts = np.bincount(task.y_pool[subset(task, n, seed)])
    folds = StratifiedKFold(min(5, counts.min()), shuffle=True, random_state=seed)
    return CalibratedClassifierCV(
        SVC(random_state=seed), method="sigmoid", cv=folds, ensemble=False
    )


# (task, spec, estimator factory (n, seed), sizes, nll from predict_log_proba (log space))
CASES = [
    (
        "breast_cancer",
        "sk:LogisticRegression?C=10",
        lambda t, n, s: LogisticRegression(C=10.0, random_state=s),
        (20, 60),
        False,
    ),
    ("wine", "sk:GaussianNB", lambda t, n, s: GaussianNB(), (12, 40), True),
    (
        "digits_bin",
        "sk:BernoulliNB?alpha=0.5",
        lambda t, n, s: BernoulliNB(alpha=0.5),
        (20, 80),
        True,
    ),
    (
        "iris",
        "sk:RandomForestClassifier?n_estimators=15",
        lambda t, n, s: RandomForestClassifier(n_estimators=15, random_state=s),
        (10, 40),
        False,
    ),
    (
        "iris",
        "sk:DecisionTreeClassifier",
        lambda t, n, s: DecisionTreeClassifier(random_state=s),
        (10, 40),
        False,
    ),
    ("breast_cancer", "sk:SVC", calibrated_svc, (30, 60), False),
]


@pytest.mark.parametrize(
    "task_name, spec_text, factory, sizes, log_space", CASES, ids=[c[1] for c in CASES]
)
def test_rows_equal_a_direct_sklearn_fit_on_the_same_subset(
    task_name, spec_text, factory, sizes, log_space
):
    task = tasks.load(task_name)
    spec = models.get(spec_text)
    pairs = [(n, s) for n in sizes for s in (0, 1)]
    result = reference.run_cells(task, spec, pairs)
    frame = validate(pd.DataFrame(result.rows))  # every schema column, valid values
    assert len(frame) == len(pairs)
    for row in result.rows:
        n, seed = row["n_train"], row["seed"]
        est, x_test = direct_fit(task, factory(task, n, seed), n, seed)
        proba = est.predict_proba(x_test)
        y = task.y_test
        if isinstance(est, CalibratedClassifierCV):  # accuracy of the most probable class
            correct = int((est.classes_[proba.argmax(1)] == y).sum())
        else:
            correct = int(round(est.score(x_test, y) * len(y)))
        if log_space:
            nll = -est.predict_log_proba(x_test)[np.arange(len(y)), y].mean()
        else:
            nll = log_loss(y, proba, labels=np.arange(task.num_classes))
        onehot = np.eye(task.num_classes)[y]
        assert row["status"] == "ok", row["message"]
        assert row["accuracy"] * len(y) == pytest.approx(correct, abs=1e-9)
        # per-example outcomes and spreads, from the direct fit
        if isinstance(est, CalibratedClassifierCV):
            right = est.classes_[proba.argmax(1)] == y
        else:
            right = est.predict(x_test) == y
        np.testing.assert_array_equal(unpack_correct(row["test_correct"], row["n_test"]), right)
        if log_space:
            per_nll = -est.predict_log_proba(x_test)[np.arange(len(y)), y]
        else:
            per_nll = -np.log(np.clip(proba[np.arange(len(y)), y], np.finfo(float).eps, 1))
        assert row["nll_sd"] == pytest.approx(per_nll.std(ddof=1), rel=1e-6, abs=1e-9)
        per_brier = ((proba - np.eye(task.num_classes)[y]) ** 2).sum(1)
        assert row["brier_sd"] == pytest.approx(per_brier.std(ddof=1), rel=1e-6, abs=1e-9)
        assert row["accuracy"] == correct / len(y)
        assert row["nll"] == pytest.approx(nll, abs=1e-6)
        assert row["brier"] == pytest.approx(((proba - onehot) ** 2).sum(1).mean(), abs=1e-9)
        assert row["paradigm"] == "reference" and row["model"] == spec.spec
        assert row["n_val"] == 0 and row["compile_s"] == 0.0 and row["fit_s"] > 0
        assert row["predict_s"] > 0 and row["grid_cells"] == len(pairs)
        assert math.isnan(row["log_lik"]) and math.isnan(row["flops"])
        assert row["preprocess"] == task.preprocessing
    assert result.timing.compile_s == 0.0 and result.samples is None
    assert result.timing.fit_s == pytest.approx(sum(r["fit_s"] for r in result.rows))
    if "predict_per_s" in COLUMNS:  # test examples per second of prediction, per grid
        rate = len(task.y_test) * len(pairs) / sum(r["predict_s"] for r in result.rows)
        assert frame["predict_per_s"].to_numpy() == pytest.approx([rate] * len(pairs))


def test_decision_tree_zero_probabilities_cost_log_loss_clipping():
    """A tree's hard 0/1 probabilities: each error costs -log(eps) = 36.04 nats, as log_loss."""
    task = tasks.load("iris")
    (row,) = reference.run_cells(task, models.get("sk:DecisionTreeClassifier"), [(10, 0)]).rows
    est, x_test = direct_fit(task, DecisionTreeClassifier(random_state=0), 10, 0)
    assert set(np.unique(est.predict_proba(x_test))) <= {0.0, 1.0}
    expected = (1 - row["accuracy"]) * -np.log(np.finfo(np.float64).eps)
    assert row["nll"] == pytest.approx(expected, rel=1e-12)


def test_jax_gaussian_nb_and_sklearn_gaussian_nb_see_the_same_subsets():
    """gnb with scikit-learn's smoothing (1e-9) and sk:GaussianNB agree cell by cell: the same
    training examples, the same standardization (float32 in JAX, float64 in scikit-learn)."""
    task = tasks.load("iris")
    pairs = [(n, s) for n in (30, 60) for s in (0, 1)]
    jax_rows = engine.run_cells(task, models.get("gnb?var_smoothing=1e-9"), pairs).rows
    sk_rows = reference.run_cells(task, models.get("sk:GaussianNB"), pairs).rows
    for a, b in zip(jax_rows, sk_rows, strict=True):
        assert (a["n_train"], a["seed"]) == (b["n_train"], b["seed"])
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-4)
        # the per-example columns of the engine's evaluate program and of the reference path:
        # the same test examples right and wrong, the same spreads over them
        assert a["n_test"] == b["n_test"] == len(task.y_test)
        ca, cb = (unpack_correct(r["test_correct"], r["n_test"]) for r in (a, b))
        np.testing.assert_array_equal(ca, cb)
        assert ca.mean() == pytest.approx(a["accuracy"], abs=1e-6)
        for k in ("nll_sd", "brier_sd", "ece_sd"):
            assert a[k] == pytest.approx(b[k], rel=1e-3), k
        assert math.isfinite(a["log_lik_sd"]) and math.isnan(b["log_lik_sd"])


@pytest.mark.fast
def test_numpy_metrics_agree_with_the_jax_metrics_and_scikit_learn():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(500, 4)).astype(np.float32)
    logits[:5] = [30.0, -30.0, 0.0, 1.0]  # near-certain predictions
    logits[5:10] = 0.0  # ties: the lower class wins in both
    y = rng.integers(0, 4, size=500)
    y[:3] = 1  # confidently wrong
    logp = log_softmax(logits.astype(np.float64), axis=1)
    mine = reference.probability_metrics(logp, y)
    theirs = {k: float(v) for k, v in classification_metrics(jnp.asarray(logits), y).items()}
    for key in ("accuracy", "nll", "brier", "ece"):
        assert mine[key] == pytest.approx(theirs[key], abs=2e-5), key
    p = np.exp(logp)
    # log_loss clips p(y|x) at eps: the same value where nothing underflows (not rows 0-2).
    rest = reference.probability_metrics(logp[10:], y[10:])["nll"]
    assert rest == pytest.approx(log_loss(y[10:], p[10:], labels=range(4)), rel=1e-9)
    # Here gdbench's definition is not clipped: p(y|x) = exp(-60) costs 60 nats, not 36.04.
    true_lp = logp[np.arange(len(y)), y]
    floor = np.log(np.finfo(np.float64).eps)
    excess = (floor - true_lp)[true_lp < floor].sum() / len(y)
    assert excess > 0.1
    assert mine["nll"] == pytest.approx(log_loss(y, p, labels=range(4)) + excess, rel=1e-9)
    assert mine["accuracy"] == pytest.approx((p.argmax(1) == y).mean(), abs=0)
    # ECE by hand: |sum over a bin of (correct - confidence)| summed over 15 bins, over N.
    conf, correct = p.max(1), (p.argmax(1) == y)
    ece = sum(
        abs((correct - conf)[(conf >= b / 15) & (conf < (b + 1) / 15)].sum()) for b in range(15)
    )
    ece += abs((correct - conf)[conf >= 1.0].sum())  # confidence 1 falls into the last bin
    assert mine["ece"] == pytest.approx(ece / len(y), abs=1e-12)


def test_standardizer_is_the_engines():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=3.0, scale=2.0, size=(60, 5)).astype(np.float32)
    x[:, 2] = 7.0  # constant: scale 1
    w = (rng.random(60) < 0.5).astype(np.float32)
    mean, scale = plan.standardizer(x[w > 0])
    e_mean, e_scale = engine._standardizer(jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_allclose(mean, np.asarray(e_mean), rtol=1e-5)
    np.testing.assert_allclose(scale, np.asarray(e_scale), rtol=1e-5)
    assert scale[2] == 1.0
    scaler = StandardScaler().fit(x[w > 0].astype(np.float64))
    np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(scale, scaler.scale_, rtol=1e-12)


# --- a failing estimator -----------------------------------------------------------------


def test_an_estimator_that_raises_fails_its_cells_and_the_grid_goes_on():
    """10 neighbours cannot be found among 6 training examples: those cells fail with
    scikit-learn's message; the cells of size 30 (after them in the grid) are computed."""
    task = tasks.load("iris")
    spec = models.get("sk:KNeighborsClassifier?n_neighbors=10")
    pairs = [(6, 0), (6, 1), (30, 0), (30, 1)]
    rows = reference.run_cells(task, spec, pairs).rows
    frame = validate(pd.DataFrame(rows))
    failed = frame[frame["n_train"] == 6]
    assert (failed["status"] == "failed").all()
    assert failed["message"].str.startswith("ValueError: Expected n_neighbors <= n_samples").all()
    assert failed[["accuracy", "nll", "fit_s"]].isna().all().all()
    for row in rows[2:]:
        assert row["status"] == "ok"
        est, x_test = direct_fit(task, KNeighborsClassifier(n_neighbors=10), 30, row["seed"])
        assert row["accuracy"] == est.score(x_test, task.y_test)
        proba = est.predict_proba(x_test)
        assert row["nll"] == pytest.approx(log_loss(task.y_test, proba, labels=range(3)), abs=1e-6)


def test_calibrated_svm_needs_two_examples_of_each_class():
    task = tasks.load("iris")
    # Seed 1's first 6 examples hold one example of some class (see the cell's subset).
    counts = np.bincount(task.y_pool[subset(task, 6, 1)], minlength=3)
    assert counts.min() == 1
    (row,) = reference.run_cells(task, models.get("sk:LinearSVC"), [(6, 1)]).rows
    assert row["status"] == "failed"
    assert "at least 2 training examples of every class" in row["message"]


# --- specs -------------------------------------------------------------------------------


def test_spec_canonical_spelling_drops_defaults_and_sorts():
    assert models.get("sk:LogisticRegression?C=1e4").spec == "sk:LogisticRegression?C=10000"
    assert models.get("sk:LogisticRegression?C=1").spec == "sk:LogisticRegression"
    spec = models.get("sk:MLPClassifier?hidden_layer_sizes=64-64&alpha=0.01&max_iter=200")
    assert spec.spec == "sk:MLPClassifier?alpha=0.01&hidden_layer_sizes=64-64"
    assert models.get("sk:DecisionTreeClassifier?max_depth=None").spec == (
        "sk:DecisionTreeClassifier"
    )
    for text in (
        "sk:LogisticRegression?C=10000",
        "sk:MLPClassifier?alpha=0.01&hidden_layer_sizes=64-64",
        "sk:RandomForestClassifier?max_depth=3&max_features=0.5&n_estimators=10",
        "sk:SVC?gamma=0.1&kernel=linear",
        "sk:LinearSVC?dual=false",
    ):
        assert models.get(text).spec == text  # canonical spellings are fixed points
    est = models.get("sk:MLPClassifier?hidden_layer_sizes=64-64").make_estimator(seed=3)
    assert est.get_params()["hidden_layer_sizes"] == (64, 64)
    assert est.get_params()["random_state"] == 3


def test_equivalent_spellings_share_cell_keys_and_config():
    task = tasks.load("iris")
    a, b, c = (
        models.get(s)
        for s in (
            "sk:LogisticRegression?C=1e4",
            "sk:LogisticRegression?C=10000.0",
            "sk:LogisticRegression",
        )
    )
    assert runner.cell_key(task, a, 30, 1) == runner.cell_key(task, b, 30, 1)
    assert runner.cell_key(task, a, 30, 1) != runner.cell_key(task, c, 30, 1)
    assert runner.cell_key(task, a, 30, 1) != runner.cell_key(task, models.get("logreg"), 30, 1)
    config = json.loads(a.config_json())
    assert config["C"] == 10000.0 and config["random_state"] == "seed"
    assert config["sklearn"] == f"sklearn.linear_model.LogisticRegression {sklearn.__version__}"
    assert config["calibration"] == "native predict_proba"
    assert "Platt" in json.loads(models.get("sk:SVC").config_json())["calibration"]
    assert json.loads(models.get("sk:KNeighborsClassifier").config_json())["random_state"] is None
    assert a.paradigm == a.cls.paradigm == "reference" and not a.cls.needs_validation


def test_spec_errors_are_one_line_with_hints():
    with pytest.raises(ModelSpecError) as err:
        models.get("sk:GausianNB")
    assert str(err.value).startswith(
        "unknown scikit-learn reference 'sk:GausianNB' (did you mean 'sk:GaussianNB'?); valid: "
    )
    assert "sk:LogisticRegression" in str(err.value)

    with pytest.raises(ModelSpecError) as err:
        models.get("sk:LogisticRegression?c=1")
    valid = [
        k
        for k, v in LogisticRegression().get_params().items()
        if k != "random_state" and v != "deprecated"
    ]
    assert str(err.value) == (
        "model 'sk:LogisticRegression' has no hyperparameter 'c' (did you mean 'C'?); "
        f"valid: {', '.join(valid)} (write sk:LogisticRegression?key=value)"
    )
    with pytest.raises(ModelSpecError, match="has no hyperparameter 'probability'"):
        models.get("sk:SVC?probability=true")  # gdbench calibrates SVC itself
    with pytest.raises(ModelSpecError, match="has no hyperparameter 'random_state'"):
        models.get("sk:RandomForestClassifier?random_state=1")  # the cell's seed

    with pytest.raises(ModelSpecError) as err:
        models.get("sk:LogisticRegression?C=big")
    assert str(err.value) == (
        "bad value 'big' for sk:LogisticRegression hyperparameter 'C' (expected float, like 1.0)"
    )
    with pytest.raises(ModelSpecError, match="bad value 'maybe'.*expected bool"):
        models.get("sk:LogisticRegression?fit_intercept=maybe")
    with pytest.raises(ModelSpecError) as err:
        models.get("sk:LogisticRegression?C=-1")
    assert str(err.value).startswith(
        "bad hyperparameters for model 'sk:LogisticRegression': The 'C' parameter"
    )
    with pytest.raises(ModelSpecError, match="'solver' parameter"):
        models.get("sk:LogisticRegression?solver=newton")


def test_cli_bad_reference_spec_is_one_line_exit_2(capsys):
    assert cli.main(["run", "--models", "sk:LogisticRegresion", "--tasks", "iris"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "(did you mean 'sk:LogisticRegression'?)" in err


def test_list_models_shows_references_without_importing_sklearn():
    code = (
        "import sys\n"
        "from gdbench import cli\n"
        "cli.main(['list', 'models'])\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    assert out[-1] == "False"
    lines = {line.split()[0]: line for line in out[1:-1]}
    for estimator in models.registry.SKLEARN:
        line = lines[f"sk:{estimator}"]
        assert line.split()[1] == "reference"
        assert "non-JAX scikit-learn reference" in line
    assert lines["gnb"].split()[1] == "generative"


def test_quick_suite_has_the_references_and_ngjordan_does_not():
    quick = suites.get("quick").models
    assert {"sk:GaussianNB", "sk:LogisticRegression"} <= set(quick)
    assert all(models.get(m).spec == m for m in quick if m.startswith("sk:"))  # canonical
    assert "scikit-learn" in suites.get("quick").doc
    assert not any(m.startswith("sk:") for m in suites.get("ngjordan").models)


# --- through the CLI: store and resume -----------------------------------------------------


def test_cli_run_stores_both_and_resumes_without_recompute(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--tasks", "iris", "--models", "gnb,sk:GaussianNB", "--sizes", "6,20"]
    argv += ["--seeds", "2", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    df = results.load(out)
    assert len(df) == 2 * 2 * 2
    assert (df["status"] == "ok").all()
    sk = df[df["model"] == "sk:GaussianNB"]
    assert (sk["paradigm"] == "reference").all() and (sk["compile_s"] == 0.0).all()
    assert sk["log_lik"].isna().all() and df.loc[df["model"] == "gnb", "log_lik"].notna().all()
    task, spec = tasks.load("iris"), models.get("sk:GaussianNB")
    for r in sk.itertuples():
        assert r.cell_key == runner.cell_key(task, spec, r.n_train, r.seed)
        est, x_test = direct_fit(task, GaussianNB(), r.n_train, r.seed)
        assert r.accuracy == est.score(x_test, task.y_test)
    manifest = results.read_manifest(out)
    (grid,) = [g for g in manifest["grids"].values() if g["model"] == "sk:GaussianNB"]
    assert grid["compile_s"] == 0.0 and grid["cells"] == 4 and grid["status"] == "ok"
    assert manifest["models"]["sk:GaussianNB"]["paradigm"] == "reference"

    before = manifest["grids"]
    assert cli.main(argv) == 0
    assert results.read_manifest(out)["grids"] == before  # nothing recomputed
    pd.testing.assert_frame_equal(results.load(out), df)


# --- reports -------------------------------------------------------------------------------

SIZES = (10, 20, 40)
SEEDS = range(4)
MODEL_OFFSET = {"logreg": 0.0, "gnb": 0.03, "sk:LogisticRegression": -0.01}
PARADIGM = {"logreg": "discriminative", "gnb": "generative", "sk:LogisticRegression": "reference"}


def accuracy_of(model: str, k: int, seed: int) -> float:
    return 0.7 + 0.05 * k + MODEL_OFFSET[model] + 0.01 * seed


def report_rows() -> pd.DataFrame:
    rows = []
    for model, paradigm in PARADIGM.items():
        for k, n in enumerate(SIZES):
            for seed in SEEDS:
                rows.append(
                    {
                        "task": "iris",
                        "model": model,
                        "paradigm": paradigm,
                        "n_train": n,
                        "n_val": 0,
                        "seed": seed,
                        "accuracy": accuracy_of(model, k, seed),
                        "nll": 0.5 - 0.05 * k,
                        "ece": 0.05,
                        "brier": 0.3,
                        "log_lik": -3.0 if paradigm == "generative" else np.nan,
                        "bits_per_dim": 3.0 / (4 * np.log(2))
                        if paradigm == "generative"
                        else np.nan,
                        "likelihood_is_bound": False if paradigm == "generative" else None,
                        "fit_s": 0.002 if paradigm == "reference" else 0.01,
                        "predict_s": 0.001,
                        "compile_s": 0.0 if paradigm == "reference" else 2.0,
                        "grid_cells": len(SIZES) * len(SEEDS),
                        "flops": np.nan,
                        "status": "ok",
                        "message": "",
                        "model_config": json.dumps({}),
                        "preprocess": "standardize",
                    }
                )
    return pd.DataFrame(rows)


def test_report_shows_reference_rows_flagged_and_outside_the_crossovers(tmp_path):
    df = report_rows()
    run = tmp_path / "run"
    store.write_manifest(
        run, {"provenance": provenance.collect({"device_kind": "cpu", "device_count": 1})}
    )
    for (task, model), grid in df.groupby(["task", "model"]):
        store.write_grid(run, grid, f"{task}__{model}")
    written = reports.build_report([run], tmp_path / "report")
    md = written["report.md"].read_text()

    note = "sk: models are scikit-learn references run on CPU outside JAX"
    assert md.count(note) == 2  # under the task's table and under the compute table
    values = np.array([accuracy_of("sk:LogisticRegression", 2, s) for s in SEEDS])
    # rows without per-example outcomes: statsmodels' Wilson interval at the seeds' effective
    # size p(1-p)/V, V = s^2/S, scaled by (z/t_{S-1})^2
    p, k = values.mean(), len(values)
    n_eff = p * (1 - p) / (values.var(ddof=1) / k)
    n_eff *= (sps.norm.ppf(0.975) / sps.t.ppf(0.975, k - 1)) ** 2
    lo, hi = proportion_confint(p * n_eff, n_eff, method="wilson")
    text = f"{p:.3f} ({lo:.3f}–{hi:.3f})"
    line = next(x for x in md.splitlines() if x.startswith("| sk:LogisticRegression | reference"))
    assert line.startswith(
        (
            f"| sk:LogisticRegression | reference | 4 | {text}",
            f"| sk:LogisticRegression | reference | 4 | **{text}**",
        )
    )
    # Compute table: compile 0 s per grid; steady state and end to end both fit + predict
    # (0.002 + 0.001 s per cell: nothing to compile), fit 0.002 s per cell.
    assert "| iris | sk:LogisticRegression | reference | 12 | 0 | 0.003 | 0.003 | 0.002 |" in md
    # The crossover analysis pairs generative with discriminative models only.
    assert "| iris | gnb vs logreg |" in md
    assert "vs sk:" not in md and "sk:LogisticRegression vs" not in md
    assert "figures/learning_curve_iris.png" in written
    assert "figures/accuracy_vs_compute.png" in written

    stored = results.load(run)
    styles = figures.model_styles(df.groupby("model")["paradigm"].first().to_dict())
    fig = figures._learning_curve_figure(stored, "iris", styles)
    ax = fig.axes[0]
    assert "sk:LogisticRegression" in ax.get_legend_handles_labels()[1]
    assert styles["sk:LogisticRegression"]["family"] == "reference"  # greys, its own family
    sk_color = styles["sk:LogisticRegression"]["color"]
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    (line,) = [ln for ln in drawn if tuple(ln.get_color()[:3]) == tuple(sk_color)]
    expected = [
        1 - np.mean([accuracy_of("sk:LogisticRegression", k, s) for s in SEEDS]) for k in range(3)
    ]
    np.testing.assert_allclose(line.get_ydata(), expected)
    looks = {(tuple(ln.get_color()[:3]), ln.get_linestyle(), ln.get_marker()) for ln in drawn}
    assert len(looks) == len(drawn) == df["model"].nunique()  # every model its own look


def test_importing_reference_code_does_not_import_sklearn():
    """scikit-learn loads when a reference model is parsed or run, not at import time."""
    code = (
        "import sys\nimport gdbench.reference, gdbench.models.registry\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "False"
