"""Run a model's fit plan: the engine-owned loops (closed form, Newton, AdamW in ``lax.scan``,
alternating adversarial AdamW updates).

``run_plan`` fits a model in place and returns the traces its stages record (only
``Adversarial`` stages record any: see ``adversarial``). Everything here is a pure function of
arrays traced inside one jit-compiled, vmapped grid program: no Python loop runs per cell.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from gdbench.models.base import (
    Adversarial,
    ClosedForm,
    CurvatureBound,
    Gradient,
    Iterate,
    Model,
    Newton,
    has_ability,
)
from gdbench.sharding import CHUNK

#: ``run_plan``'s trace of the Newton steps stage ``i`` took is ``NEWTON_STEPS + str(i)``, and
#: that stage runs under the JAX name scope ``NEWTON_SCOPE + str(i)`` (its while loop's HLO
#: metadata carries it, which is how ``gdbench.cost.program_cost`` finds the loop). A stage
#: solved by L-BFGS first also records the L-BFGS iterations as ``NEWTON_STEPS + str(i) +
#: LBFGS``, their loop under the scope ``NEWTON_SCOPE + str(i) + LBFGS``.
NEWTON_STEPS = "newton_steps/"
LBFGS = "/lbfgs"
#: ``run_plan``'s trace of whether Newton stage ``i`` converged (``Newton.rtol``).
NEWTON_CONVERGED = "newton_converged/"
NEWTON_SCOPE = "gdbench_newton_"
#: Step lengths tried along each Newton direction; 0 keeps the objective monotone.
_STEP_LENGTHS = jnp.concatenate([2.0 ** -jnp.arange(10.0), jnp.zeros(1)])
_NEWTON_DAMPING = 1e-4
#: The damping (relative, as ``_NEWTON_DAMPING``) the linear path's Newton steps start from
#: and fall back to after a factorization that succeeded (``_linear_newton``). At 1e-4 the
#: damping exceeded the curvature that a weak penalty (C = 1e4) leaves along separating
#: directions, and 25 steps left ten-class cells up to 7e-4 above their optimum; at 1e-7
#: float32 noise along flat directions moved ten-class log-probabilities of about -10 by up
#: to 5e-3 from scikit-learn's converged fit (1e-6: within 1e-3).
_MIN_DAMPING = 1e-6


def _weighted_sum(values: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(w > 0, w * values, 0.0))


def newton(
    model: Model,
    stage: Newton,
    x: jax.Array,
    y: jax.Array,
    w: jax.Array,
    affine: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Minimise ``sum_i w_i loss_i + penalty`` over ``stage.wrt``; returns the Newton steps
    taken, whether the solve converged (``Newton.rtol``: a scalar bool) and the L-BFGS
    iterations before them (None when the solve is Newton's alone).

    ``affine``: ``(x_raw, shift, scale)`` with ``x == (x_raw - shift) / scale``, where
    ``x_raw`` is the same for every cell of the engine's vmapped chunk (the training pool):
    the L-BFGS path then forms its scores and gradients as matrix products with ``x_raw``
    that XLA runs as one matrix product for the whole chunk (``_linear_lbfgs``).

    ``Newton.method`` picks the algorithm (``resolve_method``): damped Newton steps, below, or
    L-BFGS (``_linear_lbfgs``, generalized linear models with several coupled outputs).

    The objective must be convex (the Hessian is factorized by Cholesky). Each step solves
    ``(H + lambda I) d = -g`` with ``lambda = 1e-4 (1 + tr(H) / P)`` and moves to the best of ten
    halvings of ``d`` (or stays): a fixed-cost line search that batches well under ``vmap``.
    The relative damping keeps the factorization stable in float32 when H is singular (e.g.
    along the unpenalized softmax intercepts' common shift); it changes the steps, not the
    minimiser, where g = 0.

    Generalized linear models (``stage.linear_scores``) take a structured path with the same
    steps: gradient, exact Hessian and line search are formed from the linear scores
    (``_linear_newton``), never by autodiff through the data.
    """
    graphdef, params, rest = nnx.split(model, stage.wrt, ...)
    flat0, unravel = ravel_pytree(params)
    if stage.linear_scores is not None:
        layout = _linear_layout(graphdef, unravel, rest, flat0, stage.linear_scores)
        if layout is not None:
            args = (graphdef, unravel, rest, stage)
            if resolve_method(stage, layout[1]) == "lbfgs":

                def solve(x, y, w, affine, shared_rows=True):
                    # Its own scope: ``gdbench.cost`` counts this loop by the L-BFGS iterations.
                    with jax.named_scope(LBFGS[1:]):
                        start, iterations, converged = _linear_lbfgs(
                            *args, flat0, layout, x, y, w, affine, shared_rows
                        )
                    if stage.polish_steps == 0:  # L-BFGS's own test is the result's
                        return start, jnp.int32(0), converged, iterations
                    polished = _linear_newton(*args, start, layout, x, y, w, polish=True)
                    return (*polished, iterations)

                flat, taken, converged, iterations = _on_row_bucket(solve, x, y, w, affine)
                nnx.update(model, unravel(flat))
                return taken, converged, iterations
            flat, taken, converged = _linear_newton(*args, flat0, layout, x, y, w, affine=affine)
            nnx.update(model, unravel(flat))
            return taken, converged, None

    def objective(flat):
        m = nnx.merge(graphdef, unravel(flat), rest)
        value = _weighted_sum(getattr(m, stage.loss)(x, y), w)
        if stage.penalty is not None:
            value = value + getattr(m, stage.penalty)()
        return value

    eye = jnp.eye(flat0.shape[0], dtype=flat0.dtype)
    hessian = jax.hessian(objective)

    def step(flat):
        g = jax.grad(objective)(flat)
        h = hessian(flat)
        return _damped_step(flat, g, h, eye, jax.vmap(objective))

    flat, taken = _iterate_newton(step, flat0, stage)
    nnx.update(model, unravel(flat))
    g = jax.grad(objective)(flat)
    direction = _newton_direction(g, hessian(flat), eye)
    return taken, _decrement_converged(objective(flat), g, direction, stage.rtol), None


def _change_along(score_loss, penalty, y, w, vec, scores, direction, moved):
    """``t -> `` the change of ``sum_i w_i l(s_i, y_i) + penalty`` from ``(vec, scores)`` to
    ``(vec + t direction, scores + t moved)``, for the line searches of ``_linear_newton`` and
    ``_linear_lbfgs``. It is summed from each example's change, not taken as the difference of
    two totals: near the optimum a step changes the objective by less than float32's rounding
    of the whole sum (two-class ``breast_cancer`` at C = 1 then ended 3.4e-4 from
    scikit-learn's coefficients instead of 1.5e-6, and L-BFGS stalled)."""
    base, base_penalty = score_loss(scores, y), penalty(vec)

    def change(t):
        data = _weighted_sum(score_loss(scores + t * moved, y) - base, w)
        return data + (penalty(vec + t * direction) - base_penalty)

    return change


def _decrement_converged(value, g, direction, rtol: float) -> jax.Array:
    """Whether the decrement ``-g . d`` of the (quasi-)Newton direction ``d`` at the final
    parameters is at most ``rtol`` times ``|value|`` (or the gradient is zero): the
    objective's predicted further decrease (twice the quadratic model's), relative to it."""
    decrement = -jnp.vdot(g, direction)
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(g))
    return finite & ((decrement <= rtol * jnp.abs(value)) | jnp.all(g == 0))


def _damping(trace, size: int):
    """``lambda = 1e-4 (1 + tr(H) / P)`` of a ``P x P`` Hessian with trace ``trace``."""
    return _NEWTON_DAMPING * (1.0 + trace / size)


