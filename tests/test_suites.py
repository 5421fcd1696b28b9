"""Suites: every name they use exists, their pairs are in their grids, sizes start where said."""

from __future__ import annotations

import pytest

from gdbench import plan, runner, suites
from gdbench.models import registry as models
from gdbench.tasks import registry as tasks


@pytest.mark.parametrize("suite", list(suites.SUITES.values()), ids=list(suites.SUITES))
@pytest.mark.fast
def test_suite_names_resolve_and_pairs_are_in_the_grid(suite):
    config = runner.make_config(suite)
    for task in config.tasks:
        tasks.check_name(task)
    specs = set(config.models)
    assert len(config.pairs) == len(suite.pairs), "a suite pair names a model it does not run"
    for generative, discriminative, why in config.pairs:
        assert {generative, discriminative} <= specs
        assert models.get(generative).cls.paradigm == "generative"
        assert models.get(discriminative).cls.paradigm == "discriminative"
        assert why


def test_ngjordan_follows_the_protocol():
    suite = suites.get("ngjordan")
    assert suite.seeds >= 100
    config = runner.make_config(suite)
    # The paper's pairings come first: shared-variance Gaussian NB and Bernoulli NB against
    # logistic regression with negligible regularization.
    assert config.pairs[0][:2] == ("gnb_shared", "logreg?C=10000")
    assert config.pairs[1][:2] == ("bnb", "logreg?C=10000")
    for name in ("digits_0v1", "digits_2v3", "breast_cancer", "digits_bin"):
        assert name in config.tasks
    task = tasks.load("digits_0v1")
    sizes = runner.grid_plan(config, task).sizes
    assert sizes[0] == 6 and sizes[-1] == task.pool_size and len(sizes) == 12


@pytest.mark.parametrize(
    ("pool", "classes", "smallest", "first"), [(252, 2, 6, 6), (252, 2, 10, 10), (1258, 10, 6, 20)]
)
def test_auto_sizes_start_at_smallest_or_two_per_class(pool, classes, smallest, first):
    sizes = plan.auto_sizes(pool, classes, 12, smallest)
    assert sizes[0] == first and sizes[-1] == pool
    assert list(sizes) == sorted(set(sizes))
