"""Flax NNX models by paradigm; ``gdbench.models.get(spec)`` returns a buildable ``ModelSpec``."""

from gdbench.models.registry import ModelSpec, ModelSpecError, get, names

__all__ = ["ModelSpec", "ModelSpecError", "get", "names"]
