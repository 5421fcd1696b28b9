"""Run a model's fit plan: the engine-owned loops (closed form, Newton, AdamW in ``lax.scan``).

Everything here is a pure function of arrays traced inside one jit-compiled, vmapped grid
program: no Python loop runs per cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from models.base import ClosedForm, Gradient, Iterate, Model, Newton

#: Step lengths tried along each Newton direction; 0 keeps the objective monotone.
_STEP_LENGTHS = jnp.concatenate([2.0 ** -jnp.arange(10.0), jnp.zeros(1)])
_NEWTON_DAMPING = 1e-4


def _weighted_sum(values: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(w > 0, w * values, 0.0))


def newton(model: Model, stage: Newton, x: jax.Array, y: jax.Array, w: jax.Array) -> None:
    """Minimise ``sum_i w_i loss_i + penalty`` over ``stage.wrt`` with damped Newton steps.

    The objective must be convex (the Hessian is factorized by Cholesky). Each step solves
    ``(H + lambda I) d = -g`` with ``lambda = 1e-4 (1 + tr(H) / P)`` and moves to the best of ten
    halvings of ``d`` (or stays): a fixed-cost line search that batches well under ``vmap``.
    The relative damping keeps the factorization stable in float32 when H is singular (e.g.
    along the unpenalized softmax intercepts' common shift); it changes the steps, not the
    minimiser, where g = 0.
    """
    graphdef, params, rest = nnx.split(model, stage.wrt, ...)
    flat0, unravel = ravel_pytree(params)

    def objective(flat):
        m = nnx.merge(graphdef, unravel(flat), rest)
        value = _weighted_sum(getattr(m, stage.loss)(x, y), w)
        if stage.penalty is not None:
            value = value + getattr(m, stage.penalty)()
        return value

    eye = jnp.eye(flat0.shape[0], dtype=flat0.dtype)
    hessian = jax.hessian(objective)
    if stage.linear_scores is not None:
        hessian = _linear_model_hessian(graphdef, unravel, rest, stage, x, y, w)

    def step(flat, _):
        g = jax.grad(objective)(flat)
        h = hessian(flat)
        damping = _NEWTON_DAMPING * (1.0 + jnp.trace(h) / h.shape[0])
        factor = jax.scipy.linalg.cho_factor(h + damping * eye)
        direction = -jax.scipy.linalg.cho_solve(factor, g)
        direction = jnp.where(jnp.isfinite(direction), direction, 0.0)
        candidates = flat[None, :] + _STEP_LENGTHS[:, None] * direction[None, :]
        values = jax.vmap(objective)(candidates)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        return candidates[jnp.argmin(values)], None

    flat, _ = jax.lax.scan(step, flat0, None, length=stage.steps)
    nnx.update(model, unravel(flat))


def _linear_model_hessian(graphdef, unravel, rest, stage: Newton, x, y, w):
    """Exact Hessian of ``sum_i w_i l(x_i W + b, y_i) + penalty`` in Kronecker form.

    With ``u_i = [x_i, 1]`` and ``A_i = d^2 l / ds^2`` (K x K), the data term's Hessian over
    ``[W; b]`` is ``sum_i w_i (u_i u_i^T) kron A_i``; the penalty's comes from autodiff. The
    result is permuted to the order of the flattened ``wrt`` state.
    """
    weight_name, bias_name = stage.linear_scores
    u = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

    def split_wb(flat):
        m = nnx.merge(graphdef, unravel(flat), rest)
        return m, getattr(m, weight_name)[...], getattr(m, bias_name)[...]

    def penalty(flat):
        m = nnx.merge(graphdef, unravel(flat), rest)
        return getattr(m, stage.penalty)() if stage.penalty is not None else jnp.zeros(())

    def hessian(flat):
        m, weight, bias = split_wb(flat)
        scores = x @ weight + bias
        per_example = jax.vmap(
            jax.hessian(lambda s, t: m.score_loss(s[None], t[None])[0]), in_axes=(0, 0)
        )(scores, y)
        n, dim1, k = u.shape[0], u.shape[1], scores.shape[1]
        # One matmul: [D1*D1, N] @ [N, K*K], then reorder (d, e, k, l) -> (d, k, e, l).
        outer = ((u * w[:, None])[:, :, None] * u[:, None, :]).reshape(n, dim1 * dim1)
        data = (outer.T @ per_example.reshape(n, k * k)).reshape(dim1, dim1, k, k)
        data = data.transpose(0, 2, 1, 3).reshape(dim1 * k, dim1 * k)
        # Map (row d of [W; b], column k) to positions in the flattened state.
        index = _flat_positions(graphdef, unravel, rest, flat, weight_name, bias_name)
        h = jnp.zeros((flat.shape[0], flat.shape[0]), flat.dtype)
        h = h.at[index[:, None], index[None, :]].set(data)
        return h + jax.hessian(penalty)(flat)

    return hessian


def _flat_positions(graphdef, unravel, rest, flat, weight_name, bias_name):
    """Positions in ``flat`` of the entries of ``[W; b]`` in row-major order."""
    positions = jnp.arange(flat.shape[0], dtype=jnp.float32)
    m = nnx.merge(graphdef, unravel(positions.astype(flat.dtype)), rest)
    stacked = jnp.concatenate(
        [getattr(m, weight_name)[...], getattr(m, bias_name)[...][None, :]], axis=0
    )
    return stacked.reshape(-1).astype(jnp.int32)


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

    def val_loss(p):
        return _weighted_sum(losses(p, x, y, val_key), w_val) / jnp.maximum(n_val, 1.0)

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


def run_plan(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    w_train: jax.Array,
    w_val: jax.Array,
    key: jax.Array,
) -> None:
    """Fit ``model`` in place by running its ``fit_plan`` stages in order."""
    for i, stage in enumerate(model.fit_plan()):
        w = w_val if getattr(stage, "split", "train") == "val" else w_train
        if isinstance(stage, ClosedForm):
            model.estimate(x, y, w)
        elif isinstance(stage, Newton):
            newton(model, stage, x, y, w)
        elif isinstance(stage, Gradient):
            gradient(model, stage, x, y, w_train, w_val, jax.random.fold_in(key, i))
        elif isinstance(stage, Iterate):
            iterate(model, stage, x, y, w, jax.random.fold_in(key, i))
        else:
            raise TypeError(f"unknown fit stage {stage!r}")