def _trace(h):
    """``jnp.trace(h)`` of a square matrix read as a strided slice of its diagonal: vmapped over
    cells, ``jnp.trace`` masked the whole ``[cells, P, P]`` batch (one pass over it, as costly
    as forming a 650 x 650 Hessian's layout), where this reads ``P`` entries per cell."""
    size = h.shape[-1]
    return jnp.sum(h.reshape(-1)[:: size + 1])


def _factorized(h, eye, damping):
    """``v -> (H + damping I)^{-1} v`` from one Cholesky factorization (NaN where it failed in
    float32). Only the lower triangle of the symmetric ``H`` is read: no symmetrizing pass
    over the batch."""
    factor = jax.lax.linalg.cholesky(h + damping * eye, symmetrize_input=False)
    return lambda v: jax.scipy.linalg.cho_solve((factor, True), v)


def _newton_direction(g, h, eye, damping=None, finite_only=True):
    """``-(H + lambda I)^{-1} g`` with ``lambda = _damping(tr H, P)`` unless ``damping`` is
    given (a block of a larger Hessian); non-finite -> 0 (``finite_only``, else left for the
    caller to test)."""
    if damping is None:
        damping = _damping(_trace(h), h.shape[0])
    direction = -_factorized(h, eye, damping)(g)
    if not finite_only:
        return direction
    return jnp.where(jnp.isfinite(direction), direction, 0.0)


def _damped_step(flat, g, h, eye, objectives):
    """The best of the ``_STEP_LENGTHS`` multiples of the damped Newton direction.

    ``objectives(candidates [S, P]) -> [S]`` evaluates the objective at each candidate."""
    direction = _newton_direction(g, h, eye)
    candidates = flat[None, :] + _STEP_LENGTHS[:, None] * direction[None, :]
    values = objectives(candidates)
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    return candidates[jnp.argmin(values)]


def _iterate_newton(step, init, stage: Newton) -> tuple[Any, jax.Array]:
    """Apply the Newton ``step`` (parameters -> parameters) ``stage.steps`` times, or with
    ``stage.tol > 0`` stop after a step that moved no parameter by more than ``stage.tol``
    times ``1 + max |parameter|`` (see ``Newton.tol``). Returns the parameters and the
    number of steps taken.

    Under the engine's ``vmap`` each cell stops at its own convergence (``while_loop`` with a
    per-cell condition keeps a stopped cell's value), so a cell's result does not depend on
    the other cells of its chunk; the chunk runs until its slowest cell stops. XLA cannot know
    such a loop's trip count: ``run_plan`` names it (``NEWTON_SCOPE``) and reports the steps
    taken, by which ``gdbench.cost.program_cost`` counts its FLOPs."""
    if stage.tol <= 0:
        final = jax.lax.scan(lambda x, _: (step(x), None), init, None, length=stage.steps)[0]
        return final, jnp.asarray(stage.steps, jnp.int32)

    def running(carry):
        count, _, done = carry
        return (count < stage.steps) & ~done

    def advance(carry):
        count, x, _ = carry
        moved = step(x)
        change = jnp.max(jnp.abs(moved - x)) / (1.0 + jnp.max(jnp.abs(x)))
        return count + 1, moved, change <= stage.tol

    taken, final, _ = jax.lax.while_loop(running, advance, (jnp.int32(0), init, False))
    return final, taken


def _linear_layout(graphdef, unravel, rest, flat0, names):
    """Static positions in the flattened ``wrt`` state of ``[W; b]`` (row-major), or None.

    Computed at trace time from the state's structure (no data involved): ``index[j]`` is the
    flat position of entry ``j`` of ``[W; b].reshape(-1)``. None when ``wrt`` holds variables
    other than ``W`` and ``b`` (the generic path then applies).
    """
    weight_name, bias_name = names
    positions = np.arange(flat0.shape[0], dtype=np.float64)
    with jax.ensure_compile_time_eval():
        m = nnx.merge(graphdef, unravel(jnp.asarray(positions, flat0.dtype)), rest)
        weight = np.asarray(getattr(m, weight_name)[...])
        bias = np.asarray(getattr(m, bias_name)[...])
    if weight.ndim != 2 or bias.shape != weight.shape[1:]:
        return None
    index = np.concatenate([weight, bias[None, :]], axis=0).reshape(-1).astype(np.int64)
    if sorted(index.tolist()) != list(range(flat0.shape[0])):
        return None
    return index, weight.shape


