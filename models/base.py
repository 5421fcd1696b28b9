"""The model protocol shared by every gdbench model.

A model is a Flax NNX module. It never owns a training loop: it declares *how* its parameters are
obtained (``fit_plan``), as a sequence of stages the engine (``gdbench.fit``) runs inside one
jit-compiled, vmapped program:

- ``ClosedForm``: the model computes its parameters from weighted sufficient statistics in one
  pass (``estimate(x, y, w)``), e.g. naive Bayes, LDA, QDA.
- ``Newton``: the engine minimises ``sum_i w_i * loss_i + penalty()`` over the variables selected
  by ``wrt`` with a fixed number of damped Newton steps (convex models: logistic regression,
  squared-hinge SVM, Platt scaling).
- ``Gradient``: the engine runs optax (AdamW) on minibatches inside ``lax.scan``, optionally
  keeping the parameters with the best validation loss (neural models).
- ``Iterate``: the engine scans a model-defined update (an EM step) a fixed number of times.
- ``Adversarial``: the engine alternates discriminator and generator AdamW updates inside
  ``lax.scan`` (GANs), recording traces of model-defined diagnostics as it goes.

Every example weight ``w`` is over the whole training pool: 1 marks an example of the cell's
training subset, 0 one outside it, so that one program serves every (size, seed) cell.

Classification always goes through ``predict_logits(x) -> [B, C]``. For generative models this
is the log joint ``log p(x, y=c)``; the engine turns logits into probabilities with
``log_softmax`` for both families alike (Bayes' rule for the generative ones).

Beyond that required protocol (``Model``), each optional ability is a typed protocol of its own
(``Sampler``, ``Density``, ``MarginalizesMissing``, ``ImageInput``): a model has the ability when
its class implements the protocol, and ``gdbench.models.registry.check_protocol`` rejects a
class at spec time, in one line naming what is missing, when it implements one only in part.
``gdbench.abilities`` is where the engine asks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
Paradigm = Literal["discriminative", "generative", "hybrid"]
FeatureKind = Literal["real", "binary", "integer"]


@dataclasses.dataclass(frozen=True)
class ClosedForm:
    """Parameters come from ``model.estimate(x, y, w)`` in one pass over the data."""

    split: Literal["train", "val"] = "train"


@dataclasses.dataclass(frozen=True)
class Newton:
    """Damped Newton on ``sum_i w_i loss_i + penalty`` (convex objectives).

    Attributes:
      wrt: an NNX filter selecting the variables to optimise (the rest stay fixed).
      loss: name of the model method ``(x, y) -> [B]`` giving per-example losses.
      penalty: name of the model method ``() -> scalar`` added once to the objective, or None.
      split: which examples of the cell enter the objective: its training part or its
        validation part.
      steps: the most Newton iterations a cell takes (``rtol > 0``), or with ``rtol = 0``
        the fixed number every cell takes (a ``lax.scan``).
      tol: 0 (default) or a stop on the parameters' movement: a cell stops after a step that
        moved no parameter by more than ``tol`` times ``1 + max |parameter|`` (fixed damping,
        the older rule; a speed option, not a convergence test).
      linear_scores: for generalized linear models, the names ``(weight, bias)`` of the two
        optimised variables through which alone the loss depends on them, via scores
        ``x @ weight + bias``; the model then also provides ``score_loss(scores, y) -> [B]``.
        The engine uses this structure to form the exact Hessian in Kronecker form, about ten
        times cheaper than generic autodiff. None: generic ``jax.hessian``.
      method: ``"newton"`` (damped Newton steps), ``"lbfgs"`` (generalized linear models
        with coupled outputs only: L-BFGS with scores and gradients as matrix products with
        the data, then Newton steps until the exact test holds; ``gdbench.fit._linear_lbfgs``)
        or ``"auto"`` (L-BFGS for coupled outputs, Newton otherwise:
        ``gdbench.fit.resolve_method`` says why).
      lbfgs_steps: the most L-BFGS passes a cell takes (iterations and rejected line-search
        trials, one per pass).
      memory: L-BFGS correction pairs kept.
      rtol: the convergence test, reported per cell (``converged``): at the final parameters
        the decrement ``-g . d`` of the Newton direction is at most ``rtol |objective|``
        (near the optimum twice the gap to it). On the linear path (``linear_scores``) each
        cell iterates until the test holds, then takes one more step, at most ``steps``
        steps (factorizations). A model with ``CurvatureBound`` also has the point each step
        reaches tested by a bound from the factorization the step came from, and stops there
        when it holds, with one more step by the same factor (a chord step): one Hessian
        formed and factorized fewer per cell. The damping of ``H + lambda I`` starts at
        ``1e-6 (1 + tr H / P)`` and rises 100-fold after a factorization that failed in
        float32 (Levenberg-Marquardt).
        Elsewhere Newton takes its ``steps`` and is then tested.
      lbfgs_rtol: L-BFGS's own stop (the same test on its quasi-Newton direction, which
        underestimates the gap; the Newton steps after it certify the result). With the
        exact tests 1e-6 took twice the iterations and saved one Newton step in three: no
        faster overall; with ``CurvatureBound`` a tighter L-BFGS lets one factorization
        certify the cell (``logreg`` passes 1e-5; 3e-7 when no Newton steps follow).
      polish_steps: the most Newton steps after L-BFGS; 0: none, and L-BFGS's own test
        (``lbfgs_rtol``) is the result's (``converged``): no certificate, but no Hessian
        formed (``logreg`` above 256 parameters, tested against the float64 optimum).
      separable_outputs: with ``linear_scores``, the loss is a sum over the outputs of a loss of
        that output's score alone (one-vs-rest) and the penalty a sum over the outputs too:
        the Hessian is then block diagonal, one ``[D+1, D+1]`` block per output, and each
        Newton step solves the outputs' systems apart (the same step: the inverse of a block
        diagonal matrix is the blocks' inverses), with ``K`` times fewer operations for the
        Hessian and ``K^2`` times fewer for its factorization.
    """

    wrt: Any = nnx.Param
    loss: str = "loss"
    penalty: str | None = "penalty"
    split: Literal["train", "val"] = "train"
    steps: int = 25
    tol: float = 0.0
    linear_scores: tuple[str, str] | None = None
    separable_outputs: bool = False
    method: Literal["auto", "newton", "lbfgs"] = "auto"
    lbfgs_steps: int = 2000
    memory: int = 10
    rtol: float = 1e-6
    lbfgs_rtol: float = 1e-4
    polish_steps: int = 10


@dataclasses.dataclass(frozen=True)
class Gradient:
    """Minibatch AdamW inside ``lax.scan``.

    Attributes:
      wrt: NNX filter of the trained variables.
      loss: model method ``(x, y) -> [B]`` of per-example losses (the batch mean is minimised).
      steps: optimiser steps (a multiple of ``eval_every``).
      batch_size: examples per step, drawn with replacement from the cell's training part.
      learning_rate, weight_decay: AdamW settings.
      eval_every: steps between validation evaluations.
      select_on_val: keep the parameters with the lowest validation loss (early stopping by
        model selection); without a validation part the last parameters are kept.
    """

    wrt: Any = nnx.Param
    loss: str = "loss"
    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    eval_every: int = 25
    select_on_val: bool = True
    #: When True the loss is called as ``loss(x, y, key)`` with a fresh PRNG key for every
    #: minibatch (and a fixed one for the validation loss), e.g. a VAE's reparameterised ELBO.
    stochastic: bool = False


@dataclasses.dataclass(frozen=True)
class Iterate:
    """A model-defined fixed-point iteration run by the engine (e.g. EM for mixtures).

    The engine calls ``model.<init>(x, y, w, key)`` once, then ``model.<step>(x, y, w)``
    ``steps`` times inside ``lax.scan``; both update the model's variables in place.
    """

    init: str = "em_init"
    step: str = "em_step"
    steps: int = 100
    split: Literal["train", "val"] = "train"


@dataclasses.dataclass(frozen=True)
class Adversarial:
    """Alternating discriminator / generator AdamW updates inside ``lax.scan`` (GAN training).

    One iteration makes ``d_steps`` discriminator updates, then one generator update, each on
    its own minibatch of ``batch_size`` examples drawn with replacement from the cell's
    training part (as ``Gradient`` draws them). The engine runs ``steps`` iterations (a
    multiple of ``trace_every``) and returns traces, one point every ``trace_every``
    iterations (``T = steps // trace_every`` points): the entries of
    ``model.<trace_method>(x_eval, y_eval, key)`` on a fixed evaluation batch of
    ``trace_batch`` training examples (drawn once) with a fresh key at each point, each as an
    array ``[T]``, plus ``trace_step`` (``[T]`` int32, iterations done) and ``trace_samples``
    (``[T, C, samples_per_class, D]``: ``model.<sample_method>(key_c, c, samples_per_class)``
    for every class c with the same keys at every point, so the same latent draws are seen
    to evolve; in the model's input units). See ``gdbench.fit.adversarial``.

    Attributes:
      d_wrt, g_wrt: disjoint NNX filters of the discriminator's and the generator's trained
        variables (every other variable stays fixed).
      d_loss, g_loss: model methods ``(x_real, y_real, key) -> scalar``, the minibatch losses
        of the discriminator and of the generator (each minimised over its own variables).
      steps: generator updates (iterations), a multiple of ``trace_every``.
      batch_size: real examples per update.
      d_learning_rate, g_learning_rate: AdamW step sizes (0 freezes that network).
      b1, b2: Adam moment decay rates; (0.5, 0.999) is the usual GAN setting (Radford et al.
        2016), a shorter first-moment memory for a moving objective.
      weight_decay: AdamW decoupled weight decay (both networks).
      d_steps: discriminator updates per generator update.
      trace_every: iterations between trace points.
      trace_method: model method ``(x_real, y_real, key) -> dict[str, scalar]`` giving the
        diagnostics at a trace point.
      trace_batch: size of the fixed evaluation batch of real training examples.
      sample_method: model method ``(key, y, n) -> [n, D]`` drawing samples of class ``y``.
      samples_per_class: samples per class recorded at each trace point.
    """

    d_wrt: Any = nnx.PathContains("discriminator")
    g_wrt: Any = nnx.PathContains("generator")
    d_loss: str = "d_loss"
    g_loss: str = "g_loss"
    steps: int = 1000
    batch_size: int = 64
    d_learning_rate: float = 2e-4
    g_learning_rate: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    weight_decay: float = 0.0
    d_steps: int = 1
    trace_every: int = 100
    trace_method: str = "trace"
    trace_batch: int = 256
    sample_method: str = "sample"
    samples_per_class: int = 4

    def __post_init__(self):
        for name in ("steps", "batch_size", "d_steps", "trace_every", "trace_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps % self.trace_every:
            raise ValueError(
                f"steps ({self.steps}) must be a multiple of trace_every ({self.trace_every})"
            )
        if self.samples_per_class < 0:
            raise ValueError(f"samples_per_class must be >= 0, got {self.samples_per_class}")
        if self.d_learning_rate < 0 or self.g_learning_rate < 0 or self.weight_decay < 0:
            raise ValueError("learning rates and weight_decay must be >= 0")


Stage = ClosedForm | Newton | Gradient | Iterate | Adversarial


class Model(nnx.Module):
    """Base class of every gdbench model.

    Subclasses set ``paradigm`` and implement ``predict_logits`` and ``fit_plan``. Their
    constructor takes ``(dim, num_classes, *, rngs, **hyperparameters)``.
    """

    paradigm: ClassVar[Paradigm]
    #: True when the model holds out part of each cell's training subset for model selection or
    #: calibration (the engine then carves a validation part; see ``gdbench.plan``).
    needs_validation: ClassVar[bool] = False
    #: How the model turns scores into class probabilities, recorded with the results.
    calibration: ClassVar[str] = "native"
    #: Float hyperparameters that enter the fit only through arithmetic on arrays (no Python
    #: branch on their value, e.g. ``logreg``'s ``C``). The engine passes them to a grid's
    #: programs as arguments, so models that differ only in them share one compiled program;
    #: the constructor then receives a traced scalar for each inside the program (and a
    #: Python float everywhere else).
    traced_hyperparameters: ClassVar[tuple[str, ...]] = ()

    def predict_logits(self, x: Array) -> Array:
        """Unnormalised class log-probabilities, ``[B, C]``."""
        raise NotImplementedError

    def fit_plan(self) -> tuple[Stage, ...]:
        """The stages the engine runs, in order, to fit this model."""
        raise NotImplementedError

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """Closed-form fit from weighted data (only for models with a ``ClosedForm`` stage)."""
        raise NotImplementedError


class ClassPrior:
    """Mixin for models with a class prior p(y) held in a ``log_class_prior`` variable ``[C]``,
    set from the training subset's weighted class frequencies in a ``ClosedForm`` stage: the
    generative models, and the hybrids that sample labels from it (``gan``, ``jem``)."""

    def log_prior(self) -> Array:
        """``log p(y=c)``, ``[C]``: by default the ``log_class_prior`` variable that
        ``set_class_prior`` fills from the training subset's class frequencies."""
        return self.log_class_prior[...]

    def set_class_prior(self, counts: Array) -> None:
        """Set ``log_class_prior`` to the log of the weighted class frequencies ``counts``."""
        self.log_class_prior[...] = jnp.log(counts / counts.sum())


class GenerativeModel(ClassPrior, Model):
    """A class-conditional density model p(x|y) p(y) that classifies by Bayes' rule.

    Subclasses implement ``class_log_probs`` (or ``log_prob``); ``log_prior`` comes from the
    class frequencies (``ClassPrior``). A subclass that draws data also implements ``sample``
    (``Sampler``); one that does not is still a density and a classifier, without the
    sample-quality columns.
    """

    paradigm: ClassVar[Paradigm] = "generative"
    #: False when ``log_prob`` is exact, True when it is a lower bound (ELBO, IWAE).
    likelihood_is_bound: ClassVar[bool] = False
    #: The support the density is defined on. The engine reports log p(x) only on tasks whose
    #: features are of this kind (a Gaussian density of 0/1 data is not a likelihood of it).
    #: A model whose support depends on a hyperparameter overrides it per instance.
    input_support: FeatureKind = "real"

    def class_log_probs(self, x: Array) -> Array:
        """``log p(x | y=c)`` for every class, ``[B, C]`` (nats, summed over features)."""
        num_classes = self.log_prior().shape[0]
        per_class = [self.log_prob(x, jnp.full(x.shape[:1], c)) for c in range(num_classes)]
        return jnp.stack(per_class, axis=-1)

    def log_prob(self, x: Array, y: Array) -> Array:
        """``log p(x | y)``, ``[B]`` in nats, summed over the event dimensions."""
        lp = self.class_log_probs(x)
        return jnp.take_along_axis(lp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]

    def predict_logits(self, x: Array) -> Array:
        """The log joint ``log p(x, y=c)``, ``[B, C]``: Bayes' rule up to normalisation."""
        return self.class_log_probs(x) + self.log_prior()[None, :]

    def log_marginal(self, x: Array) -> Array:
        """``log p(x) = logsumexp_c log p(x, c)``, ``[B]`` in nats."""
        return jax.nn.logsumexp(self.predict_logits(x), axis=-1)


def class_counts(y: Array, w: Array, num_classes: int) -> tuple[Array, Array]:
    """Weighted one-hot labels ``[N, C]`` and per-class weight totals ``[C]``."""
    onehot = jax.nn.one_hot(y, num_classes, dtype=w.dtype) * w[:, None]
    return onehot, onehot.sum(axis=0)


def weighted_feature_variance(x: Array, w: Array) -> Array:
    """Per-feature variance of the weighted sample ``[D]`` (normalised by the weight total)."""
    total = jnp.maximum(w.sum(), 1.0)
    mean = (w[:, None] * x).sum(0) / total
    return (w[:, None] * (x - mean) ** 2).sum(0) / total


# Optional abilities: typed protocols a model class implements, or not.


@runtime_checkable
class Sampler(Protocol):
    """Draws new data of a class: the report shows the samples, and on tasks whose features the
    model's density covers (or for a hybrid with a sampler of its own) the engine scores them
    (``fd``, ``classifier_score``, ``precision``, ``recall``, ``cas``)."""

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """``n`` draws from ``p(x | y)``, ``[n, D]``, in the model's input space."""
        ...


@runtime_checkable
class Density(Protocol):
    """A joint likelihood: ``predict_logits`` is ``log p(x, y=c)``, so that ``logsumexp`` over
    the classes is ``log p(x)`` (the ``log_lik`` column, on tasks whose features are of the
    model's ``input_support``). Required of paradigm ``"generative"``. ``likelihood_is_bound``
    (optional, default False) says ``log_prob`` is a lower bound (ELBO, IWAE), not exact."""

    def log_prob(self, x: Array, y: Array) -> Array:
        """``log p(x | y)``, ``[B]`` nats."""
        ...

    def log_prior(self) -> Array:
        """``log p(y=c)``, ``[C]``."""
        ...


@runtime_checkable
class MarginalizesMissing(Protocol):
    """Classifies with features missing by marginalizing them out (the robustness columns'
    ``missing_method="marginalize"``); models without it get the training mean imputed."""

    def marginal_logits(self, x: Array, mask: Array) -> Array:
        """``log p(x_obs, y=c)``, ``[B, C]``; ``mask`` ``[B, D]`` is 1 where observed."""
        ...


@runtime_checkable
class ImageInput(Protocol):
    """Needs its input as images (``needs_image = True``: the engine passes ``task.image_shape``
    to the constructor as ``image_shape`` and refuses tasks without one at spec time)."""

    needs_image: bool


@runtime_checkable
class CurvatureBound(Protocol):
    """A solver hint for ``Newton(linear_scores=...)``: how far the curvature of
    ``score_loss`` can fall when the scores move, and a quadratic penalty (constant Hessian).

    With it the Newton loop certifies the point a step reached from the factorization it
    already has, instead of forming and factorizing the Hessian there: the Hessian at
    ``theta + d`` is at least ``exp(-R)`` times the one at ``theta`` (``R`` the largest
    ``score_curvature_drop`` over the training examples; the penalty's part does not change),
    so the decrement there is at most ``exp(R) g^T (H + lambda I)^{-1} g`` with the old factor
    (``gdbench.fit._linear_newton``). Without it each test forms its own Hessian."""

    def score_curvature_drop(self, delta: Array) -> Array:
        """``c_i >= 0`` such that the Hessian of ``score_loss`` in the scores at ``s_i +
        delta_i`` is at least ``exp(-c_i)`` times the one at ``s_i`` (Loewner order), for any
        ``s_i``; ``delta`` ``[B, K]`` -> ``[B]``."""
        ...


#: The optional abilities by the name errors and docs use.
ABILITIES: dict[str, type] = {
    "sampling": Sampler,
    "density": Density,
    "missing features": MarginalizesMissing,
    "image input": ImageInput,
}


def ability_members(protocol: type) -> tuple[str, ...]:
    """The members a class must have to implement ``protocol`` (its methods and attributes)."""
    names = [*getattr(protocol, "__annotations__", {})]
    names += [k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")]
    return tuple(dict.fromkeys(names))


def has_ability(model: Any, protocol: type) -> bool:
    """Whether ``model`` (an instance or a class) implements ``protocol``: every member defined,
    methods callable; ``ImageInput`` also asks ``needs_image`` to be true."""
    for name in ability_members(protocol):
        value = getattr(model, name, None)
        if value is None or (name in vars(protocol) and not callable(value)):
            return False
    if protocol is ImageInput:
        return bool(model.needs_image)
    return True
