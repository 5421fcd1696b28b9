"""gdbench: discriminative and generative models side by side, JAX-accelerated.

The public API, flat like optax's (imported lazily: ``import gdbench`` loads no JAX):

- ``gdbench.run(tasks=..., models=..., sizes=..., seeds=..., out=...) -> DataFrame``,
  ``gdbench.load(run_dir)``, ``gdbench.report(run_dir)``, ``gdbench.compare(run_a, run_b)``,
  ``gdbench.reproduce(run_dir, out)`` (a stored run made again and its numbers compared);
- ``gdbench.Task`` (``Task.from_arrays``) for data of your own;
- the model protocol ``gdbench.Model`` and ``gdbench.GenerativeModel`` with the fit stages
  ``ClosedForm``, ``Newton``, ``Gradient``, ``Iterate`` and ``Adversarial``, for models of
  your own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from typing import Any

#: XLA's CPU backend in jaxlib 0.10 hands fused elementwise-and-reduce computations to
#: YNNPACK, which summed wrongly over a batch (``vmap``) of 64 rows: lanes 26 and later of
#: ``sum(w * (one_hot(y) * s).sum(-1))`` came out as other numbers (tests/test_xla_cpu.py),
#: which made L-BFGS and Newton's line search and convergence test act on wrong objective
#: values. gdbench limits those library fusions to matrix products (XLA's own code does the
#: rest), before JAX starts, unless ``XLA_FLAGS`` already chooses them. The flag enters the
#: compile cache's key and every run's manifest with ``XLA_FLAGS``.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
if YNN_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {YNN_FLAG}=dot".strip()

try:
    __version__ = importlib.metadata.version("gdbench")
except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
    __version__ = "unknown"

#: public name -> module that defines it
_EXPORTS = {
    "run": "gdbench.api",
    "load": "gdbench.api",
    "report": "gdbench.api",
    "compare": "gdbench.api",
    "reproduce": "gdbench.api",
    "Task": "gdbench.tasks.base",
    "TaskError": "gdbench.tasks.base",
    "Model": "gdbench.models.base",
    "GenerativeModel": "gdbench.models.base",
    "ClosedForm": "gdbench.models.base",
    "Newton": "gdbench.models.base",
    "Gradient": "gdbench.models.base",
    "Iterate": "gdbench.models.base",
    "Adversarial": "gdbench.models.base",
    "ModelSpecError": "gdbench.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gdbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
