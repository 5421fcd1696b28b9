"""``logreg``: multinomial logistic regression with an L2 penalty, fitted to its optimum.

Objective (scikit-learn's convention, so ``C`` means the same as in
``sklearn.linear_model.LogisticRegression``): ``sum_i w_i (-log p(y_i|x_i)) + ||W||^2 / (2C)``;
the intercept is not penalized. ``C=inf`` removes the penalty (plain maximum likelihood, which
does not exist on separable data: the weights then grow for every Newton step taken). Two-class
tasks use one weight vector (logit of class 1 against class 0), as scikit-learn does; more
classes use one weight vector per class (the symmetric softmax parameterization).

The solver is the engine's (``gdbench.fit.newton``): damped Newton steps, each cell until the
decrement test ``newton_rtol`` (of the objective; near the optimum twice the gap to it) holds
and one step more, at most ``newton_steps`` (100 for two classes, where a step costs
little; separable subsets at C = 1e4 take 15 to 20; 25 for more classes); ``newton_rtol=0``
takes all ``newton_steps`` in every cell. With several classes (``newton_method=auto``, the
default, or ``lbfgs``) L-BFGS (at most ``lbfgs_steps`` iterations, to its own decrement test
``lbfgs_rtol``) comes first (``gdbench.fit.resolve_method``; ``newton_method=newton``: Newton
from the start), then at most ``polish_steps`` Newton steps that certify and finish the solve.
``polish_steps`` is 10 where the model has at most ``POLISH_MAX_PARAMETERS`` parameters
(``(D + 1) K``: wine's 42) and 0 above (digits' 650, where a Newton step forms and factorizes
a 650 x 650 Hessian per cell): L-BFGS's test is then the result's, with ``lbfgs_rtol`` 3e-7
(1e-5 before Newton steps). That test is no bound (its curvature, estimated from a few pairs,
misses flat directions: the gap was 20 to 75 times the test), but on the table of
``tests/test_solver_convergence.py`` every such cell ends within 2.3e-5 (relative) of the
float64 optimum, and on ``digits_bin`` (32 seeds at n = 42, 279 and 1,258, C = 1 and 1e4) the
test metrics moved by at most 1.4e-3 nats (NLL), one test point (accuracy) and 3e-3 (ECE)
from the Newton-finished fit, under 1 % of their spread across seeds. At 1e-7 float32's floor
left some cells unmarked. A cell whose solve did not meet its test is marked in its row
(``converged`` False, and the message says so). With several classes the decrement where a
Newton step led is first bounded from the factorization that step came from
(``score_curvature_drop``: ``gdbench.models.base.CurvatureBound``); when the bound holds the
cell stops after a chord step with that factor, one Hessian fewer than testing it exactly.
``newton_rtol`` is 1e-6 for two classes, where Newton starts from zero and a step costs
little (at 1e-5 the last step, a chord step from a point far from the optimum, left
breast_cancer's log-probabilities 1e-3 from scikit-learn's converged fit), and 1e-5 for more
classes.

``solver=adam`` is for inputs too wide for Newton's ``[(D+1)K, (D+1)K]`` Hessian (images: 7,850
parameters for MNIST): minibatch AdamW in ``lax.scan`` on the mean cross-entropy, with the L2
penalty applied as AdamW's decoupled weight decay ``weight_decay`` (``C`` is then unused), for
``steps`` steps of ``batch_size`` examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Array, Gradient, Model, Newton

#: Most parameters ``(D + 1) K`` for which L-BFGS is finished by Newton steps by default
#: (``polish_steps``); above it L-BFGS's own test ends the solve.
POLISH_MAX_PARAMETERS = 256


def binary_aware_logits(scores: Array, num_classes: int) -> Array:
    """Class logits ``[B, C]`` from linear scores: ``[0, s]`` for two classes, else ``s``."""
    if num_classes == 2:
        return jnp.concatenate([jnp.zeros_like(scores), scores], axis=-1)
    return scores


def as_hyperparameter(value) -> float | Array:
    """A float hyperparameter as stored on the model: a Python float, or the traced scalar the
    engine passes inside a grid program (``Model.traced_hyperparameters``)."""
    return value if isinstance(value, jax.Array) else float(value)


def check_newton_options(name: str, C: float | Array, newton_tol: float) -> None:
    """Reject what a Newton-fitted linear model (``logreg``, ``linsvm``) cannot take: ``C <= 0``
    (a non-convex objective) and a negative ``newton_tol``. A traced ``C`` was checked when the
    spec was made (the registry builds every model once with its Python values)."""
    if (not isinstance(C, jax.Array) and not C > 0) or not newton_tol >= 0:
        raise ValueError(
            f"{name} needs C > 0 and newton_tol >= 0, got C={C}, newton_tol={newton_tol}"
        )


def _softplus(s: Array) -> Array:
    """``log(1 + exp(s))``, overflow-free, with exact first and second derivatives at every
    ``s`` (0 included; both branches are smooth and never overflow)."""
    positive = s > 0
    magnitude = jnp.where(positive, s, -s)
    return jnp.where(positive, s, 0.0) + jnp.log1p(jnp.exp(-magnitude))


class LogisticRegression(Model):
    """L2-penalized multinomial logistic regression, solved to the decrement test (see the
    module docstring: Newton, after L-BFGS with several classes)."""

    paradigm = "discriminative"
    traced_hyperparameters = ("C",)

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        C: float = 1.0,
        newton_steps: int | None = None,
        newton_tol: float = 0.0,
        newton_rtol: float | None = None,
        lbfgs_steps: int = 2000,
        lbfgs_rtol: float | None = None,
        polish_steps: int | None = None,
        newton_method: str = "auto",
        solver: str = "newton",
        steps: int = 1000,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
    ):
        del rngs
        if solver not in ("newton", "adam"):
            raise ValueError(f"logreg solver must be 'newton' or 'adam', got '{solver}'")
        self.num_classes = num_classes
        self.C = as_hyperparameter(C)
        if newton_steps is None:
            newton_steps = 100 if num_classes == 2 else 25
        self.newton_steps = int(newton_steps)
        self.newton_tol = float(newton_tol)
        if newton_rtol is None:
            newton_rtol = 1e-6 if num_classes == 2 else 1e-5
        self.newton_rtol = float(newton_rtol)
        self.lbfgs_steps = int(lbfgs_steps)
        if polish_steps is None:
            parameters = (dim + 1) * num_classes
            polish_steps = 10 if parameters <= POLISH_MAX_PARAMETERS else 0
        polish_steps = int(polish_steps)  # a spec's value arrives as text
        if polish_steps < 0:
            raise ValueError(f"logreg polish_steps must be >= 0, got {polish_steps}")
        self.polish_steps = int(polish_steps)
        if lbfgs_rtol is None:
            lbfgs_rtol = 3e-7 if self.polish_steps == 0 else 1e-5
        self.lbfgs_rtol = float(lbfgs_rtol)
        if newton_method not in ("auto", "newton", "lbfgs"):
            raise ValueError(
                f"logreg newton_method must be 'auto', 'newton' or 'lbfgs', got '{newton_method}'"
            )
        self.newton_method = newton_method
        check_newton_options("logreg", self.C, self.newton_tol)
        self.solver = solver
        self.adam = Gradient(
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=steps,
            select_on_val=False,
        )
        outputs = 1 if num_classes == 2 else num_classes
        self.w = nnx.Param(jnp.zeros((dim, outputs)))
        self.b = nnx.Param(jnp.zeros((outputs,)))

    def fit_plan(self):
        if self.solver == "adam":
            return (self.adam,)
        return (
            Newton(
                steps=self.newton_steps,
                tol=self.newton_tol,
                rtol=self.newton_rtol,
                linear_scores=("w", "b"),
                lbfgs_steps=self.lbfgs_steps,
                lbfgs_rtol=self.lbfgs_rtol,
                polish_steps=self.polish_steps,
                method=self.newton_method,
            ),
        )

    def predict_logits(self, x: Array) -> Array:
        return binary_aware_logits(x @ self.w[...] + self.b[...], self.num_classes)

    def score_loss(self, scores: Array, y: Array) -> Array:
        """Per-example negative conditional log-likelihood from linear scores, nats.

        The same value as ``-log_softmax(binary_aware_logits(scores))[y]``, written so that
        its value and its first two derivatives are cheap and exact everywhere (the Newton
        solver evaluates it at every candidate step and differentiates it twice): two
        classes ``softplus((1 - 2 y) s)`` (the same value as ``softplus(s) - y s``, without
        its cancellation: for ``y = 1`` and ``s = 15`` that difference of two numbers near 15
        kept the loss of 3e-7 to about 1e-6, in float32, and Newton's line search on
        separable subsets at C = 1e4 then saw steps that lowered the objective as rises);
        more classes ``logsumexp(s) - s_y``.
        """
        if self.num_classes == 2:
            s = scores[:, 0]
            return _softplus((1 - 2 * y.astype(s.dtype)) * s)
        # logsumexp(s) = s_m + log1p(sum_{k != m} exp(s_k - s_m)), m the top class: log1p
        # keeps the small losses of confidently right examples (1e-5 and below, where
        # log(1 + e) loses e in float32), on which the L-BFGS line search decides; the top
        # score enters as a value (picked by a mask: a select that fuses with the rest, where
        # a gather's gradient was a scatter), so autodiff gives p_k - [k = y] with the same
        # accuracy (for k = m = y: -sum / (1 + sum), not p_m - 1).
        top_class = jnp.argmax(scores, axis=-1)
        is_top = jax.nn.one_hot(top_class, self.num_classes, dtype=bool)
        top = jnp.sum(jnp.where(is_top, scores, 0.0), axis=-1, keepdims=True)
        others = jnp.where(is_top, 0.0, jnp.exp(scores - top)).sum(axis=-1)
        picked = (jax.nn.one_hot(y, self.num_classes, dtype=scores.dtype) * scores).sum(-1)
        return jnp.log1p(others) + (top[:, 0] - picked)

    def score_curvature_drop(self, delta: Array) -> Array:
        """``gdbench.models.base.CurvatureBound`` (the penalty is quadratic). Two classes: the
        loss is ``softplus(m)`` of the signed score ``m``, whose curvature ``sigma'(m)`` has a
        log-derivative ``1 - 2 sigma(m)`` in ``(-1, 1)``: it falls at most by ``exp(-|delta|)``.
        More classes: the curvature of ``logsumexp(s) - s_y`` along ``v`` is the variance of
        ``v`` under ``p = softmax(s)``; moving the scores by ``delta`` multiplies each ``p_k``
        by ``exp(delta_k) / E_p[exp(delta)]``, at least ``exp(-(max delta - min delta))``,
        and so the variance (a minimum over ``c`` of ``sum_k p_k (v_k - c)^2``) by at least
        as much."""
        if self.num_classes == 2:
            return jnp.abs(delta[:, 0])
        return jnp.max(delta, axis=-1) - jnp.min(delta, axis=-1)

    def loss(self, x: Array, y: Array) -> Array:
        """Per-example negative conditional log-likelihood, nats."""
        return self.score_loss(x @ self.w[...] + self.b[...], y)

    def penalty(self) -> Array:
        # C = inf (no penalty) gives 0: a finite sum divided by inf.
        return 0.5 * jnp.sum(self.w[...] ** 2) / self.C
