"""Out-of-distribution (OOD) sets for the robustness step: another task, or a named transform
of a task's own data.

An OOD spec is either a task name (``tfds:mnist`` against a model trained on
``tfds:fashion_mnist``: the two must have the same number of features) or
``<task>:<transform>``, the task's data passed through one of the transforms below. The
transforms exercise the question of Nalisnick et al. (2019), "Do deep generative models know
what they don't know?", offline: likelihood models trained on Fashion-MNIST give MNIST *higher*
log p(x) than their own test set, and Serrà et al. (2020), "Input complexity and
out-of-distribution detection with likelihood-based generative models", trace that to input
complexity: simpler inputs (more uniform background, lower contrast) get higher density
whatever they depict. So an offline pair has two sides:

- *simpler* OOD inputs, where log p(x) may fail (AUROC below 0.5): ``contrast<a>`` (e.g.
  ``digits:contrast0.3``): every example pulled towards the average example, ``m + a (x - m)``
  with ``m`` the training pool's per-feature mean and ``0 <= a < 1``: the same images with a
  fraction ``a`` of their contrast against the average image, smoother and closer to the
  mode of any unimodal density: less typical but *more* likely, the gap between the typical
  set and the high-density region of Nalisnick et al. (2019b), "Detecting out-of-distribution
  inputs to deep generative models using typicality". (Dimming towards the black background,
  ``a x``, does not fool the Gaussian models on digits: pixels reliably bright within a class
  have small variances; measured log p(x) AUROC 0.94 to 0.98.) ``blur`` (image tasks): a
  3 x 3 box blur with edge padding: the same digits, smoother (not simpler enough to fool
  them either: AUROC 0.84 to 0.99).
- *harder* OOD inputs, where log p(x) is expected to work: ``noise``: every feature drawn
  independently and uniformly over its training-pool range (0/1 with probability 1/2 on binary
  tasks); ``permute``: the features of every example permuted by one fixed random permutation
  (the same values, scrambled structure).
- ``flip`` (image tasks): images mirrored left to right: in between (some digits are nearly
  symmetric).

Transforms act on the task's arrays in their original units (after the task's own
dequantization or binarization), with fixed NumPy seeds, so an OOD set is the same in every
run. Binary tasks stay binary under ``noise``, ``permute`` and ``flip``; ``contrast`` and
``blur`` are refused on them (a blurred bit is not a bit).

``OOD_PAIRS`` maps a task to the OOD spec a suite uses by default; ``load(spec)`` gives the OOD
set as a ``Task`` (pool and test both transformed; the robustness step reads its test set).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from gdbench.tasks import registry
from gdbench.tasks.base import Task, TaskError

#: Transform names (``contrast`` takes its factor: ``contrast0.3``).
TRANSFORMS = ("contrast<a>", "blur", "noise", "permute", "flip")
#: Which side of the question each transform is on (see the module docstring).
SIMPLER = ("contrast", "blur")
HARDER = ("noise", "permute")

#: The OOD set each task is paired with by default. Image datasets of the same shape pair with
#: each other (Nalisnick et al. 2019); offline tasks with a simpler copy of their own test set,
#: where likelihood-based detection is expected to fail.
OOD_PAIRS: dict[str, str] = {
    "tfds:fashion_mnist": "tfds:mnist",
    "tfds:mnist": "tfds:fashion_mnist",
    "tfds:mnist?binarize=0.5": "tfds:fashion_mnist?binarize=0.5",
    "tfds:cifar10": "tfds:svhn_cropped",  # Nalisnick et al.'s other pair
    "digits": "digits:contrast0.3",
    "digits_0v1": "digits_0v1:contrast0.3",
    "digits_2v3": "digits_2v3:contrast0.3",
    "digits_bin": "digits_bin:flip",
}

_CONTRAST = re.compile(r"contrast(\d*\.?\d+)")
#: NumPy seeds of the random transforms (fixed: an OOD set is data, not a draw).
_NOISE_SEED = 7
_PERMUTE_SEED = 11


@dataclasses.dataclass(frozen=True)
class OODSpec:
    """A parsed OOD spec: the source task and the transform (``""``: the task as it is)."""

    task: str
    transform: str = ""

    @property
    def name(self) -> str:
        return f"{self.task}:{self.transform}" if self.transform else self.task


def is_transform(text: str) -> bool:
    return text in ("blur", "noise", "permute", "flip") or _CONTRAST.fullmatch(text) is not None


def parse(spec: str) -> OODSpec:
    """Split ``<task>:<transform>`` (a known transform after the last colon) from a plain task
    name (``tfds:mnist``, ``tfds:mnist:3.0.1`` and ``csv:...`` stay task names). Raises
    ``TaskError`` (one line) for an unknown task or a bad contrast factor."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and is_transform(tail):
        m = _CONTRAST.fullmatch(tail)
        if m and not 0.0 <= float(m.group(1)) < 1.0:
            raise TaskError(
                f"OOD transform '{tail}' needs a contrast factor in [0, 1), e.g. contrast0.3"
            )
        registry.check_name(head)
        return OODSpec(head, tail)
    try:
        registry.check_name(spec)
    except TaskError as err:
        raise TaskError(
            f"{err}; an OOD set is a task or <task>:<transform> with transform one of "
            f"{', '.join(TRANSFORMS)}"
        ) from None
    return OODSpec(spec)


