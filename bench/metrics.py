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
