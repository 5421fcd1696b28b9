"""``gan``: a class-conditional generative adversarial network that classifies with its critic.

A generator ``G(z, y)`` maps latent noise ``z ~ N(0, I_latent)`` and a class label to a point
in the task's (standardized) input space; a discriminator tells real examples from generated
ones (Goodfellow et al. 2014, "Generative adversarial nets"). Both are MLPs:

- generator: ReLU MLP on ``[z, onehot(y)]`` (``hidden`` layers), linear output of ``D``
  features (conditioning by concatenation, Mirza & Osindero 2014);
- discriminator: a LeakyReLU(0.2) MLP trunk ``h(x)`` (``hidden`` layers) with two heads:
  a projection-conditioned real/fake score ``psi(h) + <embed(y), h>`` (Miyato & Koyama 2018,
  "cGANs with projection discriminator") and an auxiliary classifier giving ``C`` class logits
  (AC-GAN, Odena et al. 2017, "Conditional image synthesis with auxiliary classifier GANs").

**Why a hybrid.** The GAN has no likelihood (no ``log_prob``; it is not a
``GenerativeModel``): it classifies through its discriminator, ``predict_logits(x)`` being the
auxiliary class head. That head is trained discriminatively on the real data, while sharing
its trunk with a critic trained against a generator of the classes' data: a discriminative
classifier shaped by a generative model.

**Objective** (``loss``). ``"ns"`` (default): the non-saturating loss of Goodfellow et al.
(2014), ``D: softplus(-s(x_real)) + softplus(s(x_fake))``, ``G: softplus(-s(x_fake))``, i.e.
binary cross-entropy with the generator maximising ``log D(G(z))``. It gives the generator
strong gradients early, when its samples are easily rejected, and is the stable choice for
small, unnormalised MLP GANs. ``"hinge"``: the hinge loss of Miyato et al. (2018, "Spectral
normalization for GANs"), ``D: relu(1 - s_real) + relu(1 + s_fake)``, ``G: -s_fake``. Then

- discriminator loss = adversarial loss + ``class_weight`` x class cross-entropy on the real
  minibatch + ``r1 / 2`` x the R1 penalty ``E_real ||grad_x s(x, y)||^2`` (Mescheder et al.
  2018, "Which training methods for GANs do actually converge?"), which damps the
  oscillation of the two players around the equilibrium: without it the generator's class
  means wander by a good fraction of a standard deviation on 8-d Gaussian data;
- generator loss = adversarial loss on fakes + ``aux_weight`` x cross-entropy of the class
  head on the fakes with their conditioning labels (the AC-GAN term). It makes the fakes
  recognisable by class, but it also pulls them away from the class boundary (AC-GAN learns
  a biased distribution: Shu et al. 2017; Gong et al. 2019, "Twin auxiliary classifiers
  GAN"). Measured here (1500 steps): on ``gauss_nb`` weight 1 moved each class mean about
  0.2 standard deviations away from the other class, and on a 2-d task with overlapping
  classes weight 0.1 shrank the fakes' spread along the class-separating direction to
  0.3-0.6 of the data's, where weight 0 matched it (0.8-1.1) and the class means (within
  0.05). The default is therefore 0: the projection head conditions the generator without
  that bias; set ``aux_weight`` for the AC-GAN objective proper.

Fake labels are drawn from the class prior ``p(y)``, which a first ``ClosedForm`` stage sets
from the training subset's weighted class counts (``log_class_prior``). The engine
(``gdbench.fit.adversarial``) then alternates AdamW updates of the two networks (Adam betas
(0.5, 0.999), Radford et al. 2016) inside ``lax.scan`` and records traces of ``trace``: losses
and the discriminator's real/fake accuracies on a fixed batch of training data and fresh fakes.
The discriminator calls a point real when its score is positive (both losses put the decision
there); near the adversarial equilibrium both accuracies approach 1/2.

Scores and samples are in the model's input units (the engine's standardized features).
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Adversarial, Array, ClassPrior, ClosedForm, Model, class_counts

LOSSES = ("ns", "hinge")
#: Trained variables of each network (the class prior, outside both, is set in closed form).
DISCRIMINATOR = nnx.All(nnx.Param, nnx.PathContains("discriminator"))
GENERATOR = nnx.All(nnx.Param, nnx.PathContains("generator"))


def _cross_entropy(logits: Array, y: Array) -> Array:
    """Per-example ``-log softmax(logits)[y]``, ``[B]`` nats."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]


