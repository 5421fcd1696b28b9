"""Every classical model against an independent reference, through one table.

Each row fits our model with ``gdbench.fit.run_plan`` (all-ones training weights, no validation
part) and a reference estimator on the *same* float arrays (a task's pool, standardized with a
``StandardScaler`` fitted on the pool when the task is standardized, raw 0/1 otherwise), then
compares on the task's test set:

- predictions agree on at least ``min_agree`` of the test points;
- ``log_softmax(predict_logits)`` matches the reference's ``predict_log_proba`` to ``logp_atol``
  nats; log-probabilities below ``LOG_FLOOR`` are clipped on both sides first (below 1e-12 a
  probability is zero for every metric, and scikit-learn's ``log(predict_proba)`` underflows to
  -inf there);
- where the reference exposes a joint ``log p(x, y)`` (naive Bayes), the log joint too;
- for binary linear models, the coefficients and the intercept.

The references are scikit-learn estimators, except ``gnb_shared``, which has none: its
reference is the NumPy implementation below.

Tolerances are per row (float32 JAX against float64 references). Closed-form models agree to
about 1e-5 nats; the tolerances carry a margin of about 5-10x over what was observed. Newton fits
of nearly separable problems (``digits_2v3``, ``C=100``) reach the same objective value as
scikit-learn to float32 resolution (relative 1e-7), but the objective is flat there, and test
points lie up to 30 standard deviations out, so their extreme log-probabilities differ by up to
1e-2 nats; fitted in float64 the same rows agree to 2e-4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import log_softmax, logsumexp
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from gdbench import models, tasks
from gdbench.fit import run_plan

#: Log-probabilities below log(1e-12) are clipped to it before comparing (see module docstring).
LOG_FLOOR = float(np.log(1e-12))


class SharedVarianceGaussianNB:
    """NumPy reference for ``gnb_shared``: Gaussian naive Bayes with pooled per-feature variances.

    ``var_d = (1/n) sum_i (x_id - mu_{y_i d})^2 + var_smoothing * max_d Var(x_d)``; class
    priors are the class frequencies.
    """

    def __init__(self, var_smoothing: float):
        self.var_smoothing = var_smoothing

    def fit(self, x: np.ndarray, y: np.ndarray) -> SharedVarianceGaussianNB:
        classes = np.unique(y)
        self.means_ = np.stack([x[y == c].mean(0) for c in classes])
        pooled = ((x - self.means_[y]) ** 2).mean(0)
        self.var_ = pooled + self.var_smoothing * x.var(0).max()
        self.log_prior_ = np.log(np.bincount(y) / len(y))
        return self

    def predict_joint_log_proba(self, x: np.ndarray) -> np.ndarray:
        sq = (x[:, None, :] - self.means_[None]) ** 2 / self.var_
        log_lik = -0.5 * (sq.sum(-1) + np.log(2.0 * np.pi * self.var_).sum())
        return log_lik + self.log_prior_

    def predict_log_proba(self, x: np.ndarray) -> np.ndarray:
        joint = self.predict_joint_log_proba(x)
        return joint - logsumexp(joint, axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_joint_log_proba(x).argmax(1)


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparison: our model spec, a reference factory, a task and tolerances.

    Attributes:
      logp_atol: nats, on clipped log-probabilities; None compares decision-function signs only
        (for the SVM, whose Platt-scaled probabilities need a validation part: see
        ``test_linsvm_platt_scaling_matches_an_independent_fit``).
      min_agree: least fraction of test points on which the predicted classes agree.
      coef_rtol: binary linear models: ``max |w - w_ref| <= coef_rtol * max |w_ref|`` (and the
        same bound on the intercept); None skips the check.
      joint_atol: nats, on the log joint ``log p(x, y)``, where the reference has one.
    """

    spec: str
    reference: Callable[[], Any]
    task: str
    logp_atol: float | None
    min_agree: float = 0.99
    coef_rtol: float | None = None
    joint_atol: float | None = None

    @property
    def id(self) -> str:
        return f"{self.spec}-{self.task}"