def _linear_newton(
    graphdef, unravel, rest, stage: Newton, flat0, layout, x, y, w, polish=False, affine=None
):
    """Damped Newton for ``sum_i w_i l(x_i W + b, y_i) + penalty``, in ``[W; b]`` order.

    ``polish``: start from ``flat0`` (an L-BFGS solution) and take Newton steps until the
    decrement test holds (``_decrement_converged`` with ``stage.rtol``, tested on the exact
    Newton direction at every iterate, the final one included), at most
    ``stage.polish_steps``: each cell stops apart, and the test certifies the result (near
    the optimum the Newton decrement is twice the gap to it). Otherwise ``stage.steps`` steps
    (``_iterate_newton``), tested once at the end.

    The same iteration as the generic path (same damping, same candidate step lengths, same
    choice among them), with its pieces formed from the structure: with ``u_i = [x_i, 1]``,
    scores ``s_i = u_i theta`` (``theta = [W; b]``, ``[D+1, K]``) and ``A_i = d^2 l / ds^2``,

    - gradient ``U^T (w * dl/ds) + grad penalty``;
    - Hessian ``sum_i w_i (u_i u_i^T) kron A_i + hess penalty`` (``_kron_hessian``): matrix
      products over the distinct entries of the symmetric factors, not an ``[N, (D+1)^2 K^2]``
      outer product;
    - line search on scores ``s + t U d``: one matrix-vector product for every candidate.
    """
    index, (dim, k) = layout
    inverse = np.argsort(index)  # flat position -> entry of theta
    pool_hessian = None
    if k == 1:
        # The subset's examples first (stable order), for ``_subset_hessian``. Not for several
        # outputs: there the rows stay the pool's, which the cells of a chunk share when the
        # task is not standardized per cell (``digits_bin``), and vmap then forms the chunk's
        # Hessians as one matrix product (0.43 s for 64 ten-class cells on 1,258 rows, 2-core
        # CPU, against 1.0 s for 64 products on per-cell sorted rows).
        order = jnp.argsort(w <= 0, stable=True)
        pool_hessian = _pool_pairs_hessian(x, affine, order)
        x, y, w = x[order], y[order], w[order]
    u = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    # Examples along the last axis for the products that contract over them: XLA's CPU
    # batched matmuls (these are batched over cells by vmap) run several times faster in this
    # layout than when contracting over the leading axis of ``u``.
    ut = u.T
    active = w > 0
    # One output: the sums over examples (gradient, Hessian, line search) on the subset's
    # rows only (``_first_rows``; the scores stay the pool's, one small product).
    if k == 1:
        on_rows = _first_rows(active)
        data_hessian = _subset_hessian(u, on_rows, pool_hessian)
    else:
        on_rows = lambda fn, *arrays: fn(*arrays)  # noqa: E731
        data_hessian = lambda c: _kron_hessian(u, ut, c)  # noqa: E731
    separable = stage.separable_outputs and k > 1

    def to_flat(theta):
        return theta.reshape(-1)[inverse]

    def model_at(theta):
        return nnx.merge(graphdef, unravel(to_flat(theta)), rest)

    template = model_at(flat0[index].reshape(dim + 1, k))
    score_loss = template.score_loss

    def penalty(theta):
        if stage.penalty is None:
            return jnp.zeros((), theta.dtype)
        return getattr(model_at(theta.reshape(dim + 1, k)), stage.penalty)()

    def data_loss(scores, y=y, w=w):
        return _weighted_sum(score_loss(scores, y), w)

    def single_loss(s, t):
        return score_loss(s[None], t[None])[0]

    eye = jnp.eye((dim + 1) * k, dtype=flat0.dtype)

    def gradient_at(vec, scores):
        def data_gradient(u_r, y_r, w_r, s_r):
            g_scores = jax.grad(data_loss)(s_r, y_r, w_r)  # zero outside the subset
            return (u_r.T @ g_scores).reshape(-1)

        return on_rows(data_gradient, u, y, w, scores) + jax.grad(penalty)(vec)

    def factor_at(theta, relative=_NEWTON_DAMPING):
        """``(vec, scores, g, solve)``: ``solve(v) = (H + lambda I)^{-1} v`` at ``theta``."""
        vec = theta.reshape(-1)
        scores = u @ theta
        g = gradient_at(vec, scores)
        curv = jax.vmap(jax.hessian(single_loss))(scores, y)  # [N, K, K]
        curv = jnp.where(active[:, None, None], w[:, None, None] * curv, 0.0)
        h = data_hessian(curv) + jax.hessian(penalty)(vec)
        damping = relative * (1.0 + _trace(h) / h.shape[0])
        return vec, scores, g, _factorized(h, eye, damping)

    def direction_at(theta, relative=_NEWTON_DAMPING):
        if separable:
            vec = theta.reshape(-1)
            scores = u @ theta
            g = gradient_at(vec, scores)
            curv = jax.vmap(jax.hessian(single_loss))(scores, y)
            curv = jnp.where(active[:, None, None], w[:, None, None] * curv, 0.0)
            return vec, scores, g, _separable_direction(g, u, ut, curv, jax.hessian(penalty)(vec))
        vec, scores, g, solve = factor_at(theta, relative)
        return vec, scores, g, -solve(g)

    def line_search(vec, scores, direction):
        """The best of ``_STEP_LENGTHS`` along ``direction``: ``(vec, scores)`` there."""
        moved = u @ direction.reshape(dim + 1, k)  # how the scores move per unit step

        def candidates(y_r, w_r, s_r, m_r):
            value = _change_along(score_loss, penalty, y_r, w_r, vec, s_r, direction, m_r)
            return jax.vmap(value)(_STEP_LENGTHS.astype(vec.dtype))

        values = on_rows(candidates, y, w, scores, moved)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        best = _STEP_LENGTHS.astype(vec.dtype)[jnp.argmin(values)]
        return vec + best * direction, scores + best * moved

    def line_step(vec, scores, direction):
        return line_search(vec, scores, direction)[0].reshape(dim + 1, k)

    def step(theta):
        vec, scores, _, direction = direction_at(theta)
        return line_step(vec, scores, direction)

    # The decrement where a step led, bounded from the factorization the step came from
    # (``CurvatureBound``), and the chord step there with the same factor: with several
    # outputs, where a factorization is the step's dearest part. With one output (at most 65
    # parameters here) the bound's second line search and gradient cost more than the
    # factorization they save: two-class ``logreg?C=10000``, 1,000 cells of 10 sizes, fit
    # 1.35 -> 1.05 s (``breast_cancer``) and 1.6 -> 1.23 s (``digits_0v1``), one more step per
    # cell, and about 0.4 s less XLA compile.
    bounded = k > 1 and has_ability(template, CurvatureBound)

    theta0 = flat0[index].reshape(dim + 1, k)
    if polish or (stage.tol <= 0 and stage.rtol > 0 and not separable):
        limit = stage.polish_steps if polish else stage.steps

        def running(carry):
            return ~carry["done"] & ~carry["last"]

        def advance(carry):
            count, theta, relative = carry["count"], carry["theta"], carry["relative"]
            vec, scores, g, solve = factor_at(theta, relative)
            direction = -solve(g)
            ok = jnp.all(jnp.isfinite(direction))
            direction = jnp.where(ok, direction, 0.0)
            done = ok & _decrement_converged(
                data_loss(scores) + penalty(vec), g, direction, stage.rtol
            )
            last = count >= limit  # tested, not moved: the result's own test
            # A converged cell still takes the step (the line search never raises the
            # objective): near the optimum Newton's step squares the error, so the
            # parameters, not only the objective, settle (probabilities to about 1e-5).
            stay = last | ~ok
            if bounded:
                # Where the step led: its decrement with the Hessian there at least
                # exp(-drop) times this one (``CurvatureBound``), so at most exp(drop) times
                # the one this factor gives. When that certifies it, the cell stops there
                # after one more step, the chord step with this factor (no Hessian formed
                # or factorized at the new point: the Newton step of the old rule, at the
                # cost of two triangular solves and a line search).
                vec1, scores1 = line_search(vec, scores, direction)
                g1 = gradient_at(vec1, scores1)
                chord = -solve(g1)
                drop = jnp.max(
                    jnp.where(active, template.score_curvature_drop(scores1 - scores), 0.0)
                )
                value1 = data_loss(scores1) + penalty(vec1)
                certified = (
                    ok
                    & ~last
                    & jnp.all(jnp.isfinite(chord))
                    & jnp.isfinite(drop)
                    & _decrement_converged(value1, g1, jnp.exp(drop) * chord, stage.rtol)
                )
                chord = jnp.where(certified, chord, 0.0)
                moved = jnp.where(
                    certified,
                    line_step(vec1, scores1, chord),
                    vec1.reshape(dim + 1, k),
                )
                done = done | certified
            else:
                moved = line_step(vec, scores, direction)
            # Levenberg-Marquardt: a failed factorization (float32 rounding made H + lambda I
            # indefinite) retries with 100x the damping; a successful one lowers it again.
            relative = jnp.where(
                ok, jnp.maximum(relative / 10, _MIN_DAMPING), jnp.minimum(relative * 100, 1.0)
            )
            return {
                "count": count + jnp.where(last, 0, 1),  # failed factorizations count
                "theta": jnp.where(stay, theta, moved),
                "relative": relative,
                "done": done,
                "last": last,
            }

        init = {
            "count": jnp.int32(0),
            "theta": theta0,
            "relative": jnp.asarray(_MIN_DAMPING, theta0.dtype),
            "done": jnp.asarray(False),
            "last": jnp.asarray(False),
        }
        final = jax.lax.while_loop(running, advance, init)
        return to_flat(final["theta"]), final["count"], final["done"]

    theta, taken = _iterate_newton(step, theta0, stage)
    vec, scores, g, direction = direction_at(theta)
    value = data_loss(scores) + penalty(vec)
    rtol = stage.rtol if stage.rtol > 0 else Newton.rtol  # rtol = 0: fixed steps, same test
    return to_flat(theta), taken, _decrement_converged(value, g, direction, rtol)