class Generator(nnx.Module):
    """``G(z, y)``: a ReLU MLP on ``[z, onehot(y)]`` with a linear output of ``dim`` features."""

    def __init__(
        self, latent: int, num_classes: int, hidden: tuple[int, ...], dim: int, *, rngs: nnx.Rngs
    ):
        sizes = (latent + num_classes, *hidden, dim)
        self.num_classes = num_classes
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, z: Array, y: Array) -> Array:
        h = jnp.concatenate([z, jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)], axis=-1)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


class Discriminator(nnx.Module):
    """LeakyReLU trunk ``h(x)``, projection real/fake head and auxiliary class head.

    With ``hidden=()`` the trunk is the identity (``h = x``): both heads are then linear.
    """

    def __init__(self, dim: int, num_classes: int, hidden: tuple[int, ...], *, rngs: nnx.Rngs):
        sizes = (dim, *hidden)
        width = sizes[-1]
        self.trunk = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.psi = nnx.Linear(width, 1, rngs=rngs)
        self.embed = nnx.Embed(num_classes, width, rngs=rngs)
        self.classes = nnx.Linear(width, num_classes, rngs=rngs)

    def features(self, x: Array) -> Array:
        """The trunk's features ``h(x)``, ``[B, H]``."""
        for layer in self.trunk:
            x = jax.nn.leaky_relu(layer(x), 0.2)
        return x

    def score(self, h: Array, y: Array) -> Array:
        """Real/fake score ``psi(h) + <embed(y), h>``, ``[B]`` (positive: "real")."""
        return self.psi(h)[:, 0] + (self.embed(y) * h).sum(-1)

    def class_logits(self, h: Array) -> Array:
        """Auxiliary class logits, ``[B, C]``."""
        return self.classes(h)


