"""Task specs and loaders; ``gdbench.tasks.load(name)`` returns a ``Task``."""

from gdbench.tasks.base import Task, TaskError
from gdbench.tasks.registry import check_name, load, names

__all__ = ["Task", "TaskError", "check_name", "load", "names"]
