"""What a model can compute on a task, as the grid programs ask it: the optional abilities of
``gdbench.models.base`` (typed protocols), read off the model's class."""

from __future__ import annotations

from gdbench.models.base import (
    Density,
    GenerativeModel,
    ImageInput,
    MarginalizesMissing,
    Sampler,
    has_ability,
)
from gdbench.tasks.base import Task


def reports_density(model, task: Task) -> bool:
    """Whether the model's log p(x) is a likelihood of this task's data: a normalized joint
    density (``Density``: a ``GenerativeModel``, whatever its paradigm, e.g. the ``hybrid``
    blend, or a class of paradigm ``"generative"``) whose ``input_support`` (default
    ``"real"``) is the task's kind of features."""
    generative = isinstance(model, GenerativeModel) or (
        isinstance(model, type) and issubclass(model, GenerativeModel)
    )
    return (
        (generative or getattr(model, "paradigm", None) == "generative")
        and has_ability(model, Density)
        and getattr(model, "input_support", "real") == task.feature_kind
    )


def draws_samples(model, task: Task) -> bool:
    """Whether the model makes data of this task (``Sampler``): a generative model whose
    density is over the task's kind of features, or a hybrid with a sampler of its own (``gan``,
    ``jem``)."""
    if not has_ability(model, Sampler):
        return False
    generative = isinstance(model, GenerativeModel) or (
        isinstance(model, type) and issubclass(model, GenerativeModel)
    )
    if generative or getattr(model, "paradigm", None) == "generative":
        return reports_density(model, task)
    return True


def marginalizes_missing(model) -> bool:
    """Whether the model classifies with missing features marginalized (``MarginalizesMissing``)."""
    return has_ability(model, MarginalizesMissing)


def needs_image(model) -> bool:
    """Whether the model takes its input as images (``ImageInput``)."""
    return has_ability(model, ImageInput)
