"""Convolutional building blocks shared by the image models (``cnn``, ``conv_vae``).

Tasks hand every model flat feature vectors ``[B, H*W*C]`` in ``(H, W, C)`` order (row-major
pixels, channels last); image models are told the task's ``image_shape`` (``(H, W)`` or
``(H, W, C)``) and reshape inside.

Down-sampling is by stride-2 3x3 convolutions with ``SAME`` padding (the "all-convolutional"
design of Springenberg et al. 2015, "Striving for simplicity: the all convolutional net"), so a
side of ``n`` pixels becomes ``ceil(n / 2)`` per layer and any H, W work (7, 8, 28, 32 alike).
Up-sampling (the VAE decoder) is by sub-pixel convolution (Shi et al. 2016, "Real-time single
image and video super-resolution using an efficient sub-pixel convolutional neural network"):
a 3x3 stride-1 convolution to ``4 * C`` channels whose groups of four become the 2x2 pixels of
a map twice the size (depth to space), followed by a crop to the image's own H, W.

Convolutions are computed as patches times a matrix (im2col: the nine shifted, strided views of
the padded input side by side, then one matmul), not with ``lax.conv_general_dilated``. Same
numbers (the tests compare with ``lax.conv_general_dilated``), but the engine trains inside
``lax.scan``, and there XLA:CPU (jaxlib 0.10) runs its native convolutions about 40x slower
than outside a loop: a training step of a two-layer convnet on 8x8 digits measured 15.5 ms with
``lax.conv_general_dilated`` and 0.39 ms as im2col (12 x 4 cells vmapped: 79 vs 1.5 ms; 28x28:
168 vs 8.9 ms). Under ``vmap`` over cells the matmul becomes a batched matmul, which every
backend handles well, where a convolution with per-cell kernels becomes a grouped one.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from gdbench.models.base import Array

#: Which tasks an image model can run on, for error messages.
IMAGE_TASK_HINT = "an image task (e.g. digits, digits_bin, tfds:mnist)"


def image_dims(image_shape: tuple[int, ...] | None, dim: int, model: str) -> tuple[int, int, int]:
    """The task's image shape as ``(H, W, C)``; raises a one-line ``ValueError`` when there is
    none or when it does not match the ``dim`` features."""
    if image_shape is None:
        raise ValueError(f"{model} needs {IMAGE_TASK_HINT}; this task has no image shape")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{model}: image_shape must be (H, W) or (H, W, C), got {image_shape}")
    if math.prod(shape) != dim:
        raise ValueError(
            f"{model}: image_shape {image_shape} has {math.prod(shape)} pixels x channels, "
            f"which does not hold the task's {dim} features"
        )
    return shape  # type: ignore[return-value]


def halved(side: int, times: int) -> int:
    """A side of ``side`` pixels after ``times`` stride-2 ``SAME`` convolutions: ``ceil``
    halving each time."""
    for _ in range(times):
        side = -(-side // 2)
    return side


def conv_patches(images: Array, stride: int) -> Array:
    """The 3x3 neighbourhoods of a ``SAME``-padded convolution with ``stride``, side by side:
    ``[N, H, W, C] -> [N, ceil(H/stride), ceil(W/stride), 9 * C]``, ordered (row, column,
    channel) like a ``[3, 3, C, C_out]`` kernel reshaped to ``[9 * C, C_out]``."""
    _, height, width, _ = images.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    # SAME padding as in XLA: the total pad, split with the smaller half first.
    pad_h = max((out_h - 1) * stride + 3 - height, 0)
    pad_w = max((out_w - 1) * stride + 3 - width, 0)
    padded = jnp.pad(
        images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    views = [
        padded[:, i : i + span_h : stride, j : j + span_w : stride, :]
        for i in range(3)
        for j in range(3)
    ]
    return jnp.concatenate(views, axis=-1)


class Conv3x3(nnx.Module):
    """A 3x3 convolution with ``SAME`` padding and the given stride, as im2col and a matmul.

    Why not ``lax.conv_general_dilated`` (or ``nnx.Conv``): XLA:CPU runs convolutions inside
    the engine's ``lax.scan`` many times slower than at top level, and vmapped over cells (one
    kernel per cell) as grouped convolutions: a training step on 28x28 images took 168 ms
    against 8.9 ms this way (2-core CPU); im2col batches over cells as a batched matmul.

    ``kernel`` is ``[3, 3, in_features, out_features]`` (HWIO, as ``nnx.Conv``), initialised
    like ``nnx.Conv``'s (LeCun normal over the ``9 * in_features`` fan-in); ``bias`` starts at 0.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        stride: int = 1,
        zero: bool = False,
        rngs: nnx.Rngs,
    ):
        # zero: the kernel starts at 0 (a flow's coupling then starts as the identity).
        init = nnx.initializers.zeros_init() if zero else nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (3, 3, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.stride = stride
        self.out_features = out_features

    def __call__(self, images: Array) -> Array:
        """``[N, H, W, in] -> [N, ceil(H/stride), ceil(W/stride), out]``."""
        kernel = self.kernel[...]
        matrix = kernel.reshape(-1, kernel.shape[-1])
        return conv_patches(images, self.stride) @ matrix + self.bias[...]


def depth_to_space(maps: Array) -> Array:
    """``[N, h, w, 4 * C] -> [N, 2h, 2w, C]``: channel group ``(a, b)`` becomes the pixel at
    offset ``(a, b)`` of each 2x2 block."""
    n, h, w, c4 = maps.shape
    c = c4 // 4
    blocks = maps.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, 2 * h, 2 * w, c)