def resolve_method(stage: Newton, shape: tuple[int, int]) -> str:
    """``"newton"`` or ``"lbfgs"`` for a linear stage whose ``[W; b]`` is ``[D+1, K]`` with
    ``shape = (D, K)``: ``stage.method``; ``"auto"`` is L-BFGS when the outputs are coupled
    (``K > 1``, not ``separable_outputs``), dense Newton otherwise or when the stage asks for
    Newton's movement stop (``tol > 0``) or fixed steps (``rtol = 0``).

    ``"lbfgs"`` is L-BFGS (``_linear_lbfgs``, to ``stage.lbfgs_rtol`` on its own decrement)
    followed by at most ``stage.polish_steps`` Newton steps until the exact decrement test
    holds (``_linear_newton`` with ``polish``; none with 0, as ``logreg`` above 256
    parameters, whose L-BFGS test at 3e-7 left every cell of the test table within 2.3e-5 of
    the optimum): L-BFGS's own decrement is no certificate (its curvature, estimated from a few
    pairs, misses the flat, nearly separating directions of a weak penalty). With ten classes a
    Newton step forms and factorizes a 650 x 650 Hessian per cell; L-BFGS followed by one
    (``CurvatureBound``) to three such steps costs less than Newton's 5 to 20 from the start:
    one chunk of 64 cells on each of ``digits_bin``'s 12 ``ngjordan`` sizes (2-core CPU,
    compiled) took 38 s against Newton's 95 s at C = 1e4, and 27 s against 40 s at C = 1
    (before ``CurvatureBound``), every cell converged
    (``tests/test_solver_convergence.py`` checks both against the float64 optimum). One output
    (or separable outputs) keeps Newton, whose Hessian is then small."""
    if stage.method != "auto" and not (stage.method == "lbfgs" and stage.separable_outputs):
        return stage.method
    # A movement stop (``tol``) or fixed steps (``rtol = 0``) are Newton's own options.
    coupled = shape[1] > 1 and not stage.separable_outputs
    return "lbfgs" if coupled and stage.tol <= 0 and stage.rtol > 0 else "newton"


#: The shortest step length L-BFGS's line search tries along a direction before it gives up
#: (then it restarts from steepest descent, or stops where it has no correction pairs).
_LBFGS_MIN_STEP = 2.0**-12


