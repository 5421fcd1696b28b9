"""``conv_flow``: a class-conditional RealNVP for images, with an exact likelihood.

The flat input ``x`` (``[B, H*W*C]`` in (H, W, C) order, as every task stores images) is
mapped to a base point ``z = f_y(x)`` and scored under a standard Normal base by the change of
variables,

    log p(x | y) = log N(f_y(x); 0, I) + log |det df_y/dx|      (nats, summed over pixels),

as in Dinh et al. 2017, "Density estimation using Real NVP" (ICLR), section 3:

1. a per-class, per-pixel affine map ``u = (x - loc_y) * exp(-log_scale_y)``, set from the data
   before training (class means and the pooled within-class scale, like Glow's ActNorm,
   Kingma & Dhariwal 2018), so that the untrained flow is Gaussian naive Bayes with shared
   variances, as ``flow`` starts;
2. ``scales`` blocks of affine couplings on the image ``[H, W, C]``. A block makes ``couplings``
   checkerboard-masked couplings (the mask alternates between the two colours of a
   checkerboard); every block but the last then squeezes the image (space to depth:
   ``[H, W, C] -> [H/2, W/2, 4C]``, a permutation, log-determinant 0) and makes ``couplings``
   channel-masked couplings (the two halves of the channels alternate). A squeeze needs even H
   and W: where one is odd (7x7 after two squeezes of 28x28) the image is not squeezed and the
   next block works at the same resolution; channel couplings need at least two channels, and
   on a 1x1 image (2x2 after a squeeze) channel couplings replace the checkerboard ones.
   RealNVP also factors out half of the dimensions after each block; here every dimension goes
   through every block (the images gdbench runs are small, and this keeps the model one
   chain).

A coupling leaves the conditioning part ``x_a`` unchanged and maps the transformed part to
``x_b * exp(s) + t``, where ``(s, t)`` come from a small conv net of ``x_a``: 3x3 conv to
``channels`` (plus a learned per-class bias, i.e. the one-hot class label broadcast over the
image as extra input channels of a 1x1 convolution), ReLU, 1x1 conv, ReLU, 3x3 conv to
``(s, t)`` (the 3x3 / 1x1 / 3x3 net of Glow). The last conv starts at zero, so every coupling
starts as the identity. The log-scale is bounded, ``s = bound * tanh(raw / bound)``; the
log-determinant of a coupling is the sum of ``s`` over the transformed entries, so that of the
whole flow is exact: ``sum(s) - sum(log_scale_y)``.

Fitting, data and support are as in ``flow``: a closed-form stage sets the class prior and the
affine start, then the engine's AdamW trains every parameter on the per-example negative
log-likelihood ``nll``, keeping the parameters with the best validation ``nll``. The density is
over real images (``input_support = "real"``) in the standardized units the engine feeds (per
pixel; the engine reports ``log_lik`` back in the task's units); on dequantized pixel data
(``digits``) it is a density of the dequantized data.

The engine passes the task's ``image_shape``, ``(H, W)`` or ``(H, W, C)``; a task that is not
an image task cannot use this model (the constructor raises ``ValueError``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gdbench.models.base import Array
from gdbench.models.conv import Conv3x3, image_dims
from gdbench.models.generative.flow import AffineStartFlow

Shape = tuple[int, int, int]


def checkerboard(height: int, width: int, parity: int) -> np.ndarray:
    """``[H, W, 1]`` float32 mask: 1 on the conditioning squares (``(i + j + parity)`` even)."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return ((i + j + parity) % 2 == 0).astype(np.float32)[:, :, None]


