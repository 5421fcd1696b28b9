"""A generative classifier of your own, in one file: every class a unit-variance Gaussian.

Run it against the built-in models (the file is imported, so only run files you trust):

    gdbench run --tasks breast_cancer,iris \
        --models docs/examples/nearest_mean.py:NearestMean,gnb,logreg \
        --sizes 10,40,160 --seeds 5 --out runs/mine
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

import gdbench


class NearestMean(gdbench.GenerativeModel):
    """Class-conditional Gaussians with identity covariance: the nearest-class-mean rule."""

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs, scale: float = 1.0):
        del rngs  # fitted in closed form: no random initialisation
        self.scale = scale  # a hyperparameter: --models 'nearest_mean.py:NearestMean?scale=2'
        self.means = nnx.Param(jnp.zeros((num_classes, dim)))
        self.log_class_prior = nnx.Param(jnp.full((num_classes,), -math.log(num_classes)))

    def fit_plan(self):
        return (gdbench.ClosedForm(),)  # the engine calls estimate() on each cell's subset

    def estimate(self, x, y, w):
        onehot = jax.nn.one_hot(y, self.means.shape[0]) * w[:, None]  # w: the cell's weights
        counts = onehot.sum(0)
        self.means[...] = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
        self.set_class_prior(counts)

    def class_log_probs(self, x):
        d2 = ((x[:, None, :] - self.means[...][None]) ** 2).sum(-1) / self.scale**2
        dim = x.shape[-1]
        return -0.5 * d2 - dim * math.log(self.scale) - 0.5 * dim * math.log(2 * math.pi)

    def sample(self, key, y, n):
        mean = self.means[...][y]
        return mean + self.scale * jax.random.normal(key, (n, mean.shape[-1]))
