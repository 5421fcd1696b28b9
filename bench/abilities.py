"""What a model can compute on a task, as the grid programs ask it."""

from __future__ import annotations

from gdbench.models.base import GenerativeModel
from gdbench.tasks.base import Task


def reports_density(model, task: Task) -> bool:
    """Whether the model's log p(x) is a likelihood of this task's data (support matches)."""
    return isinstance(model, GenerativeModel) and model.input_support == task.feature_kind


def draws_samples(model, task: Task) -> bool:
    """Whether the model makes data of this task: a generative model whose density is over the
    task's kind of features, or a hybrid with a sampler of its own (``gan``, ``jem``)."""
    if isinstance(model, GenerativeModel):
        return reports_density(model, task)
    return callable(getattr(type(model), "sample", None))
