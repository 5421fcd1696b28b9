"""``conv_vae``: a class-conditional convolutional VAE for image tasks.

The model, its fitting and its evaluation are ``vae``'s (``gdbench.models.generative.vae``: Kingma &
Welling 2014; Sohn et al. 2015; IWAE bound of Burda et al. 2016 reported as log p(x), the ELBO
beside it, ``class_log_bounds``; decoder likelihood chosen by the task's feature kind,
``decoder="auto"``: Bernoulli pixels on binary tasks, else a Gaussian with one learned variance
per pixel and channel). Only the two networks are convolutional, in the layout of the usual
convolutional VAE (e.g. the TensorFlow CVAE tutorial), built from ``gdbench.models.conv``:

- encoder ``q(z | x, c)``: the image ``[H, W, C]`` through 3x3 stride-2 ``SAME`` convolutions with
  ReLU (``channels``, default ``(32, 64)``: 28x28 -> 14x14 -> 7x7), flattened; the class one-hot
  is concatenated there, then ReLU dense ``hidden`` layers (none by default) and a linear layer
  give ``mu`` and ``log sigma^2`` of the ``latent`` Gaussian. The convolutions do not see the
  class, so evaluation runs them once per image, not once per class.
- decoder ``p(x | z, c)``: ``[z, onehot(c)]`` through the mirrored dense layers to
  ``h x w x channels[-1]`` maps (``h = ceil(H / 2^n)`` after ``n`` halvings), then sub-pixel
  up-sampling layers (Shi et al. 2016: a 3x3 convolution to four times the channels, depth to
  space; ReLU before each) back up to ``C`` channels, each doubling a side, and a crop to
  ``H x W`` (8 -> 2 -> 8; 7 -> 2 -> 8 -> 7; 28 -> 7 -> 28; 6 -> 2 -> 8 -> 6). The output is the
  Gaussian mean or the Bernoulli logits of every pixel and channel.

Inputs arrive flat ``[B, H*W*C]`` in ``(H, W, C)`` order (standardized by the engine on real
tasks, 0/1 on binary ones); the engine passes the task's ``image_shape``. A task without one
cannot use the model (one-line ``ValueError``; ``gdbench run`` refuses the pair when planning).
"""

from __future__ import annotations

from typing import ClassVar

from flax import nnx

from gdbench.models.base import Array
from gdbench.models.conv import (
    conv_features,
    halved,
    image_dims,
    strided_convs,
    to_images,
    upsample,
    upsampling_convs,
)
from gdbench.models.generative.vae import VAE, _mlp


class ConvVAE(VAE):
    """Class-conditional VAE with convolutional encoder and decoder; log p(x) is the IWAE
    bound with ``iwae_k`` samples (``likelihood_is_bound``), the ELBO beside it."""

    #: Runs only on tasks with an ``image_shape`` (checked when a run is planned).
    needs_image: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        decoder: str = "auto",
        latent: int = 16,
        channels: tuple[int, ...] = (32, 64),
        hidden: tuple[int, ...] = (),
        min_variance: float = 1e-3,
        steps: int = 400,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        eval_every: int = 25,
        iwae_k: int = 100,
        feature_kind: str | None = None,
        image_shape: tuple[int, ...] | None = None,
    ):
        self.image_shape = image_dims(image_shape, dim, "conv_vae")
        if not channels:
            raise ValueError("conv_vae needs at least one convolution (channels=32 or 32-64 ...)")
        self.channels = tuple(channels)
        super().__init__(
            dim,
            num_classes,
            rngs=rngs,
            decoder=decoder,
            latent=latent,
            hidden=hidden,
            min_variance=min_variance,
            steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            eval_every=eval_every,
            iwae_k=iwae_k,
            feature_kind=feature_kind,
        )

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """``(h, w, channels[-1])``: the encoder's last feature maps, the decoder's first."""
        height, width, _ = self.image_shape
        n = len(self.channels)
        return halved(height, n), halved(width, n), self.channels[-1]

    def _build_networks(self, hidden: tuple[int, ...], rngs: nnx.Rngs) -> None:
        h, w, c = self.code_shape
        flat = h * w * c
        self.encoder_convs = strided_convs(self.image_shape[2], self.channels, rngs)
        self.encoder = _mlp((flat + self.num_classes, *hidden, 2 * self.latent), rngs)
        self.decoder_net = _mlp((self.latent + self.num_classes, *hidden[::-1], flat), rngs)
        self.decoder_convs = upsampling_convs(self.channels, self.image_shape[2], rngs)

    def _encoder_features(self, x: Array) -> Array:
        """Flattened convolutional features of ``x`` ``[..., D]``, ``[..., h*w*channels[-1]]``."""
        images, lead = to_images(x, self.image_shape)
        maps = conv_features(self.encoder_convs, images)
        return maps.reshape((*lead, -1))

    def _decoder_means(self, z: Array, class_rows: Array) -> Array:
        """Pixel means or logits ``[..., D]`` (in ``(H, W, C)`` order) for latents ``z``."""
        code = super()._decoder_means(z, class_rows)
        lead = code.shape[:-1]
        height, width, _ = self.image_shape
        maps = upsample(self.decoder_convs, code.reshape((-1, *self.code_shape)), height, width)
        return maps.reshape((*lead, self.dim))

    def _decoder_width(self) -> int:
        """Floats of the decoder's widest activation: a dense layer or a feature map."""
        h, w, _ = self.code_shape
        widths = [layer.out_features for layer in self.decoder_net] + [self.dim]
        for i, conv in enumerate(self.decoder_convs):
            widths.append(h * w * 4 ** (i + 1) * conv.out_features)
        return max(widths)