def squeeze(h: Array) -> Array:
    """Space to depth: ``[B, H, W, C] -> [B, H/2, W/2, 4C]`` (each 2x2 patch to channels)."""
    b, height, width, c = h.shape
    h = h.reshape(b, height // 2, 2, width // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return h.reshape(b, height // 2, width // 2, 4 * c)


def unsqueeze(h: Array) -> Array:
    """The inverse of ``squeeze``: ``[B, H, W, 4C] -> [B, 2H, 2W, C]``."""
    b, height, width, c4 = h.shape
    c = c4 // 4
    h = h.reshape(b, height, width, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return h.reshape(b, 2 * height, 2 * width, c)


class ConvConditioner(nnx.Module):
    """``(s, t)`` of a coupling: 3x3 conv (+ per-class bias), ReLU, 1x1 conv, ReLU, 3x3 conv.

    The per-class bias ``[num_classes, channels]`` added after the first conv is the one-hot
    class label broadcast over the image as extra input channels of a 1x1 convolution. The
    last conv starts at zero (the coupling starts as the identity).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        num_classes: int,
        scale_bound: float,
        *,
        rngs: nnx.Rngs,
    ):
        self.scale_bound = scale_bound
        self.conv_in = Conv3x3(in_channels, channels, rngs=rngs)
        self.class_bias = nnx.Param(jnp.zeros((num_classes, channels)))
        self.conv_mid = nnx.Linear(channels, channels, rngs=rngs)  # a 1x1 convolution
        self.conv_out = Conv3x3(channels, 2 * out_channels, zero=True, rngs=rngs)

    def __call__(self, h: Array, onehot: Array) -> tuple[Array, Array]:
        """Bounded log-scale ``s`` and shift ``t``, each ``[B, H, W, out_channels]``."""
        h = self.conv_in(h) + (onehot @ self.class_bias[...])[:, None, None, :]
        h = jax.nn.relu(self.conv_mid(jax.nn.relu(h)))
        raw, shift = jnp.split(self.conv_out(h), 2, axis=-1)
        return self.scale_bound * jnp.tanh(raw / self.scale_bound), shift


class Coupling(nnx.Module):
    """An affine coupling on an image ``[B, H, W, C]``, checkerboard- or channel-masked.

    ``checkerboard``: the squares where ``(i + j + parity)`` is even condition the others
    (every channel of a square alike). ``channel``: channels ``[:C//2]`` condition channels
    ``[C//2:]`` for ``parity`` 0, and the other way round for ``parity`` 1.
    """

    def __init__(
        self,
        kind: Literal["checkerboard", "channel"],
        parity: int,
        shape: Shape,
        num_classes: int,
        channels: int,
        scale_bound: float,
        *,
        rngs: nnx.Rngs,
    ):
        height, width, c = shape
        self.kind, self.parity, self.shape = kind, parity, shape
        if kind == "checkerboard":
            in_ch = out_ch = c
        elif kind == "channel" and c >= 2:
            lo, hi = c // 2, c - c // 2
            in_ch, out_ch = (lo, hi) if parity == 0 else (hi, lo)
        else:
            raise ValueError(f"no {kind} coupling on a {height}x{width}x{c} image")
        self.net = ConvConditioner(in_ch, out_ch, channels, num_classes, scale_bound, rngs=rngs)

    def _halves(self, h: Array) -> tuple[Array, Array]:
        """(conditioning, transformed) channels of a channel coupling."""
        k = self.shape[2] // 2
        lo, hi = h[..., :k], h[..., k:]
        return (lo, hi) if self.parity == 0 else (hi, lo)

    def _join(self, cond: Array, trans: Array) -> Array:
        parts = (cond, trans) if self.parity == 0 else (trans, cond)
        return jnp.concatenate(parts, axis=-1)

    def forward(self, h: Array, onehot: Array) -> tuple[Array, Array]:
        """The coupling's output ``[B, H, W, C]`` and log-determinant ``[B]``."""
        if self.kind == "checkerboard":
            mask = jnp.asarray(checkerboard(self.shape[0], self.shape[1], self.parity))
            s, t = self.net(h * mask, onehot)
            s, t = s * (1.0 - mask), t * (1.0 - mask)
            return h * jnp.exp(s) + t, s.sum((1, 2, 3))
        cond, trans = self._halves(h)
        s, t = self.net(cond, onehot)
        return self._join(cond, trans * jnp.exp(s) + t), s.sum((1, 2, 3))

    def inverse(self, z: Array, onehot: Array) -> Array:
        """The coupling's input given its output (the conditioning part is unchanged)."""
        if self.kind == "checkerboard":
            mask = jnp.asarray(checkerboard(self.shape[0], self.shape[1], self.parity))
            s, t = self.net(z * mask, onehot)
            s, t = s * (1.0 - mask), t * (1.0 - mask)
            return (z - t) * jnp.exp(-s)
        cond, trans = self._halves(z)
        s, t = self.net(cond, onehot)
        return self._join(cond, (trans - t) * jnp.exp(-s))


class Squeeze(nnx.Module):
    """Space to depth between blocks (a permutation of the pixels: log-determinant 0)."""

    def forward(self, h: Array, onehot: Array) -> tuple[Array, Array]:
        return squeeze(h), jnp.zeros(h.shape[:1], h.dtype)

    def inverse(self, z: Array, onehot: Array) -> Array:
        return unsqueeze(z)


def flow_layout(shape: Shape, scales: int, couplings: int) -> list[tuple[str, int, Shape]]:
    """The flow's layers in order, as ``(kind, parity, input shape)`` with kind
    ``checkerboard``, ``channel`` or ``squeeze`` (see the module docstring)."""
    layers: list[tuple[str, int, Shape]] = []
    for block in range(scales):
        # On a 1x1 image a checkerboard leaves nothing (or everything) to transform: there the
        # channel halves take its place.
        spatial = "checkerboard" if shape[0] * shape[1] > 1 or shape[2] == 1 else "channel"
        layers += [(spatial, i % 2, shape) for i in range(couplings)]
        if block == scales - 1:
            break
        height, width, c = shape
        if height % 2 == 0 and width % 2 == 0:
            layers.append(("squeeze", 0, shape))
            shape = (height // 2, width // 2, 4 * c)
        if shape[2] >= 2:
            layers += [("channel", i % 2, shape) for i in range(couplings)]
    return layers


class ConvFlow(AffineStartFlow):
    """Class-conditional RealNVP for images: a per-class affine start, then checkerboard and
    channel affine couplings with conv conditioners and squeezes between blocks.

    Hyperparameters:
      scales: blocks of couplings (a squeeze and channel couplings between two blocks).
      couplings: checkerboard couplings per block, and channel couplings after each squeeze.
      channels: hidden channels of each coupling's conv net.
      scale_bound: bound on each coupling's log-scale (``s = bound * tanh(raw / bound)``).
      learning_rate, weight_decay, steps, batch_size, eval_every: the AdamW stage (``Gradient``).
    """

    #: Convolutional: only image tasks (the runner refuses others when it plans the run).
    needs_image: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        image_shape: tuple[int, ...] | None = None,
        scales: int = 2,
        couplings: int = 4,
        channels: int = 32,
        scale_bound: float = 1.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        steps: int = 400,
        batch_size: int = 64,
        eval_every: int = 25,
    ):
        shape = image_dims(image_shape, dim, "conv_flow")
        for name, value in (("scales", scales), ("couplings", couplings), ("channels", channels)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be > 0, got {scale_bound}")
        self._init_affine_start(
            dim,
            num_classes,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            steps=steps,
            batch_size=batch_size,
            eval_every=eval_every,
        )
        self.image_shape = shape
        layers: list[nnx.Module] = []
        for kind, parity, in_shape in flow_layout(shape, scales, couplings):
            if kind == "squeeze":
                layers.append(Squeeze())
            else:
                layers.append(
                    Coupling(kind, parity, in_shape, num_classes, channels, scale_bound, rngs=rngs)
                )
        self.layers = nnx.List(layers)

    def forward(self, x: Array, y: Array) -> tuple[Array, Array]:
        """``z = f_y(x)`` ``[B, D]`` (flattened in the last block's layout) and
        ``log |det df_y/dx|`` ``[B]`` (nats)."""
        b = x.shape[0]
        onehot = self._onehot(y, b)
        log_scale = onehot @ self.log_scale[...]
        h = ((x - onehot @ self.loc[...]) * jnp.exp(-log_scale)).reshape(b, *self.image_shape)
        logdet = -log_scale.sum(-1)
        for layer in self.layers:
            h, ld = layer.forward(h, onehot)
            logdet = logdet + ld
        return h.reshape(b, -1), logdet

    def latent_shape(self) -> Shape:
        """``(H, W, C)`` of the last block's layout (where ``z`` lives before flattening)."""
        height, width, c = self.image_shape
        for layer in self.layers:
            if isinstance(layer, Squeeze):
                height, width, c = height // 2, width // 2, 4 * c
        return height, width, c

    def inverse(self, z: Array, y: Array) -> Array:
        """``x = f_y^{-1}(z)``, ``[B, D]`` (``z`` flattened as ``forward`` gives it)."""
        b = z.shape[0]
        onehot = self._onehot(y, b)
        h = z.reshape(b, *self.latent_shape())
        for layer in reversed(self.layers):
            h = layer.inverse(h, onehot)
        u = h.reshape(b, -1)
        return u * jnp.exp(onehot @ self.log_scale[...]) + onehot @ self.loc[...]

    def class_log_probs(self, x: Array) -> Array:
        """``log p(x | y=c)`` for every class, ``[B, C]``: one class at a time
        (``lax.map``), so that the conv activations of only one class are live at once."""
        classes = jnp.arange(self.num_classes)
        return jax.lax.map(lambda c: self.log_prob(x, c), classes).T