def _logreg(c: float) -> Callable[[], LogisticRegression]:
    return lambda: LogisticRegression(C=c, max_iter=10000, tol=1e-10)


CASES = [
    # Gaussian naive Bayes: scikit-learn's var_smoothing, both at its default and at ours.
    *[
        Case("gnb?var_smoothing=1e-9", GaussianNB, t, 3e-4, joint_atol=3e-4)
        for t in ("breast_cancer", "wine", "gauss_corr")
    ],
    *[
        Case("gnb", lambda: GaussianNB(var_smoothing=1e-3), t, 3e-4, joint_atol=3e-4)
        for t in ("breast_cancer", "wine", "gauss_corr")
    ],
    # Shared-variance naive Bayes against the NumPy reference above (log joint up to ~400 nats
    # in magnitude on breast_cancer, so its absolute tolerance is the float32 resolution there).
    *[
        Case(
            f"gnb_shared?var_smoothing={vs}",
            lambda vs=vs: SharedVarianceGaussianNB(vs),
            t,
            1e-4,
            joint_atol=2e-4,
        )
        for vs in (1e-9, 1e-3)
        for t in ("breast_cancer", "wine", "gauss_corr")
    ],
    # Bernoulli naive Bayes: raw 0/1 pixels, and standardized real features binarized at 0.
    Case("bnb", lambda: BernoulliNB(alpha=1.0, binarize=0.0), "digits_bin", 2e-4, joint_atol=2e-4),
    Case(
        "bnb", lambda: BernoulliNB(alpha=1.0, binarize=0.0), "breast_cancer", 2e-4, joint_atol=2e-4
    ),
    # LDA without shrinkage. breast_cancer's pooled covariance is nearly singular (condition
    # number 6e4 after standardization), so its float32 Cholesky costs a few 1e-4 nats.
    Case(
        "lda?shrinkage=0&var_smoothing=0",
        lambda: LinearDiscriminantAnalysis(solver="lsqr"),
        "breast_cancer",
        5e-3,
    ),
    *[
        Case(
            "lda?shrinkage=0&var_smoothing=0",
            lambda: LinearDiscriminantAnalysis(solver="lsqr"),
            t,
            3e-4,
        )
        for t in ("wine", "gauss_corr")
    ],
    # LDA with shrinkage 0.1 towards (tr S / D) I, as scikit-learn's lsqr solver.
    *[
        Case(
            "lda?shrinkage=0.1&var_smoothing=0",
            lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.1),
            t,
            1e-3,
        )
        for t in ("breast_cancer", "wine", "gauss_corr")
    ],
    # QDA (n_c > D in every class of these tasks, so scikit-learn uses the full covariance).
    *[
        Case(
            "qda?reg_param=0.1&var_smoothing=0",
            lambda: QuadraticDiscriminantAnalysis(reg_param=0.1),
            t,
            1e-3,
        )
        for t in ("wine", "gauss_quad")
    ],
    # Logistic regression (penalty ||W||^2 / (2C) in both; multinomial for more classes).
    Case("logreg", _logreg(1.0), "breast_cancer", 1e-4, coef_rtol=1e-5),
    Case("logreg", _logreg(1.0), "wine", 1e-4),
    Case("logreg", _logreg(1.0), "digits_2v3", 2e-2, coef_rtol=2e-3),
    # Ten classes, 650 parameters, finished by Newton steps: the objective is within 1.4e-8
    # (relative) of scikit-learn's float64 optimum, but float32 leaves log-probabilities of
    # about -16 (p ~ 1e-7) free to move by a few 1e-3 along the optimum's flat directions (up
    # to 3.7e-3 with the solve compiled as one program; tests/test_solver_convergence.py
    # checks the objective itself).
    Case("logreg?polish_steps=10", _logreg(1.0), "digits", 5e-3),
    # By default (L-BFGS's own test, no Newton steps: logistic.POLISH_MAX_PARAMETERS) the
    # flat directions keep more: up to 2.7e-2 on those log-probabilities of about -16.
    Case("logreg", _logreg(1.0), "digits", 5e-2),
    Case("logreg?C=100", _logreg(100.0), "breast_cancer", 1e-2, coef_rtol=1e-3),
    Case("logreg?C=100", _logreg(100.0), "wine", 5e-2),
    # Squared-hinge linear SVM; intercept_scaling=1000 makes LIBLINEAR's intercept (nearly)
    # unpenalized, as ours is.
    Case(
        "linsvm",
        lambda: LinearSVC(
            C=1.0, loss="squared_hinge", intercept_scaling=1000, tol=1e-8, max_iter=100000
        ),
        "breast_cancer",
        None,
        min_agree=0.97,
        coef_rtol=1e-3,
    ),
    # More classes: one-vs-rest in both, our Newton steps solving the classes' blocks apart
    # (``Newton.separable_outputs``).
    *[
        Case(
            "linsvm",
            lambda: LinearSVC(
                C=1.0, loss="squared_hinge", intercept_scaling=1000, tol=1e-8, max_iter=100000
            ),
            t,
            None,
            min_agree=0.97,
            coef_rtol=1e-3,
        )
        for t in ("wine", "digits")
    ],
]


