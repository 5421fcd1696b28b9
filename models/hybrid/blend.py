"""``hybrid``: Gaussian class-conditionals trained on a generative/discriminative blend.

The model is ``gnb_shared``'s: per-class means ``mu_c`` and per-feature variances ``v`` shared by
all classes, with a class prior ``pi``,

    p(x, y=c) = pi_c * prod_d N(x_d; mu_cd, v_d),

so ``log p(y | x)`` is linear in x (a softmax of ``x . (mu_c / v) + b_c``). Its parameters are
fitted by minimising, per training example, the blended negative log-likelihood

    loss_i = lam * (-log p(x_i, y_i)) + (1 - lam) * (-log p(y_i | x_i))      (nats)

(Bouchard & Triggs 2004, "The trade-off between generative and discriminative classifiers";
Lasserre, Bishop & Minka 2006, "Principled hybrids of generative and discriminative models",
who derive the same family of estimators from a coupled-prior view):

- ``lam = 1`` is maximum likelihood: the closed-form generative solution, ``gnb_shared``.
- ``lam = 0`` is maximum conditional likelihood. Any linear softmax classifier is reachable
  (weights ``mu_c / v``, intercepts through the class prior), so this is an unregularized,
  discriminatively trained linear classifier: logistic regression in another parameterization.
- In between, the generative term acts as a data-dependent regularizer of the discriminative
  fit. Where the model is right (features independent given the class, ``gauss_nb``) both ends
  agree and the generative end is more sample-efficient (Ng & Jordan 2001); where it is wrong
  (``gauss_corr``), the discriminative end has the better accuracy and conditional likelihood
  and the generative end the better joint likelihood ``log p(x)``. A ``lam`` sweep traces that
  trade-off. On the training subset it is monotone (for exact minimisers of
  ``lam * A + (1 - lam) * B``, ``A`` falls and ``B`` rises as ``lam`` grows): the conditional
  NLL falls and the joint NLL rises as ``lam`` goes from 1 to 0. Whether an intermediate
  ``lam`` beats both ends on *test* data depends on the task and the training size (Bouchard
  & Triggs report such cases at small sizes); that is what a sweep over sizes measures.

Scaling: ``log p(x, y)`` sums ``D`` per-feature terms while ``log p(y | x)`` is one term, so the
two are on different scales (``D`` nats against about one). The blend is used as the papers
define it, **not** normalised by ``D``: ``lam`` then means what it means in the cited work and
the endpoints are the exact generative and discriminative estimators whatever the scaling. The
consequence to keep in mind when sweeping: on ``D``-dimensional data the generative term
dominates unless ``lam`` is small (of order ``1 / D`` and below), so a sweep should be denser
near 0 (e.g. ``lam`` in 0, 0.01, 0.03, 0.1, 0.3, 1). The default, ``lam = 0.1``, is a genuine
blend on the low-dimensional tasks (on 8-d ``gauss_corr`` its accuracy lies between the two
ends); on 64-d digits it is already close to the generative end.

Fitting plan:

1. ``ClosedForm``: the generative MLE exactly as ``gnb_shared`` computes it: weighted class
   means, the pooled within-class variance per feature, the class frequencies; plus the same
   variance floor ``var_smoothing * max_d Var(x_d)`` (scikit-learn's ``var_smoothing``), here
   held fixed and added to a learned ``exp(log_var)``, so variances stay positive and bounded
   below during the gradient stage.
2. ``Gradient`` (``lam < 1`` only): AdamW on minibatches of the blended loss, over the means,
   the log variances and the class-prior logits (``log pi = log_softmax(prior_logits)``, free so
   that the discriminative end has free intercepts), starting from the MLE. Weight decay is 0
   by default: decay would pull the means and log variances towards 0, a bias the blended
   objective does not ask for. There is no validation model selection (``needs_validation`` is
   False): the blend itself is the estimator, and every ``lam`` fits the same examples, so the
   sweep compares objectives, not selection procedures.

   At ``lam = 1`` the gradient stage is left out: the closed form *is* the minimiser (the
   blended loss's gradient vanishes there; ``tests/test_jem_hybrid.py`` checks it), and
   minibatch AdamW would only jitter around it (Adam's normalized steps are about the learning
   rate even where the mean gradient is zero). ``hybrid?lam=1`` is therefore ``gnb_shared``.

It is a ``GenerativeModel`` (a normalized density ``log p(x | y)``, ``sample``), so the engine
reports its ``log_lik``; ``paradigm`` is ``hybrid``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import (
    Array,
    ClosedForm,
    FeatureKind,
    GenerativeModel,
    Gradient,
    Paradigm,
    class_counts,
    weighted_feature_variance,
)

_LOG_2PI = math.log(2.0 * math.pi)
#: Smallest class weight used in ``log`` (a class absent from a subset gets a finite logit).
_TINY = 1e-12


class BlendedGaussian(GenerativeModel):
    """Shared-variance Gaussian class-conditionals fitted on ``lam`` generative + ``1 - lam``
    discriminative negative log-likelihood.

    Hyperparameters:
      lam: weight of ``-log p(x, y)`` in [0, 1]; ``1 - lam`` weighs ``-log p(y | x)``.
      var_smoothing: variance floor ``var_smoothing * max_d Var(x_d)``, as ``gnb_shared``.
      learning_rate, weight_decay, steps, batch_size: the AdamW stage (``Gradient``).
    """

    paradigm: ClassVar[Paradigm] = "hybrid"
    input_support: ClassVar[FeatureKind] = "real"
    likelihood_is_bound: ClassVar[bool] = False
    needs_validation: ClassVar[bool] = False

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        lam: float = 0.1,
        var_smoothing: float = 1e-3,
        learning_rate: float = 1e-2,
        weight_decay: float = 0.0,
        steps: int = 1000,
        batch_size: int = 64,
    ):
        del rngs
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if var_smoothing < 0.0:
            raise ValueError(f"var_smoothing must be >= 0, got {var_smoothing}")
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
        self.lam = float(lam)
        self.var_smoothing = var_smoothing
        self.num_classes = num_classes
        self.mean = nnx.Param(jnp.zeros((num_classes, dim)))
        self.log_var = nnx.Param(jnp.zeros((dim,)))
        self.prior_logits = nnx.Param(jnp.zeros((num_classes,)))
        # Set in closed form, never trained: the variance floor (standardized units).
        self.var_floor = nnx.Variable(jnp.zeros(()))
        self.plan = Gradient(
            loss="blended_loss",
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=steps,
            select_on_val=False,
        )

    def fit_plan(self):
        if self.lam == 1.0:
            return (ClosedForm(),)
        return (ClosedForm(), self.plan)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """The generative MLE of the weighted subset (``gnb_shared``'s closed form)."""
        onehot, counts = class_counts(y, w, self.num_classes)
        mean = onehot.T @ x / jnp.maximum(counts, _TINY)[:, None]
        scatter = (w[:, None] * (x - mean[y]) ** 2).sum(0)
        pooled = scatter / jnp.maximum(counts.sum(), _TINY)
        floor = self.var_smoothing * weighted_feature_variance(x, w).max()
        self.mean[...] = mean
        # var = floor + exp(log_var) = pooled + floor; a feature constant in the subset
        # (pooled = 0) keeps a finite log_var and the variance floor.
        self.log_var[...] = jnp.log(jnp.maximum(pooled, _TINY))
        self.var_floor[...] = floor
        self.prior_logits[...] = jnp.log(jnp.maximum(counts, _TINY) / counts.sum())

    @property
    def variance(self) -> Array:
        """The shared per-feature variances ``v``, ``[D]`` (standardized units)."""
        return self.var_floor[...] + jnp.exp(self.log_var[...])

    def log_prior(self) -> Array:
        """``log p(y=c)``, ``[C]``: ``log_softmax`` of the prior logits."""
        return jax.nn.log_softmax(self.prior_logits[...])

    def class_log_probs(self, x: Array) -> Array:
        """``log p(x | y=c)``, ``[B, C]`` nats, summed over the ``D`` features."""
        mean, var = self.mean[...], self.variance
        sq = (x[:, None, :] - mean[None]) ** 2 / var
        return -0.5 * (sq + jnp.log(var) + _LOG_2PI).sum(-1)

    def marginal_logits(self, x: Array, mask: Array) -> Array:
        """``log p(x_obs, y=c)``, ``[B, C]`` nats: the missing features (``mask`` 0; 1 =
        observed, ``[B, D]``) integrated out, which for these independent Gaussian features
        drops their terms. All ones gives ``predict_logits``."""
        mean, var = self.mean[...], self.variance
        sq = (x[:, None, :] - mean[None]) ** 2 / var
        terms = jnp.where(mask[:, None, :] > 0, sq + jnp.log(var) + _LOG_2PI, 0.0)
        return -0.5 * terms.sum(-1) + self.log_prior()[None, :]

    def blended_loss(self, x: Array, y: Array) -> Array:
        """Per-example ``lam * (-log p(x, y)) + (1 - lam) * (-log p(y | x))``, ``[B]`` nats."""
        joint = self.predict_logits(x)
        log_joint = jnp.take_along_axis(joint, y[:, None], axis=-1)[:, 0]
        log_cond = log_joint - jax.nn.logsumexp(joint, axis=-1)
        return -(self.lam * log_joint + (1.0 - self.lam) * log_cond)

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        mean = self.mean[...][y]
        std = jnp.sqrt(self.variance)
        return mean + std * jax.random.normal(key, (n, mean.shape[-1]))