class SubPixelUp(nnx.Module):
    """Doubles both sides: a stride-1 ``Conv3x3`` to ``4 * out_features`` channels, then
    ``depth_to_space``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.conv = Conv3x3(in_features, 4 * out_features, stride=1, rngs=rngs)
        self.out_features = out_features

    def __call__(self, maps: Array) -> Array:
        """``[N, h, w, in] -> [N, 2h, 2w, out]``."""
        return depth_to_space(self.conv(maps))


def strided_convs(in_channels: int, channels: tuple[int, ...], rngs: nnx.Rngs) -> nnx.List:
    """3x3 stride-2 ``SAME`` convolutions ``in_channels -> channels[0] -> channels[1] ...``."""
    sizes = (in_channels, *channels)
    return nnx.List(
        [Conv3x3(a, b, stride=2, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    )


def upsampling_convs(channels: tuple[int, ...], out_channels: int, rngs: nnx.Rngs) -> nnx.List:
    """Sub-pixel up-sampling layers ``channels[-1] -> ... -> channels[0] -> out_channels``, the
    mirror of ``strided_convs(out_channels, channels)``."""
    sizes = (*channels[::-1], out_channels)
    return nnx.List(
        [SubPixelUp(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    )


def to_images(x: Array, shape: tuple[int, int, int]) -> tuple[Array, tuple[int, ...]]:
    """Flat ``[..., H*W*C]`` to ``[N, H, W, C]`` with every leading axis folded into N; also
    returns the leading axes, to restore them."""
    lead = x.shape[:-1]
    return x.reshape((-1, *shape)), lead


def conv_features(convs: nnx.List, images: Array) -> Array:
    """ReLU after every convolution: ``[N, H, W, C] -> [N, H', W', C']``."""
    for conv in convs:
        images = jax.nn.relu(conv(images))
    return images


def upsample(convs: nnx.List, maps: Array, height: int, width: int) -> Array:
    """A ReLU before every up-sampling layer (none after the last), then a crop to
    ``height x width``: ``[N, h, w, c] -> [N, height, width, C]``."""
    for conv in convs:
        maps = conv(jax.nn.relu(maps))
    return maps[:, :height, :width, :]