def _data(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Pool and test arrays of a task (float32), standardized with the pool's statistics."""
    task = tasks.load(name)
    x, x_test = task.x_pool.astype(np.float64), task.x_test.astype(np.float64)
    if task.preprocess == "standardize":
        scaler = StandardScaler().fit(x)
        x, x_test = scaler.transform(x), scaler.transform(x_test)
    return (
        x.astype(np.float32),
        task.y_pool,
        x_test.astype(np.float32),
        task.y_test,
        task.num_classes,
    )


def _fit_ours(spec: str, x: np.ndarray, y: np.ndarray, num_classes: int):
    model = models.get(spec).build(x.shape[1], num_classes, nnx.Rngs(0))
    n = x.shape[0]
    run_plan(
        model,
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.ones(n, jnp.float32),
        jnp.zeros(n, jnp.float32),
        jax.random.key(0),
    )
    return model


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_model_matches_reference(case: Case):
    x, y, x_test, y_test, num_classes = _data(case.task)
    model = _fit_ours(case.spec, x, y, num_classes)
    reference = case.reference().fit(x.astype(np.float64), y)
    x_test64 = x_test.astype(np.float64)

    if case.logp_atol is None:
        ours = np.asarray(model.decision_function(jnp.asarray(x_test)), np.float64)
        theirs = reference.decision_function(x_test64)
        if ours.shape[1] == 1:  # two classes: one score
            agree = np.mean(np.sign(ours[:, 0]) == np.sign(theirs))
        else:  # one-vs-rest: the highest score
            agree = np.mean(ours.argmax(1) == theirs.argmax(1))
        assert agree >= case.min_agree, f"decisions agree on {agree:.4f} of test points"
    else:
        logits = np.asarray(model.predict_logits(jnp.asarray(x_test)), np.float64)
        ours = log_softmax(logits, axis=1)
        with np.errstate(divide="ignore"):
            theirs = reference.predict_log_proba(x_test64)
        agree = np.mean(ours.argmax(1) == reference.predict(x_test64))
        assert agree >= case.min_agree, f"predictions agree on {agree:.4f} of test points"
        np.testing.assert_allclose(
            np.maximum(ours, LOG_FLOOR), np.maximum(theirs, LOG_FLOOR), rtol=0, atol=case.logp_atol
        )
        if case.joint_atol is not None:
            np.testing.assert_allclose(
                logits, reference.predict_joint_log_proba(x_test64), rtol=0, atol=case.joint_atol
            )

    if case.coef_rtol is not None:
        w = np.asarray(model.w[...], np.float64)  # [D, outputs]
        b = np.asarray(model.b[...], np.float64)
        scale = np.abs(reference.coef_).max()
        np.testing.assert_allclose(w, reference.coef_.T, rtol=0, atol=case.coef_rtol * scale)
        np.testing.assert_allclose(
            b, reference.intercept_, rtol=0, atol=case.coef_rtol * max(1.0, scale)
        )


# --- linsvm's Platt scaling against an independent fit -----------------------------------------


def _platt_reference(scores: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """The Platt parameters ``(a, b_1..b_K)`` that ``models/discriminative/svm.py`` states,
    fitted by scipy (BFGS, float64) on the validation scores: they minimize
    ``sum_i -log softmax(a s_i + b)_{y_i} + ((a - 1)^2 + |b|^2) / 2``, where for two classes the
    logits are ``[0, a s_i + b]`` (``sigmoid(a s + b)``, Platt 1999) and for more one-vs-rest
    scores share the slope ``a``."""
    from scipy.optimize import minimize

    onehot = np.eye(num_classes)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        scaled = theta[0] * scores + theta[1:]
        if num_classes == 2:
            scaled = np.concatenate([np.zeros_like(scaled), scaled], axis=1)
        logp = log_softmax(scaled, axis=1)
        residual = np.exp(logp) - onehot  # d nll / d logits
        if num_classes == 2:
            residual = residual[:, 1:]
        value = -logp[np.arange(len(y)), y].sum() + 0.5 * (
            (theta[0] - 1.0) ** 2 + np.sum(theta[1:] ** 2)
        )
        grad = np.concatenate([[(residual * scores).sum()], residual.sum(0)])
        return value, grad + np.concatenate([[theta[0] - 1.0], theta[1:]])

    theta0 = np.concatenate([[1.0], np.zeros(scores.shape[1])])
    result = minimize(objective, theta0, jac=True, method="BFGS", options={"gtol": 1e-9})
    assert np.abs(result.jac).max() < 1e-6, result
    return result.x


@pytest.mark.parametrize(
    "task_name", [pytest.param("breast_cancer", marks=pytest.mark.fast), "wine"]
)
def test_linsvm_platt_scaling_matches_an_independent_fit(task_name: str):
    """The Platt stage fitted on a validation part (a random quarter of the pool, the rest
    trains the SVM) against scipy's fit of the same two (K + 1) parameters on the same SVM
    scores; then the test-set probabilities, NLL and Brier score. Tolerances: float32 Newton
    steps against float64 BFGS; the slope and intercepts differed by at most 4e-5 (3e-4 allowed),
    the probabilities, NLL and Brier score are held to 1e-3."""
    x, y, x_test, y_test, num_classes = _data(task_name)
    val = np.random.default_rng(0).random(len(y)) < 0.25
    model = models.get("linsvm").build(x.shape[1], num_classes, nnx.Rngs(0))
    run_plan(
        model,
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.asarray(~val, jnp.float32),
        jnp.asarray(val, jnp.float32),
        jax.random.key(0),
    )
    scores = np.asarray(model.decision_function(jnp.asarray(x[val])), np.float64)
    theta = _platt_reference(scores, y[val], num_classes)
    a, b = float(model.platt_a[...]), np.asarray(model.platt_b[...], np.float64)
    assert abs(a - 1.0) > 0.05  # the fit moved the slope off its prior mean: a real check
    np.testing.assert_allclose([a, *b], theta, rtol=0, atol=3e-4)

    test_scores = np.asarray(model.decision_function(jnp.asarray(x_test)), np.float64)
    ref_logits = theta[0] * test_scores + theta[1:]
    if num_classes == 2:
        ref_logits = np.concatenate([np.zeros_like(ref_logits), ref_logits], axis=1)
    ref_p = np.exp(log_softmax(ref_logits, axis=1))
    ours_p = np.exp(log_softmax(np.asarray(model.predict_logits(jnp.asarray(x_test))), axis=1))
    np.testing.assert_allclose(ours_p, ref_p, rtol=0, atol=1e-3)
    onehot = np.eye(num_classes)[y_test]
    ref_nll = -np.log(np.maximum(ref_p[np.arange(len(y_test)), y_test], 1e-12)).mean()
    ours_nll = -np.log(np.maximum(ours_p[np.arange(len(y_test)), y_test], 1e-12)).mean()
    assert ours_nll == pytest.approx(ref_nll, abs=1e-3)
    assert ((ours_p - onehot) ** 2).sum(1).mean() == pytest.approx(
        ((ref_p - onehot) ** 2).sum(1).mean(), abs=1e-3
    )