class GAN(ClassPrior, Model):
    """Class-conditional GAN (projection discriminator + auxiliary classifier).

    Args:
      dim, num_classes: the task's feature count D and class count C.
      loss: ``"ns"`` (non-saturating, default) or ``"hinge"``.
      latent: dimension of the generator's noise ``z``.
      hidden: hidden widths of both networks (the generator's and the discriminator's trunk).
      class_weight: weight of the discriminator's class cross-entropy on real data.
      aux_weight: weight of the generator's AC-GAN term (class cross-entropy of its fakes).
      r1: weight ``gamma`` of the R1 penalty ``gamma / 2 E ||grad_x s(x, y)||^2`` on real data.
      steps, batch_size, d_learning_rate, g_learning_rate, d_steps, weight_decay: the
        ``Adversarial`` stage (``steps`` generator updates, ``d_steps`` discriminator updates
        before each).
      trace_every: iterations between trace points (``steps`` must be a multiple of it).
    """

    paradigm = "hybrid"
    calibration: ClassVar[str] = "native (auxiliary class head of the discriminator)"

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        loss: str = "ns",
        latent: int = 16,
        hidden: tuple[int, ...] = (64, 64),
        class_weight: float = 1.0,
        aux_weight: float = 0.0,
        r1: float = 1.0,
        steps: int = 1500,
        batch_size: int = 64,
        d_learning_rate: float = 2e-4,
        g_learning_rate: float = 2e-4,
        d_steps: int = 1,
        weight_decay: float = 0.0,
        trace_every: int = 100,
    ):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if latent < 1:
            raise ValueError(f"latent must be at least 1, got {latent}")
        if class_weight < 0:
            raise ValueError(f"class_weight must be >= 0, got {class_weight}")
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        if r1 < 0:
            raise ValueError(f"r1 must be >= 0, got {r1}")
        self.loss_kind = loss
        self.dim, self.num_classes, self.latent = dim, num_classes, latent
        self.class_weight = class_weight
        self.r1 = r1
        self.aux_weight = aux_weight
        self.generator = Generator(latent, num_classes, tuple(hidden), dim, rngs=rngs)
        self.discriminator = Discriminator(dim, num_classes, tuple(hidden), rngs=rngs)
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))
        self.plan = Adversarial(
            d_wrt=DISCRIMINATOR,
            g_wrt=GENERATOR,
            steps=steps,
            batch_size=batch_size,
            d_learning_rate=d_learning_rate,
            g_learning_rate=g_learning_rate,
            d_steps=d_steps,
            weight_decay=weight_decay,
            trace_every=trace_every,
        )

    def fit_plan(self):
        return (ClosedForm(), self.plan)

    def estimate(self, x: Array, y: Array, w: Array) -> None:
        """Set only the class log-prior, from the weighted class counts."""
        _, counts = class_counts(y, w, self.num_classes)
        self.set_class_prior(counts)  # the prior the fake labels are drawn from

    def predict_logits(self, x: Array) -> Array:
        """The discriminator's auxiliary class logits, ``[B, C]``."""
        disc = self.discriminator
        return disc.class_logits(disc.features(x))

    def sample(self, key: Array, y: int | Array, n: int) -> Array:
        """``n`` draws ``G(z, y)``, ``z ~ N(0, I)``, ``[n, D]`` (``y`` an int or traced int)."""
        z = jax.random.normal(key, (n, self.latent))
        return self.generator(z, jnp.full((n,), y, dtype=jnp.int32))

    def fakes(self, key: Array, n: int) -> tuple[Array, Array]:
        """``n`` generated examples with labels drawn from the class prior: ``[n, D]``, ``[n]``."""
        k_y, k_z = jax.random.split(key)
        y = jax.random.categorical(k_y, self.log_prior(), shape=(n,)).astype(jnp.int32)
        z = jax.random.normal(k_z, (n, self.latent))
        return self.generator(z, y), y

    def _adversarial_d(self, real: Array, fake: Array) -> Array:
        if self.loss_kind == "hinge":
            return jax.nn.relu(1.0 - real).mean() + jax.nn.relu(1.0 + fake).mean()
        return jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean()

    def _adversarial_g(self, fake: Array) -> Array:
        if self.loss_kind == "hinge":
            return -fake.mean()
        return jax.nn.softplus(-fake).mean()

    def _terms(self, x: Array, y: Array, key: Array) -> dict[str, Array]:
        """Scores, class logits and labels of a real batch and ``len(x)`` fresh fakes."""
        x_fake, y_fake = self.fakes(key, x.shape[0])
        disc = self.discriminator
        h_fake = disc.features(x_fake)

        def real_scores(xr):
            h = disc.features(xr)
            s = disc.score(h, y)
            return s.sum(), (s, h)

        # Each score depends on its own example only, so the gradient of their sum holds every
        # example's input gradient (the R1 penalty's).
        grad_x, (real, h_real) = jax.grad(real_scores, has_aux=True)(x)
        return {
            "real": real,
            "r1": (grad_x**2).sum(-1).mean(),
            "fake": disc.score(h_fake, y_fake),
            "logits_real": disc.class_logits(h_real),
            "logits_fake": disc.class_logits(h_fake),
            "y_fake": y_fake,
        }

    def _losses(self, t: dict[str, Array], y: Array) -> tuple[Array, Array]:
        """(discriminator loss, generator loss) from ``_terms`` of a batch with labels ``y``."""
        d = self._adversarial_d(t["real"], t["fake"]) + 0.5 * self.r1 * t["r1"]
        d = d + self.class_weight * _cross_entropy(t["logits_real"], y).mean()
        g = self._adversarial_g(t["fake"])
        g = g + self.aux_weight * _cross_entropy(t["logits_fake"], t["y_fake"]).mean()
        return d, g

    def d_loss(self, x: Array, y: Array, key: Array) -> Array:
        """Discriminator loss on a real minibatch and as many fakes, scalar."""
        return self._losses(self._terms(x, y, key), y)[0]

    def g_loss(self, x: Array, y: Array, key: Array) -> Array:
        """Generator loss on ``len(x)`` fakes, scalar (the real batch only sets their number;
        computations the loss does not depend on are removed by XLA)."""
        return self._losses(self._terms(x, y, key), y)[1]

    def trace(self, x: Array, y: Array, key: Array) -> dict[str, Array]:
        """Diagnostics on a real batch and as many fresh fakes (labels from the prior).

        ``d_loss``, ``g_loss``: the two losses; ``d_acc_real``, ``d_acc_fake``: fractions of
        real examples scored real (> 0) and of fakes scored fake (< 0); ``class_acc_real``:
        the class head's accuracy on the real batch; ``class_acc_fake``: its accuracy on the
        fakes against their conditioning labels (how recognisably G draws each class).
        """
        t = self._terms(x, y, key)
        d, g = self._losses(t, y)
        return {
            "d_loss": d,
            "g_loss": g,
            "d_acc_real": (t["real"] > 0).mean(),
            "d_acc_fake": (t["fake"] < 0).mean(),
            "class_acc_real": (t["logits_real"].argmax(-1) == y).mean(),
            "class_acc_fake": (t["logits_fake"].argmax(-1) == t["y_fake"]).mean(),
        }
