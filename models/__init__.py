"""Flax NNX models by paradigm; ``models.get(spec)`` returns a buildable ``ModelSpec``."""

from models.registry import ModelSpec, ModelSpecError, get, names

__all__ = ["ModelSpec", "ModelSpecError", "get", "names"]
