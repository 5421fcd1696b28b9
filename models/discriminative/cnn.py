"""``cnn``: a small convolutional classifier for image tasks, trained like ``mlp``.

Architecture (all-convolutional down-sampling, Springenberg et al. 2015; a LeNet/VGG-style
stack, LeCun et al. 1998, Simonyan & Zisserman 2015): for every entry of ``channels`` (e.g.
``(32, 64)``, ``cnn?channels=16-32`` on the command line) a 3x3 convolution with stride 2 and
``SAME`` padding followed by a ReLU, so each layer halves the image's sides (rounding up: 28 ->
14 -> 7, 8 -> 4 -> 2, 7 -> 4 -> 2); then the feature maps are flattened into a dense head of
ReLU ``hidden`` layers and a linear softmax output. Cross-entropy loss.

Inputs arrive flat ``[B, H*W*C]`` in ``(H, W, C)`` order, standardized per feature by the engine;
the model reshapes them with the task's ``image_shape`` (passed by the engine, not a
hyperparameter). On a task without one (tabular data) construction fails with a one-line
``ValueError``, and ``gdbench run`` refuses the pair at planning time (``needs_image``).

Training is ``mlp``'s: the engine runs AdamW on minibatches inside ``lax.scan`` and, every
``eval_every`` steps, evaluates the loss on the validation part of the cell's training subset,
keeping the parameters with the lowest validation loss (early stopping by model selection).
"""

from __future__ import annotations

from typing import ClassVar

from flax import nnx

from gdbench.models.base import Array
from gdbench.models.conv import conv_features, halved, image_dims, strided_convs, to_images
from gdbench.models.discriminative.mlp import MLP


class CNN(MLP):
    """Stride-2 3x3 convolutions with ReLU, then ``mlp`` on the flattened feature maps (its
    dense head, cross-entropy loss and validation-selected AdamW training)."""

    #: Runs only on tasks with an ``image_shape`` (checked when a run is planned).
    needs_image: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        channels: tuple[int, ...] = (32, 64),
        hidden: tuple[int, ...] = (128,),
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        steps: int = 400,
        batch_size: int = 64,
        eval_every: int = 25,
        image_shape: tuple[int, ...] | None = None,
    ):
        self.image_shape = image_dims(image_shape, dim, "cnn")
        if not channels:
            raise ValueError("cnn needs at least one convolution (channels=32 or 32-64 ...)")
        height, width, in_channels = self.image_shape
        self.convs = strided_convs(in_channels, tuple(channels), rngs)
        flat = halved(height, len(channels)) * halved(width, len(channels)) * channels[-1]
        super().__init__(
            flat,
            num_classes,
            rngs=rngs,
            hidden=tuple(hidden),
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            steps=steps,
            batch_size=batch_size,
            eval_every=eval_every,
        )

    def features(self, x: Array) -> Array:
        """The last convolution's feature maps, ``[B, H', W', channels[-1]]``, of flat
        ``[B, H*W*C]`` inputs."""
        images, _ = to_images(x, self.image_shape)
        return conv_features(self.convs, images)

    def predict_logits(self, x: Array) -> Array:
        h = self.features(x)
        return super().predict_logits(h.reshape(h.shape[0], -1))
