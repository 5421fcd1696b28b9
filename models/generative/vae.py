"""``vae``: a class-conditional variational autoencoder (Kingma & Welling 2014; Sohn et al. 2015).

For each class c the model is a latent-variable density
``p(x | c) = integral N(z; 0, I) p(x | z, c) dz``, with

- encoder ``q(z | x, c) = N(mu, diag(sigma^2))``, an MLP on ``[x, onehot(c)]`` (ReLU ``hidden``
  layers, a linear output giving ``mu`` and ``log sigma^2``, clipped to [-15, 10]);
- decoder ``p(x | z, c)``, an MLP on ``[z, onehot(c)]`` (the mirrored ``hidden`` layers);
  ``decoder="auto"`` (the default) picks "bernoulli" on binary tasks (the engine passes the
  task's ``feature_kind``), else "gaussian":
  ``decoder="gaussian"`` (real features): ``N(x; m(z, c), diag(v))`` with one learned variance
  per feature, ``v = min_variance + softplus(raw)``, bounded below for stability (features are
  standardized, so ``min_variance=1e-3`` plays the part of ``gnb``'s ``var_smoothing``);
  ``decoder="bernoulli"`` (0/1 features): independent Bernoulli pixels with logits ``m(z, c)``.

``hidden=()`` makes both maps linear (then the Gaussian model is probabilistic PCA with class means,
whose marginal is ``N(b_c, W W^T + diag(v))``; the tests use it to check the bounds against an
exact density).

Fitting: a ``ClosedForm`` stage sets the class prior from weighted counts, then AdamW minimises
the single-sample reparameterised negative ELBO (``neg_elbo``, with the Gaussian KL term in
closed form) on minibatches, keeping the parameters with the best validation negative ELBO.

Evaluation: ``class_log_probs`` is the importance-weighted bound (IWAE, Burda et al. 2016)
``log (1/K) sum_k p(x, z_k | c) / q(z_k | x, c)``, ``z_k ~ q(z | x, c)``, with ``K = iwae_k``
draws per example and class from a key fixed at construction, so evaluation is deterministic.
It is a lower bound on ``log p(x | c)`` that tightens as K grows (``likelihood_is_bound``).
``elbo_class_log_probs`` is the ELBO estimated from the same K draws (the mean of the log
weights); ``class_log_bounds`` returns both from one pass. The K draws are processed in chunks
with a running log-sum-exp, so memory stays bounded on large test sets.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Array, ClosedForm, GenerativeModel, Gradient, class_counts

_LOG_2PI = math.log(2.0 * math.pi)
#: Floats per chunk of importance samples and per cell (the widest activation of a chunk): 4 MiB
#: per array and cell, so a vmapped grid of 256 cells stays within a few GiB.
_CHUNK_FLOATS = 2**20
#: Trained by gradient: every parameter but the class prior (set in closed form).
_NETWORKS = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("log_class_prior")))


def _mlp(sizes: tuple[int, ...], rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    )


def _conditioned_mlp(layers: nnx.List, u: Array, class_rows: Array) -> Array:
    """The MLP applied to ``[u, onehot(c)]``.

    The first layer's one-hot part is a per-class row of its kernel: ``class_rows`` selects
    those rows, ``[..., C_in, H]`` broadcastable against ``u @ kernel[:U]``, so concatenation
    and the matmul over the one-hot block are skipped.
    """
    first = layers[0]
    h = u @ first.kernel[...][: u.shape[-1]] + class_rows + first.bias[...]
    for layer in layers[1:]:
        h = layer(jax.nn.relu(h))
    return h


def _unfused(a: Array) -> Array:
    """``a`` unchanged (rounding to its own precision), as a fusion boundary for XLA:CPU.

    Without it, XLA:CPU (jaxlib 0.10) fuses the decoder's matmuls with the Gaussian likelihood
    into one kernel that runs the IWAE evaluation about three times slower.
    """
    info = jnp.finfo(a.dtype)
    return jax.lax.reduce_precision(a, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def _std_normal_log_density(z: Array) -> Array:
    return -0.5 * (z**2 + _LOG_2PI).sum(-1)


class VAE(GenerativeModel):
    """Class-conditional VAE; ``class_log_probs`` is the IWAE bound with ``iwae_k`` samples."""

    likelihood_is_bound: ClassVar[bool] = True
    needs_validation: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        decoder: str = "auto",
        latent: int = 8,
        hidden: tuple[int, ...] = (128,),
        min_variance: float = 1e-3,
        steps: int = 400,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        eval_every: int = 25,
        iwae_k: int = 100,
        feature_kind: str | None = None,
    ):
        if decoder == "auto":
            decoder = "bernoulli" if feature_kind == "binary" else "gaussian"
        if decoder not in ("gaussian", "bernoulli"):
            raise ValueError(f"decoder must be 'auto', 'gaussian' or 'bernoulli', got {decoder!r}")
        if iwae_k < 1:
            raise ValueError(f"iwae_k must be at least 1, got {iwae_k}")
        self.decoder = decoder
        self.input_support = "real" if decoder == "gaussian" else "binary"
        self.min_variance = min_variance
        self.iwae_k = iwae_k
        self.dim, self.num_classes, self.latent = dim, num_classes, latent
        self._build_networks(tuple(hidden), rngs)
        if decoder == "gaussian":
            # softplus(0.5413) = 1: unit variance at initialisation.
            self.raw_variance = nnx.Param(jnp.full((dim,), 0.5413))
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))
        #: The key of the evaluation samples (raw uint32 key data, so the state stays numeric).
        self.eval_key = nnx.Variable(jax.random.key_data(rngs.params()))
        self.plan = Gradient(
            wrt=_NETWORKS,
            loss="neg_elbo",
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=eval_every,
            stochastic=True,
        )

    def _build_networks(self, hidden: tuple[int, ...], rngs: nnx.Rngs) -> None:
        """The encoder MLP on ``[x, onehot(c)]`` and the decoder MLP on ``[z, onehot(c)]``.

        Subclasses (``conv_vae``) build other networks; they keep ``encoder`` and
        ``decoder_net`` as the class-conditioned dense maps whose first layers' last C kernel
        rows are the one-hot rows (see ``_conditioned_mlp``), and override
        ``_encoder_features``, ``_decoder_means`` and ``_decoder_width`` to match."""
        self.encoder = _mlp((self.dim + self.num_classes, *hidden, 2 * self.latent), rngs)
        self.decoder_net = _mlp((self.latent + self.num_classes, *hidden[::-1], self.dim), rngs)

    def _encoder_features(self, x: Array) -> Array:
        """What the encoder's dense layers read from ``x`` ``[..., D]``: ``x`` itself here."""
        return x

    def _decoder_means(self, z: Array, class_rows: Array) -> Array:
        """The decoder's output ``m(z, c)`` ``[..., D]``: Gaussian means or Bernoulli logits."""
        return _conditioned_mlp(self.decoder_net, z, class_rows)

    def _decoder_width(self) -> int:
        """Floats of the decoder's widest activation for one (sample, example, class)."""
        return max([layer.out_features for layer in self.decoder_net] + [self.dim])

    def fit_plan(self):
        return (ClosedForm(), self.plan)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """Set only the class log-prior, from weighted class counts."""
        _, counts = class_counts(y, w, self.num_classes)
        self.set_class_prior(counts)

    def decoder_variance(self) -> Array:
        """Per-feature variance of the Gaussian decoder, ``[D]`` (at least ``min_variance``)."""
        return self.min_variance + jax.nn.softplus(self.raw_variance[...])

    def encode(self, x: Array, class_rows: Array) -> tuple[Array, Array]:
        """Mean and log-variance of ``q(z | x, c)``; ``class_rows`` as in ``_conditioned_mlp``."""
        out = _conditioned_mlp(self.encoder, self._encoder_features(x), class_rows)
        mu, log_var = jnp.split(out, 2, axis=-1)
        return mu, jnp.clip(log_var, -15.0, 10.0)

    def _encoder_rows(self) -> Array:
        return self.encoder[0].kernel[...][-self.num_classes :]

    def _decoder_rows(self) -> Array:
        return self.decoder_net[0].kernel[...][-self.num_classes :]

    def decoder_log_prob(self, x: Array, z: Array, class_rows: Array) -> Array:
        """``log p(x | z, c)``, summed over features (nats); broadcasts over leading axes."""
        out = _unfused(self._decoder_means(z, class_rows))
        if self.decoder == "bernoulli":
            return (x * out - jax.nn.softplus(out)).sum(-1)
        var = self.decoder_variance()
        # The normaliser is summed once: fused into the reduction, log(var) would be
        # recomputed for every element of the [K, B, C, D] evaluation.
        log_norm = -0.5 * (jnp.log(var) + _LOG_2PI).sum()
        return -0.5 * ((x - out) ** 2 * (1.0 / var)).sum(-1) + log_norm

    def neg_elbo(self, x: Array, y: Array, key: Array) -> Array:
        """Single-sample reparameterised negative ELBO per example, ``[B]`` nats.

        ``-log p(x | z, y) + KL(q(z | x, y) || N(0, I))`` with ``z = mu + sigma * eps``, one
        ``eps ~ N(0, I)`` per example and the KL term in closed form.
        """
        mu, log_var = self.encode(x, self._encoder_rows()[y])
        eps = jax.random.normal(key, mu.shape)
        z = mu + jnp.exp(0.5 * log_var) * eps
        kl = 0.5 * (jnp.exp(log_var) + mu**2 - 1.0 - log_var).sum(-1)
        return kl - self.decoder_log_prob(x, z, self._decoder_rows()[y])

    def class_log_bounds(self, x: Array, num_samples: int | None = None) -> tuple[Array, Array]:
        """IWAE bound and ELBO of ``log p(x | c)`` for every class, each ``[B, C]`` in nats.

        Both use the same ``num_samples`` (default ``iwae_k``) draws ``z_k ~ q(z | x, c)``,
        ``z_k = mu_c + sigma_c * eps_k`` with ``eps_k`` drawn from ``fold_in(eval_key, k)`` and
        shared by the classes: the IWAE bound is
        ``logsumexp_k log w_k - log K`` and the ELBO estimate ``mean_k log w_k``, with
        ``log w_k = log p(x | z_k, c) + log N(z_k; 0, I) - log q(z_k | x, c)``.
        """
        k_total = self.iwae_k if num_samples is None else num_samples
        batch = x.shape[0]
        x_b = x[:, None, :]  # [B, 1, D]
        mu, log_var = self.encode(x_b, self._encoder_rows()[None])  # [B, C, L]
        std = jnp.exp(0.5 * log_var)
        log_q_const = -0.5 * (log_var + _LOG_2PI).sum(-1)  # [B, C]
        dec_rows = self._decoder_rows()  # [C, H]
        key = jax.random.wrap_key_data(self.eval_key[...])

        def log_weight(k):
            # One standard-normal draw per example, shared by the classes (common random
            # numbers): each class's bound is still over K independent draws.
            eps = jax.random.normal(jax.random.fold_in(key, k), (batch, 1, self.latent))
            z = mu + std * eps
            log_q = log_q_const - 0.5 * (eps**2).sum(-1)
            return self.decoder_log_prob(x_b, z, dec_rows) + _std_normal_log_density(z) - log_q

        per_sample = batch * self.num_classes * self._decoder_width()
        chunk = _chunk_size(k_total, per_sample)

        def body(carry, ks):
            lse, total = carry
            logw = jax.vmap(log_weight)(ks)  # [chunk, B, C]
            return (jnp.logaddexp(lse, jax.nn.logsumexp(logw, axis=0)), total + logw.sum(0)), None

        init = (jnp.full(mu.shape[:2], -jnp.inf, x.dtype), jnp.zeros(mu.shape[:2], x.dtype))
        ks = jnp.arange(k_total, dtype=jnp.uint32).reshape(k_total // chunk, chunk)
        (lse, total), _ = jax.lax.scan(body, init, ks)
        return lse - math.log(k_total), total / k_total

    def class_log_probs(self, x: Array) -> Array:
        """IWAE lower bound on ``log p(x | c)`` with ``iwae_k`` samples, ``[B, C]`` nats."""
        return self.class_log_bounds(x)[0]

    def elbo_class_log_probs(self, x: Array) -> Array:
        """ELBO of ``log p(x | c)`` estimated from the same ``iwae_k`` samples, ``[B, C]``."""
        return self.class_log_bounds(x)[1]

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """``z ~ N(0, I)``, then ``x ~ p(x | z, y)``: mean plus Gaussian noise, or 0/1 draws."""
        k_z, k_x = jax.random.split(key)
        z = jax.random.normal(k_z, (n, self.latent))
        out = self._decoder_means(z, self._decoder_rows()[y])
        if self.decoder == "bernoulli":
            return jax.random.bernoulli(k_x, jax.nn.sigmoid(out)).astype(jnp.float32)
        return out + jnp.sqrt(self.decoder_variance()) * jax.random.normal(k_x, out.shape)


def _chunk_size(k_total: int, per_sample: int) -> int:
    """The largest divisor of ``k_total`` whose chunk fits ``_CHUNK_FLOATS`` (at least 1)."""
    limit = max(1, _CHUNK_FLOATS // max(per_sample, 1))
    return max(d for d in range(1, k_total + 1) if k_total % d == 0 and d <= limit)