def _pool_scaling(x):
    """Per-feature mean and scale (1 where constant) of the rows of ``x``."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, jnp.where(std > 1e-6 * (1.0 + jnp.abs(mean)), std, 1.0)


def _linear_lbfgs(
    graphdef, unravel, rest, stage: Newton, flat0, layout, x, y, w, affine=None, shared_rows=True
):
    """L-BFGS for ``sum_i w_i l(x_i W + b, y_i) + penalty`` in ``[W; b]`` order.

    Scores and gradients are matrix products with the data, written so that under the engine's
    ``vmap`` they run as one product for the whole chunk of cells: with ``affine = (x_raw,
    shift, scale)`` (``x == (x_raw - shift) / scale``, ``x_raw`` shared by the chunk), the rows
    are ``x_raw`` rescaled once by its own mean and scale (``xs``: shared, and of unit scale,
    so that folding the cell's standardization into the weights loses no precision), and a
    cell's scores are ``xs @ (a W) + (c W + b)`` with its ``a = s0 / scale``, ``c = (m0 -
    shift) / scale``. On a 2-core CPU such a product for 64 cells ran about 15 times faster
    than 64 per-cell products (1,258 x 65 rows by 10 outputs).

    Each iteration: the two-loop recursion (``stage.memory`` pairs; Nocedal & Wright 2006,
    Algorithm 7.4; the first direction is the steepest descent of unit length, later ones scaled
    by ``s.y / y.y``), then a backtracking line search on Armijo's condition (``c1 = 1e-4``, on
    each example's change from its carried loss: ``_change_along``) from the unit step, each
    shorter length the minimiser of the quadratic through the rejected trial (kept within a
    tenth and a half of it). Scores move linearly along the direction: one product per
    direction, not per trial. The search is part of the loop, one trial per pass: a cell
    whose trial is rejected tries a shorter length in the next pass while the chunk's other
    cells take their next iterations, so that under ``vmap`` no cell waits for another's
    search (a search of fixed cost, six lengths at once whenever some cell of the chunk
    rejected the unit step, took 1.5 times as long per iteration on ``digits_bin``, where some
    cell of 64 did so in 84 % of the iterations). Pairs with ``s.y <= 1e-10 |y|^2`` are
    skipped. A cell stops when converged (``_decrement_converged`` with ``stage.lbfgs_rtol``,
    checked on each new direction), when no length down to ``_LBFGS_MIN_STEP`` decreases the
    objective enough along steepest descent (float32 exhausted; along an L-BFGS direction the
    pairs are dropped and steepest descent is tried), or after ``stage.lbfgs_steps`` passes
    (iterations and rejected trials); under ``vmap`` each cell keeps its own result and its
    chunk runs until its slowest cell stops.

    Returns ``(flat parameters, iterations, converged)``.
    """
    index, (dim, k) = layout
    inverse = np.argsort(index)
    dtype = flat0.dtype
    x_raw, shift, scale = (
        (x, jnp.zeros(dim, dtype), jnp.ones(dim, dtype)) if affine is None else affine
    )
    m0, s0 = _pool_scaling(x_raw)
    xs = (x_raw - m0) / s0  # shared by the chunk's cells: computed once
    # The solver's coordinates: the cell's own standardization of its training rows (weighted
    # mean and scale of ``xs``), whatever the engine's preprocessing, so that the iteration is
    # as well conditioned on raw binary features as on standardized ones.
    total = jnp.maximum(jnp.sum(jnp.where(w > 0, w, 0.0)), 1e-30)
    w_pos = jnp.where(w > 0, w, 0.0)
    mu = (w_pos @ xs) / total
    sd = jnp.sqrt(jnp.maximum((w_pos @ ((xs - mu) ** 2)) / total, 0.0))
    sd = jnp.where(sd > 1e-6, sd, 1.0)
    a, c = 1.0 / sd, -mu / sd  # u = xs * a + c
    # theta (the model's [W; b] in the coordinates of ``x``) from phi = [V; beta] (those of u):
    # u = x * r + q with r = scale / (s0 sd), q = (shift - m0 - s0 mu) / (s0 sd).
    r = scale / (s0 * sd)
    q = (shift - m0 - s0 * mu) / (s0 * sd)

    def theta_of(phi):
        v = phi.reshape(dim + 1, k)
        return jnp.concatenate([r[:, None] * v[:dim], (q @ v[:dim] + v[dim])[None]], axis=0)

    def phi_of(theta):
        t = theta.reshape(dim + 1, k)
        v = t[:dim] / r[:, None]
        return jnp.concatenate([v, (t[dim] - q @ v)[None]], axis=0).reshape(-1)

    def to_flat(phi):
        return theta_of(phi).reshape(-1)[inverse]

    def model_at(phi):
        return nnx.merge(graphdef, unravel(to_flat(phi)), rest)

    vec0 = phi_of(flat0[index])
    score_loss = model_at(vec0).score_loss

    def penalty(phi):
        if stage.penalty is None:
            return jnp.zeros((), dtype)
        return getattr(model_at(phi), stage.penalty)()

    # The layout of the scores, for the matrix products under the engine's ``vmap``. Rows
    # shared by the chunk: ``[K, N]`` (outputs by examples), so that the chunk's cells and
    # outputs form the rows of one product with ``xs`` and neither product transposes the
    # chunk's scores. A cell's own rows: ``[N, K]``, with ``xs`` transposed once, before the
    # loop (the barrier keeps XLA from folding it back into the loop's products), so that
    # both of the cell's products contract over a leading axis. Each layout was the faster
    # for its rows, by 15 to 25 % (``digits_bin`` at C = 1e4, 64 cells: 863 examples on the
    # pool's rows, 20 and 279 on a quarter of them).
    xst = xs.T if shared_rows else jax.lax.optimization_barrier(xs.T)

    def scores_of(phi):
        v = phi.reshape(dim + 1, k)
        if shared_rows:
            return (a[:, None] * v[:dim]).T @ xst + (c @ v[:dim] + v[dim])[:, None]
        return xs @ (a[:, None] * v[:dim]) + (c @ v[:dim] + v[dim])

    def back(g_scores):
        """``U^T g_scores`` (U the rows u with a column of ones; ``g_scores`` in the layout
        of the scores), flat."""
        if shared_rows:
            total = g_scores.sum(axis=1)
            gw = a[:, None] * (g_scores @ xs).T + c[:, None] * total[None, :]
        else:
            total = g_scores.sum(axis=0)
            gw = a[:, None] * (xst @ g_scores) + c[:, None] * total[None, :]
        return jnp.concatenate([gw, total[None, :]], axis=0).reshape(-1)

    def losses_grad(scores):
        """Per-example losses at ``scores`` and the data term's gradient in the scores."""
        as_rows = (lambda s: s.T) if shared_rows else (lambda s: s)
        losses, pullback = jax.vjp(lambda s: score_loss(as_rows(s), y), scores)
        return losses, pullback(jnp.where(w > 0, w, 0.0).astype(losses.dtype))[0]

    def direction(g, s_hist, y_hist, rho):
        # Two ``lax.scan``s, two pairs per step: unrolled, the recursion's 20 steps in each of
        # ``_on_row_bucket``'s two copies of the loop took a third of the program's XLA
        # compile (``digits_bin``: 8.2 -> 5 s), and one pair per step ran 5-10 % slower.
        def newest_first(q, j):
            alpha = rho[j] * jnp.vdot(s_hist[j], q)
            return q - alpha * y_hist[j], alpha

        q, alphas = jax.lax.scan(newest_first, g, jnp.arange(stage.memory), unroll=2)
        yy = jnp.vdot(y_hist[0], y_hist[0])
        gamma = jnp.where(rho[0] > 0, 1.0 / jnp.maximum(rho[0] * yy, 1e-30), 0.0)
        first = 1.0 / jnp.maximum(jnp.linalg.norm(g), 1e-30)

        def oldest_first(r, j):
            beta = rho[j] * jnp.vdot(y_hist[j], r)
            return r + (alphas[j] - beta) * s_hist[j], None

        r = jnp.where(rho[0] > 0, gamma, first) * q
        r, _ = jax.lax.scan(oldest_first, r, jnp.arange(stage.memory)[::-1], unroll=2)
        return -r

    size = vec0.shape[0]
    scores0 = scores_of(vec0)
    losses0, g_scores0 = losses_grad(scores0)
    f0 = _weighted_sum(losses0, w) + penalty(vec0)
    g0 = back(g_scores0) + jax.grad(penalty)(vec0)
    zeros = jnp.zeros((stage.memory, size), dtype)
    d0 = direction(g0, zeros, zeros, jnp.zeros(stage.memory, dtype))
    init = {
        "count": jnp.int32(0),
        "vec": vec0,
        "scores": scores0,
        "losses": losses0,
        "f": f0,
        "g": g0,
        "d": d0,
        "moved": scores_of(d0),
        "slope": jnp.vdot(g0, d0),
        "t": jnp.ones((), dtype),
        "s": zeros,
        "y": zeros,
        "rho": jnp.zeros(stage.memory, dtype),
        "converged": _decrement_converged(f0, g0, d0, stage.lbfgs_rtol),
        "stalled": jnp.asarray(False),
    }

    def running(st):
        return (st["count"] < stage.lbfgs_steps) & ~st["converged"] & ~st["stalled"]

    def advance(st):
        """One trial step of the cell's line search: accepted (a new direction and unit
        length next) or rejected (a shorter length along the same direction next)."""
        vec, f, g, d, t, slope = st["vec"], st["f"], st["g"], st["d"], st["t"], st["slope"]
        trial_scores = st["scores"] + t * st["moved"]
        trial_losses, g_scores = losses_grad(trial_scores)
        # The objective's change, summed from each example's (``_change_along``).
        change = _weighted_sum(trial_losses - st["losses"], w) + (
            penalty(vec + t * d) - penalty(vec)
        )
        ok = jnp.isfinite(change) & (change <= 1e-4 * t * slope)
        # Rejected: the minimiser of the quadratic through the change and the slope,
        # safeguarded to [0.1 t, 0.5 t] (a tenth where the change is not finite).
        curvature = change - t * slope
        quadratic = -slope * t * t / (2.0 * jnp.where(curvature > 0, curvature, 1.0))
        shorter = jnp.where(
            jnp.isfinite(change) & (curvature > 0),
            jnp.clip(quadratic, 0.1 * t, 0.5 * t),
            0.1 * t,
        )
        failed = ~ok & (shorter < _LBFGS_MIN_STEP)
        # Accepted: the gradient at the new point and the correction pair.
        new_vec = vec + t * d
        new_g = back(g_scores) + jax.grad(penalty)(new_vec)
        new_f = f + change
        s_new, y_new = new_vec - vec, new_g - g
        sy, yy = jnp.vdot(s_new, y_new), jnp.vdot(y_new, y_new)
        keep = ok & (sy > 1e-10 * yy) & (yy > 0)
        roll = lambda h, v: jnp.concatenate([v[None], h[:-1]])  # noqa: E731
        s_hist = jnp.where(keep, roll(st["s"], s_new), st["s"])
        y_hist = jnp.where(keep, roll(st["y"], y_new), st["y"])
        rho = jnp.where(keep, roll(st["rho"], 1.0 / jnp.where(keep, sy, 1.0)), st["rho"])
        # A failed search with correction pairs restarts from steepest descent (the pairs
        # dropped); one without them means float32 cannot decrease the objective further.
        restart = failed & (st["rho"][0] > 0)
        stalled = failed & ~restart
        s_hist = jnp.where(restart, jnp.zeros_like(s_hist), s_hist)
        y_hist = jnp.where(restart, jnp.zeros_like(y_hist), y_hist)
        rho = jnp.where(restart, jnp.zeros_like(rho), rho)
        at_g = jnp.where(ok, new_g, g)
        # The next direction: L-BFGS's (steepest descent after a restart: no pairs), or the
        # same one, shorter, after a rejected trial. Its scores' movement is one product.
        new_d = jnp.where(ok | restart, direction(at_g, s_hist, y_hist, rho), d)
        new_slope = jnp.vdot(at_g, new_d)
        descent = new_slope < 0
        new_d = jnp.where(descent, new_d, -at_g)
        new_slope = jnp.where(descent, new_slope, -jnp.vdot(at_g, at_g))
        return {
            "count": st["count"] + 1,
            "vec": jnp.where(ok, new_vec, vec),
            "scores": jnp.where(ok, trial_scores, st["scores"]),
            "losses": jnp.where(ok, trial_losses, st["losses"]),
            "f": jnp.where(ok, new_f, f),
            "g": at_g,
            "d": new_d,
            "moved": scores_of(new_d),  # how the scores move per unit step (linear)
            "slope": new_slope,
            "t": jnp.where(ok | restart, jnp.ones_like(t), shorter),
            "s": s_hist,
            "y": y_hist,
            "rho": rho,
            # At float32's floor (no step length decreases the objective, even along steepest
            # descent) the decrement is noise of about 1e-6 |f|: ten times the test there.
            "converged": jnp.where(
                ok,
                _decrement_converged(new_f, new_g, new_d, stage.lbfgs_rtol),
                stalled & _decrement_converged(f, g, d, 10 * stage.lbfgs_rtol),
            ),
            "stalled": stalled,
        }

    final = jax.lax.while_loop(running, advance, init)
    return to_flat(final["vec"]), final["count"], final["converged"]


def _separable_direction(g, u, ut, curv, penalty_hessian):
    """``_newton_direction`` for a block-diagonal Hessian (``Newton.separable_outputs``).

    ``g`` and ``penalty_hessian`` are in ``[W; b]`` (d, k) order; ``curv`` is ``[N, K, K]``,
    diagonal. Block ``k`` is ``U^T diag(curv_kk) U`` plus the penalty's ``(d, k), (e, k)``
    entries; the damping is the full matrix's, from the blocks' traces."""
    dim1, k = u.shape[1], curv.shape[1]
    diag = jnp.diagonal(curv, axis1=1, axis2=2)  # [N, K]
    data = (ut[None, :, :] * diag.T[:, None, :]) @ u  # [K, D1, D1]
    pen = jnp.einsum("dkek->kde", penalty_hessian.reshape(dim1, k, dim1, k))
    h = data + pen
    damping = _damping(jax.vmap(_trace)(h).sum(), dim1 * k)
    eye = jnp.eye(dim1, dtype=h.dtype)
    blocks = jax.vmap(lambda hb, gb: _newton_direction(gb, hb, eye, damping))
    return blocks(h, g.reshape(dim1, k).T).T.reshape(-1)  # [K, D1] -> (d, k) order