def transform(task: Task, name: str, x: np.ndarray) -> np.ndarray:
    """``x`` ``[N, D]`` (rows of ``task``, original units) through the transform ``name``;
    float32 ``[N, D]``. Raises ``TaskError`` for a transform the task cannot take."""
    x = np.asarray(x, dtype=np.float32)
    binary = task.feature_kind == "binary"
    m = _CONTRAST.fullmatch(name)
    if m or name == "blur":
        if binary:
            raise TaskError(
                f"OOD transform '{name}' makes non-binary values; task '{task.name}' is binary "
                "(use noise, permute or flip)"
            )
        if m:
            a = float(m.group(1))
            mean = task.x_pool.mean(0)
            return (mean + a * (x - mean)).astype(np.float32)
        return _blur(_images(task, name, x)).reshape(x.shape).astype(np.float32)
    if name == "noise":
        rng = np.random.default_rng(_NOISE_SEED)
        if binary:
            return rng.integers(0, 2, size=x.shape).astype(np.float32)
        lo, hi = task.x_pool.min(0), task.x_pool.max(0)
        return (lo + (hi - lo) * rng.uniform(size=x.shape)).astype(np.float32)
    if name == "permute":
        perm = np.random.default_rng(_PERMUTE_SEED).permutation(x.shape[1])
        return x[:, perm]
    if name == "flip":
        return _images(task, name, x)[:, :, ::-1].reshape(x.shape).astype(np.float32)
    raise TaskError(f"unknown OOD transform '{name}'; valid: {', '.join(TRANSFORMS)}")


def _images(task: Task, name: str, x: np.ndarray) -> np.ndarray:
    """``x`` as ``[N, H, W(, C)]`` images; ``TaskError`` for a task without an image shape."""
    if task.image_shape is None:
        raise TaskError(
            f"OOD transform '{name}' needs an image task; '{task.name}' has no image shape "
            "(use contrast<a>, noise or permute)"
        )
    return x.reshape(x.shape[0], *task.image_shape, -1)


def _blur(images: np.ndarray) -> np.ndarray:
    """3 x 3 box blur of ``[N, H, W, C]`` images, edges padded by repetition."""
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    out = sum(padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3))
    return out / 9.0


def load(spec: str) -> Task:
    """The OOD set ``spec`` as a ``Task``: the named task itself, or the task with its pool and
    test set transformed (``name`` is the spec; ``transform`` records what was done)."""
    parsed = parse(spec)
    task = registry.load(parsed.task)
    if not parsed.transform:
        return task
    return dataclasses.replace(
        task,
        name=parsed.name,
        x_pool=transform(task, parsed.transform, task.x_pool),
        x_test=transform(task, parsed.transform, task.x_test),
        description=f"{task.description}; OOD transform {parsed.transform}",
        transform="+".join(filter(None, [task.transform, f"ood:{parsed.transform}"])),
        bayes_accuracy=None,
        true_log_lik=None,
    )


def default_for(task: str) -> str | None:
    """The OOD spec paired with ``task`` by default (``OOD_PAIRS``), or None."""
    return OOD_PAIRS.get(task)
