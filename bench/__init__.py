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
from typing import Any

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