#: ``_subset_hessian``'s row counts: the pool's, divided by ``ROW_RATIO`` up to twice. More
#: (five, halving) ran no faster on 1,000-cell grids and added twice the compile time.
ROW_BUCKETS, ROW_RATIO = 3, 4
#: ``_on_row_bucket``'s: the pool's, and a quarter of it.
LBFGS_ROW_BUCKETS = 2


def _row_buckets(n: int, count: int = ROW_BUCKETS) -> list[int]:
    """Ascending distinct row counts ``ceil(n / ROW_RATIO**j)``, ``j < count``."""
    return sorted({-(-n // ROW_RATIO**j) for j in range(count)})


def _chunk_max(value):
    """The largest ``value`` over the cells of the chunk being fitted (``gdbench.sharding.CHUNK``,
    the engine's vmapped axis), or ``value`` itself outside such a chunk."""
    try:
        return jax.lax.pmax(value, CHUNK)
    except NameError:  # not under the engine's vmap (a test fitting one model)
        return value


def _row_branch(active, count: int = ROW_BUCKETS) -> tuple[list[int], jax.Array]:
    """``_row_buckets`` of ``active``'s length and the index of the smallest that holds the
    active count of every cell of the chunk (``_chunk_max``)."""
    buckets = _row_buckets(active.shape[0], count)
    needed = _chunk_max(jnp.sum(active))
    return buckets, jnp.minimum(jnp.sum(needed > jnp.asarray(buckets)), len(buckets) - 1)


def _on_row_bucket(solve, x, y, w, affine):
    """``solve(x, y, w, affine)`` on the training subset's rows only: the first ``r`` of the
    rows ordered active first (``w > 0``; stable), ``r`` the smallest of ``_row_buckets`` that
    holds the subset of every cell of the chunk (``_row_branch``: one ``lax.switch`` branch for
    the whole vmapped chunk). The largest bucket is the pool itself, shared by the chunk's cells
    (its products stay one matrix product for the chunk); a smaller one is gathered per cell
    (``solve``'s ``shared_rows=False``). The rows left out have zero weight: the objective is
    the same. Learning curves fit most cells on a small part of the pool, and an L-BFGS
    iteration or a Newton step on all of it cost the same at 20 examples as at 1,258. Two
    buckets (``LBFGS_ROW_BUCKETS``): each is a compiled copy of the whole solve. ``digits_bin``
    x ``logreg?C=10000``, 64 cells at each of its 12 ``ngjordan`` sizes (2-core CPU): sizes 20
    to 279 took 1.5 to 2.6 s per chunk instead of 2.2 to 3.2 s, the larger ones the same; fit
    38.5 -> 33.0 s for the 12 chunks, compile about 4 s longer (paid once for every ``C``:
    ``traced_hyperparameters``)."""
    active = w > 0
    buckets, branch = _row_branch(active, LBFGS_ROW_BUCKETS)

    def on_rows(r):
        if r == x.shape[0]:
            return lambda: solve(x, y, w, affine)

        def gathered():  # the sort only in the branches that gather
            rows = jnp.argsort(~active, stable=True)[:r]
            sub = None if affine is None else (affine[0][rows], affine[1], affine[2])
            return solve(x[rows], y[rows], w[rows], sub, shared_rows=False)

        return gathered

    return jax.lax.switch(branch, [on_rows(r) for r in buckets])


def _first_rows(active, count: int = ROW_BUCKETS):
    """``run(fn, *arrays)``: ``fn`` of the first ``r`` rows of each array (examples along the
    first axis, ordered active first), ``r`` the smallest of ``_row_buckets`` that holds the
    active rows of every cell of the chunk (``_row_branch``: one ``lax.switch`` branch for the
    whole vmapped chunk). The rows left out have zero weight: sums over examples are the
    same."""
    buckets, branch = _row_branch(active, count)

    def run(fn, *arrays, pool=None):
        """``pool``: what the branch of all the rows runs instead, given the whole arrays."""

        def on(r):
            if pool is not None and r == active.shape[0]:
                return pool
            return lambda *a: fn(*(v[:r] for v in a))

        return jax.lax.switch(branch, [on(r) for r in buckets], *arrays)

    return run


def _subset_hessian(u, on_rows, pool_hessian=None):
    """``curv -> _kron_hessian(u, u.T, curv)`` for one output (``K = 1``), where the rows of
    ``u`` with ``active`` come first and ``curv`` is 0 on the others; ``on_rows`` is
    ``_first_rows(active)`` (the Newton loop's, which its gradient and line search share).
    ``pool_hessian`` (``_pool_pairs_hessian``): the same sum, for the branch of every row.

    Learning curves fit most cells on a small part of the pool: the product runs on the first
    ``r`` rows only, ``r`` the smallest of ``_row_buckets`` that holds the subset of every
    cell of the chunk (``lax.switch`` among static shapes; with the chunk's largest count
    the choice is one for the whole vmapped chunk, not a select that computes every branch).
    The rows left out have zero curvature: the sum is the same. 1,000 cells of 10 sizes from 6
    to 252 (2-core CPU): fit 1.66 -> 1.32 s on ``digits_2v3`` (pool 290), 0.93 -> 0.75 s on
    ``breast_cancer`` (398); 100 cells all of size 252: 159 -> 170 ms (the sort); compile
    0.71 -> 0.86 s."""
    product = lambda u_r, c_r: _kron_hessian(u_r, u_r.T, c_r)  # noqa: E731
    pool = None if pool_hessian is None else lambda _u, c: pool_hessian(c)
    return lambda curv: on_rows(product, u, curv, pool=pool)


#: Most bytes of a pool's pair products (``_pool_pairs_hessian``): ``digits_0v1``'s 252 x 2,145
#: take 2.2 MB; a pool of 28 x 28 images would need 1.2 MB per row, and keeps per-cell products.
POOL_PAIRS_BYTES = 64 * 2**20
#: Fewest columns ``[x, 1]`` for which ``_pool_pairs_hessian`` is used: with 9 (``gauss_nb``,
#: 2,000 rows) the per-cell products are small, and the shared product ran 15 % slower.
POOL_PAIRS_MIN_COLUMNS = 16


def _pool_pairs_hessian(x, affine, order):
    """``curv -> sum_i curv_i u_i u_i^T`` (one output; ``curv`` ``[N, 1, 1]`` in the cell's row
    ``order``, ``u_i = [z_i, 1]`` its standardized rows) from the products of the pool's
    pairs of features, which the cells of a chunk share: one matrix product ``[cells, N] @ [N,
    (D+1)(D+2)/2]`` for the chunk instead of a ``[D+1, N] @ [N, D+1]`` product per cell, which
    XLA's CPU batched matmuls ran at a quarter of the rate. The pool's rows are first scaled by
    their own mean and scale (shared, and of unit scale, as ``_linear_lbfgs`` does), and the
    cell's standardization ``z = xs a + c`` enters as ``H = M^T G M`` (elementwise: ``M`` is
    diagonal but for the row of ones). ``affine``: the engine's ``(x_raw, shift, scale)``;
    None: ``x`` itself. None where the products would exceed ``POOL_PAIRS_BYTES`` or the
    columns are fewer than ``POOL_PAIRS_MIN_COLUMNS``.

    ``logreg?C=10000``, 1,000 cells of 10 sizes from 6 to 252 (2-core CPU, alternated in one
    process, median of 5): fit 1.15 -> 0.93 s on ``breast_cancer``, 1.93 -> 1.44 s on
    ``digits_0v1``, 2.41 -> 1.76 s on ``digits_2v3`` (the per-cell product of the pool's rows
    had been 5.5 ms of each Newton step of a 63-cell chunk), the same steps and every cell
    converged; XLA compile about 0.25 s longer."""
    x_raw, shift, scale = (x, 0.0, 1.0) if affine is None else affine
    n, dim = x_raw.shape
    pair_index, first, second = _pairs(dim + 1)
    if dim + 1 < POOL_PAIRS_MIN_COLUMNS or 4 * n * first.size > POOL_PAIRS_BYTES:
        return None
    m0, s0 = _pool_scaling(x_raw)
    xs = jnp.concatenate([(x_raw - m0) / s0, jnp.ones((n, 1), x_raw.dtype)], axis=1)
    products = xs[:, first] * xs[:, second]  # [N, pairs]: the chunk's, computed once
    one, zero = jnp.ones(1, x_raw.dtype), jnp.zeros(1, x_raw.dtype)
    a = jnp.concatenate([s0 / scale, one])
    c = jnp.concatenate([(m0 - shift) / scale, zero])
    rank = jnp.argsort(order)  # the cell's sorted position of each pool row

    def hessian(curv):
        g = (curv[:, 0, 0][rank] @ products)[pair_index]  # sum_i curv_i xs_i xs_i^T
        gm = g * a[None, :] + g[:, -1:] * c[None, :]  # G M
        return gm * a[:, None] + c[:, None] * gm[-1:, :]  # M^T G M

    return hessian


def _kron_hessian(u, ut, curv):
    """``sum_i (u_i u_i^T) kron curv_i`` as a ``[(D+1) K, (D+1) K]`` matrix in (d, k) order.

    ``ut`` is ``u.T`` (``[D+1, N]``). Both factors are symmetric, so for several outputs only
    the pairs ``k <= l`` of ``curv`` (and, when the product runs over ``u``'s outer products,
    the pairs ``d <= e``) enter the matrix product; the matrix is then read out of the
    distinct entries (one gather, which also puts them in (d, k) order). Quick suite's
    ``digits_bin`` x ``logreg`` (10 classes, 64 features, 30 cells; with ``_trace`` and the
    lower-triangle factorization): fit 7.9 -> 4.7 s on a 2-core CPU, the same accuracies."""
    n, dim1 = u.shape
    k = curv.shape[1]
    if k == 1:
        return (ut * curv[None, :, 0, 0]) @ u
    k_pair, k_first, k_second = _pairs(k)
    curv_pairs = curv[:, k_first, k_second]  # [N, K(K+1)/2]
    if k * k <= dim1:
        # [D1, N] @ [N, D1 * pairs] -> (d, e, kl)
        right = (u[:, :, None] * curv_pairs[:, None, :]).reshape(n, -1)
        data = (ut @ right).reshape(dim1 * dim1, -1)
        d = np.arange(dim1)
        de = np.minimum.outer(d, d) * dim1 + np.maximum.outer(d, d)  # (e, d) reads (d, e)
    else:
        # [D1 (D1+1) / 2, N] @ [N, pairs] -> (de, kl)
        de, d_first, d_second = _pairs(dim1)
        outer = u[:, d_first] * u[:, d_second]
        data = outer.T @ curv_pairs
    rows = de[:, None, :, None]  # (d, k, e, l) -> index of the (d, e) entry
    cols = k_pair[None, :, None, :]
    return data[rows, cols].reshape(dim1 * k, dim1 * k)


@functools.cache
def _pairs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``a <= b`` of ``range(size)``: ``(index [size, size] of the pair of (a, b)
    (symmetric), first, second)``."""
    first, second = np.triu_indices(size)
    index = np.zeros((size, size), np.int32)
    index[first, second] = index[second, first] = np.arange(first.size)
    for array in (index, first, second):
        array.flags.writeable = False  # shared by every call (cached)
    return index, first, second


def gradient(
    model: Model,
    stage: Gradient,
    x: jax.Array,
    y: jax.Array,
    w_train: jax.Array,
    w_val: jax.Array,
    key: jax.Array,
) -> None:
    """AdamW on minibatches drawn from the training part; keep the best-validation parameters."""
    graphdef, params, rest = nnx.split(model, stage.wrt, ...)
    tx = optax.adamw(stage.learning_rate, weight_decay=stage.weight_decay)
    p_train = w_train / jnp.maximum(w_train.sum(), 1.0)
    n_val = w_val.sum()

    def losses(p, xb, yb, k):
        fn = getattr(nnx.merge(graphdef, p, rest), stage.loss)
        return fn(xb, yb, k) if stage.stochastic else fn(xb, yb)

    def batch_loss(p, xb, yb, k):
        return losses(p, xb, yb, k).mean()

    val_key = jax.random.fold_in(key, 2**31 - 1)
    val_loss = _validation_loss(
        lambda p, xv, yv: losses(p, xv, yv, val_key), x, y, w_val, stage.stochastic
    )

    def train_step(carry, k):
        p, opt_state = carry
        k_batch, k_loss = jax.random.split(k)
        idx = jax.random.choice(k_batch, x.shape[0], (stage.batch_size,), p=p_train)
        grads = jax.grad(batch_loss)(p, x[idx], y[idx], k_loss)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    def block(carry, k):
        p, opt_state, best, best_loss = carry
        keys = jax.random.split(k, stage.eval_every)
        (p, opt_state), _ = jax.lax.scan(train_step, (p, opt_state), keys)
        current = val_loss(p)
        # Take the first finite checkpoint, then only improvements; a run that never reaches a
        # finite validation loss keeps its last parameters, so its divergence is reported.
        better = (current < best_loss) | (best_loss == jnp.inf) | (n_val == 0)
        better = better | (not stage.select_on_val)
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), p, best)
        return (p, opt_state, best, jnp.where(better, current, best_loss)), current

    blocks = max(stage.steps // stage.eval_every, 1)
    init = (params, tx.init(params), params, jnp.asarray(jnp.inf, x.dtype))
    (_, _, best, _), _ = jax.lax.scan(block, init, jax.random.split(key, blocks))
    nnx.update(model, best)


def _validation_loss(losses, x, y, w_val, stochastic: bool):
    """``p -> sum_i w_val_i losses(p, x, y)_i / sum_i w_val_i``.

    Computed on the validation examples only, where the loss allows it: they are a fifth of
    the cell's subset, itself often a small part of the pool. The rows evaluated are the
    smallest of ``_row_buckets`` that holds them for the whole chunk (``_row_branch``),
    gathered in pool order; where that is the whole pool, the pool as it is. A stochastic
    loss is always evaluated on the whole pool: its draws are shaped like the rows, so fewer
    rows would draw other noise. Measured on the MLP benchmark's cell (1,257 examples, 251 of
    them validation, 20 checkpoints): 10-seed fit of the 64-256-256-10 MLP 2.84 -> 2.57 s,
    64-64-64-10 0.63 -> 0.57 s (2-core CPU)."""
    n_val = jnp.maximum(w_val.sum(), 1.0)

    def on_rows(rows):
        def loss(p):
            xv, yv, wv = (x, y, w_val) if rows is None else (x[rows], y[rows], w_val[rows])
            return _weighted_sum(losses(p, xv, yv), wv) / n_val

        return loss

    if stochastic:
        return on_rows(None)
    buckets, branch = _row_branch(w_val > 0)
    first = jnp.argsort(w_val <= 0, stable=True)
    branches = [on_rows(first[:r]) for r in buckets[:-1]] + [on_rows(None)]
    return lambda p: jax.lax.switch(branch, branches, p)


def iterate(model: Model, stage: Iterate, x, y, w, key) -> None:
    """Run ``model.<init>`` once, then ``model.<step>`` ``stage.steps`` times in ``lax.scan``."""
    getattr(model, stage.init)(x, y, w, key)
    graphdef, state = nnx.split(model)

    def body(st, _):
        m = nnx.merge(graphdef, st)
        getattr(m, stage.step)(x, y, w)
        return nnx.state(m), None

    state, _ = jax.lax.scan(body, state, None, length=stage.steps)
    nnx.update(model, state)


def _num_classes(model: Model, x: jax.Array) -> int:
    """C, from the shape of ``predict_logits`` (evaluated abstractly, no computation)."""
    return int(jax.eval_shape(model.predict_logits, x[:1]).shape[-1])


def adversarial(
    model: Model,
    stage: Adversarial,
    x: jax.Array,
    y: jax.Array,
    w: jax.Array,
    key: jax.Array,
) -> dict[str, jax.Array]:
    """Alternate discriminator and generator AdamW updates; return the traces.

    Each of the ``stage.steps`` iterations makes ``stage.d_steps`` updates of the variables
    selected by ``stage.d_wrt`` on ``model.<d_loss>``, then one update of those selected by
    ``stage.g_wrt`` on ``model.<g_loss>``; every update draws its own minibatch of
    ``batch_size`` examples with replacement from the training part (probabilities ``w``
    normalised, as ``gradient`` does) and its own PRNG key. Both optimisers are AdamW with the
    stage's ``(b1, b2)``, weight decay and their own learning rates. Nested ``lax.scan``: no
    Python loop runs per step, so the function traces under ``jit`` and maps over cells.

    Every ``trace_every`` iterations a trace point is recorded: ``model.<trace_method>`` on a
    fixed evaluation batch (``trace_batch`` training examples drawn once) with a fresh key,
    and ``samples_per_class`` draws per class from ``model.<sample_method>`` with the same
    per-class keys at every point (the same latent noise, so the draws can be followed).

    Returns:
      ``{name: [T]}`` for every entry of the trace method's dict (``T = steps //
      trace_every``), ``"trace_step"``: ``[T]`` int32 iterations done at each point, and
      ``"trace_samples"``: ``[T, C, samples_per_class, D]`` in the model's input units.
    """
    graphdef, d_params, g_params, rest = nnx.split(model, stage.d_wrt, stage.g_wrt, ...)

    def adamw(learning_rate: float) -> optax.GradientTransformation:
        return optax.adamw(learning_rate, b1=stage.b1, b2=stage.b2, weight_decay=stage.weight_decay)

    d_tx, g_tx = adamw(stage.d_learning_rate), adamw(stage.g_learning_rate)
    p_train = w / jnp.maximum(w.sum(), 1.0)
    num_classes = _num_classes(model, x)
    k_eval, k_samples, k_run = (jax.random.fold_in(key, i) for i in range(3))

    def method(name, d, g):
        return getattr(nnx.merge(graphdef, d, g, rest), name)

    def minibatch(k, size):
        idx = jax.random.choice(k, x.shape[0], (size,), p=p_train)
        return x[idx], y[idx]

    def d_update(carry, k):
        d, d_opt, g = carry
        k_batch, k_loss = jax.random.split(k)
        xb, yb = minibatch(k_batch, stage.batch_size)
        grads = jax.grad(lambda p: method(stage.d_loss, p, g)(xb, yb, k_loss))(d)
        updates, d_opt = d_tx.update(grads, d_opt, d)
        return (optax.apply_updates(d, updates), d_opt, g), None

    def iteration(carry, k):
        d, g, d_opt, g_opt = carry
        k_d, k_batch, k_loss = jax.random.split(k, 3)
        (d, d_opt, _), _ = jax.lax.scan(
            d_update, (d, d_opt, g), jax.random.split(k_d, stage.d_steps)
        )
        xb, yb = minibatch(k_batch, stage.batch_size)
        grads = jax.grad(lambda p: method(stage.g_loss, d, p)(xb, yb, k_loss))(g)
        updates, g_opt = g_tx.update(grads, g_opt, g)
        return (d, optax.apply_updates(g, updates), d_opt, g_opt), None

    x_eval, y_eval = minibatch(k_eval, stage.trace_batch)
    class_keys = jax.random.split(k_samples, num_classes)

    def block(carry, k):
        k_steps, k_trace = jax.random.split(k)
        carry, _ = jax.lax.scan(iteration, carry, jax.random.split(k_steps, stage.trace_every))
        m = nnx.merge(graphdef, carry[0], carry[1], rest)
        diagnostics = dict(getattr(m, stage.trace_method)(x_eval, y_eval, k_trace))
        draw = getattr(m, stage.sample_method)
        samples = jax.vmap(lambda kc, c: draw(kc, c, stage.samples_per_class))(
            class_keys, jnp.arange(num_classes)
        )
        return carry, (diagnostics, samples)

    points = stage.steps // stage.trace_every
    init = (d_params, g_params, d_tx.init(d_params), g_tx.init(g_params))
    (d, g, _, _), (diagnostics, samples) = jax.lax.scan(
        block, init, jax.random.split(k_run, points)
    )
    nnx.update(model, d, g)
    traces = {name: jnp.asarray(v) for name, v in diagnostics.items()}
    traces["trace_step"] = (jnp.arange(1, points + 1) * stage.trace_every).astype(jnp.int32)
    traces["trace_samples"] = samples
    return traces


def run_plan(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    w_train: jax.Array,
    w_val: jax.Array,
    key: jax.Array,
    affine: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """Fit ``model`` in place by running its ``fit_plan`` stages in order.

    ``affine``: optionally ``(x_raw, shift, scale)`` with ``x == (x_raw - shift) / scale``
    (the engine's standardization; see ``newton``).

    Returns the traces the stages record, merged into one dict: an ``Adversarial`` stage's
    training curves (see ``adversarial`` for their names and shapes) and, for the ``i``-th
    stage when it is a ``Newton`` one, ``NEWTON_STEPS + str(i)``: the Newton steps it took
    (its loop is traced under the name scope ``NEWTON_SCOPE + str(i)``), and with L-BFGS
    first ``NEWTON_STEPS + str(i) + LBFGS``, its iterations. Two stages recording
    the same trace name are an error.
    """
    traces: dict[str, jax.Array] = {}
    for i, stage in enumerate(model.fit_plan()):
        w = w_val if getattr(stage, "split", "train") == "val" else w_train
        if isinstance(stage, ClosedForm):
            model.estimate(x, y, w)
        elif isinstance(stage, Newton):
            with jax.named_scope(f"{NEWTON_SCOPE}{i}"):
                taken, converged, iterations = newton(model, stage, x, y, w, affine)
            traces[f"{NEWTON_STEPS}{i}"] = taken
            if iterations is not None:
                traces[f"{NEWTON_STEPS}{i}{LBFGS}"] = iterations
            traces[f"{NEWTON_CONVERGED}{i}"] = converged
        elif isinstance(stage, Gradient):
            gradient(model, stage, x, y, w_train, w_val, jax.random.fold_in(key, i))
        elif isinstance(stage, Iterate):
            iterate(model, stage, x, y, w, jax.random.fold_in(key, i))
        elif isinstance(stage, Adversarial):
            recorded = adversarial(model, stage, x, y, w, jax.random.fold_in(key, i))
            clash = sorted(set(recorded) & set(traces))
            if clash:
                raise ValueError(f"fit stages record the same traces twice: {clash}")
            traces.update(recorded)
        else:
            raise TypeError(f"unknown fit stage {stage!r}")
    return traces
