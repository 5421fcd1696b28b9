"""What a model computes on a task (gdbench.abilities), asked of its class or of an instance."""

from __future__ import annotations

import pytest

from gdbench import engine, models, tasks
from gdbench.abilities import draws_samples, reports_density


@pytest.fixture(scope="module")
def task_of():
    loaded = {name: tasks.load(name) for name in ("iris", "digits_bin")}
    return loaded.__getitem__


@pytest.mark.parametrize(
    "name, task_name, density, samples",
    [
        ("gnb", "iris", True, True),  # generative, real features
        ("bnb", "iris", False, False),  # a density of binary data, not of iris's features
        ("bnb", "digits_bin", True, True),
        ("hybrid", "iris", True, True),  # a GenerativeModel of paradigm hybrid (the blend)
        ("jem", "iris", False, True),  # a hybrid with a sampler of its own, no density
        ("gan", "iris", False, True),
        ("logreg", "iris", False, False),
    ],
)
def test_density_and_samples_of_a_class_and_of_an_instance(
    task_of, name, task_name, density, samples
):
    task, spec = task_of(task_name), models.get(name)
    template = engine.build_template(task, spec)  # an instance (shapes only)
    for model in (spec.cls, template):
        assert reports_density(model, task) is density
        assert draws_samples(model, task) is samples
