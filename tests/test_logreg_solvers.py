"""``logreg?solver=adam``: minibatch AdamW for inputs too wide for Newton (images).

Checked against the Newton solver on the same cells. The two regularize differently (an L2
penalty 1/(2C) against AdamW's decoupled weight decay), so the check is what a user relies on:
the same test accuracy within 3 points and a test conditional NLL within 0.1 nats."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import engine, models, tasks


def test_adam_solver_matches_newton_on_the_same_cells():
    task = tasks.load("digits")
    cells = [(400, 0), (800, 1)]
    newton = engine.run_cells(task, models.get("logreg?C=1"), cells, quality=False).rows
    adam = engine.run_cells(
        task, models.get("logreg?solver=adam&steps=1500&weight_decay=0.001"), cells, quality=False
    ).rows
    for a, b in zip(adam, newton, strict=True):
        assert a["status"] == "ok" and b["status"] == "ok"
        assert abs(a["accuracy"] - b["accuracy"]) < 0.03
        assert abs(a["nll"] - b["nll"]) < 0.1
    # and it is a real fit: far above the 0.1 of chance on ten classes
    assert min(r["accuracy"] for r in adam) > 0.8


def test_unknown_solver_is_a_clear_error():
    with pytest.raises(ValueError, match="solver must be 'newton' or 'adam'"):
        models.get("logreg?solver=lbfgs").build(4, 2, None)


@pytest.mark.fast
def test_adam_plan_has_one_gradient_stage():
    from flax import nnx

    from gdbench.models.base import Gradient

    model = models.get("logreg?solver=adam&steps=300").build(4, 3, nnx.Rngs(0))
    (stage,) = model.fit_plan()
    assert isinstance(stage, Gradient) and stage.steps == 300
    assert not np.isnan(float(model.penalty()))
