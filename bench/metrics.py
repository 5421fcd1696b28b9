"""Per-cell test metrics, computed from class logits the same way for every paradigm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

ECE_BINS = 15


def classification_metrics(logits: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Accuracy, NLL, Brier score and ECE of ``softmax(logits)`` against labels ``y``.

    Args:
      logits: ``[B, C]`` unnormalised class log-probabilities (log joint for generative models).
      y: ``[B]`` integer labels.

    Returns:
      ``accuracy`` (fraction), ``nll`` (mean ``-log p(y|x)``, nats), ``brier`` (mean over
      examples of ``sum_c (p_c - 1[y=c])^2``, in [0, 2]) and ``ece`` (top-label expected
      calibration error, 15 equal-width confidence bins).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=p.dtype)
    pred = jnp.argmax(logits, axis=-1)
    correct = (pred == y).astype(p.dtype)
    conf = p.max(-1)
    bins = jnp.clip(jnp.floor(conf * ECE_BINS).astype(jnp.int32), 0, ECE_BINS - 1)
    gap = jax.ops.segment_sum(correct - conf, bins, num_segments=ECE_BINS)
    return {
        "accuracy": correct.mean(),
        "nll": -(onehot * logp).sum(-1).mean(),
        "brier": ((p - onehot) ** 2).sum(-1).mean(),
        "ece": jnp.abs(gap).sum() / y.shape[0],
    }


def example_spread(logits: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """What a cell keeps of its per-example test outcomes, so that reports can add the test
    set's sampling noise to their intervals and pair two models example by example.

    Args:
      logits: ``[B, C]`` as for `classification_metrics`.
      y: ``[B]`` integer labels.

    Returns:
      ``correct`` (``[B]`` booleans: the most probable class is the label; stored bit-packed,
      ``gdbench.results.schema.pack_correct``) and the standard deviations (ddof=1) over the ``B``
      examples of the per-example terms whose means are ``nll`` (``nll_sd``, nats), ``brier``
      (``brier_sd``) and of ``correct - confidence``, the terms ECE sums per bin (``ece_sd``).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=p.dtype)
    correct = jnp.argmax(logits, axis=-1) == y
    return {
        "correct": correct,
        "nll_sd": jnp.std(-(onehot * logp).sum(-1), ddof=1),
        "brier_sd": jnp.std(((p - onehot) ** 2).sum(-1), ddof=1),
        "ece_sd": jnp.std(correct.astype(p.dtype) - p.max(-1), ddof=1),
    }
