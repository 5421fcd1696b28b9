"""Task specs and loaders; ``tasks.load(name)`` returns a ``Task``."""

from tasks.base import Task, TaskError
from tasks.registry import check_name, load, names

__all__ = ["Task", "TaskError", "check_name", "load", "names"]
