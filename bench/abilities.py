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


def _generative(model) -> bool:
    """Whether the model (an instance or a class) is generative: a ``GenerativeModel``
    instance or subclass, whatever its paradigm, or of paradigm ``"generative"``."""
    if isinstance(model, GenerativeModel):
        return True
    if isinstance(model, type) and issubclass(model, GenerativeModel):
        return True
    return getattr(model, "paradigm", None) == "generative"


def reports_density(model, task: Task) -> bool:
    """Whether the model's log p(x) is a likelihood of this task's data: a normalized joint
    density (``Density``: a ``GenerativeModel``, whatever its paradigm, e.g. the ``hybrid``
    blend, or a class of paradigm ``"generative"``) whose ``input_support`` (default
    ``"real"``) is the task's kind of features."""
    return (
        _generative(model)
        and has_ability(model, Density)
        and getattr(model, "input_support", "real") == task.feature_kind
    )


def draws_samples(model, task: Task) -> bool:
    """Whether the model makes data of this task (``Sampler``): a generative model whose
    density is over the task's kind of features, or a hybrid with a sampler of its own (``gan``,
    ``jem``)."""
    if not has_ability(model, Sampler):
        return False
    if _generative(model):
        return reports_density(model, task)
    return True


def marginalizes_missing(model) -> bool:
    """Whether the model classifies with missing features marginalized (``MarginalizesMissing``)."""
    return has_ability(model, MarginalizesMissing)


def needs_image(model) -> bool:
    """Whether the model takes its input as images (``ImageInput``)."""
    return has_ability(model, ImageInput)
