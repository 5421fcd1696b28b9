"""Models and tasks of your own: found by spec, by entry point, or passed as objects.

A model or a task that is not built in can come three ways:

- a **spec** on the command line or in ``gdbench.run``: ``path/to/file.py:Name`` (the file is
  imported under a private module name) or ``package.module:Name`` (imported as usual), with
  ``?key=value&...`` hyperparameters for a model, as for built-in ones;
- an **entry point** of an installed package, in the group ``gdbench.models`` or
  ``gdbench.tasks``, whose name is then used like a built-in name;
- an **object** passed to ``gdbench.run``: a model class, or a ``Task`` (``Task.from_arrays``).

A task given as code is a ``Task`` object or a function returning one, or returning the arrays
``(x_train, y_train[, x_test, y_test])`` (see ``gdbench.tasks.arrays.from_arrays``).

**Loading a plug-in runs its code**, as importing it would: use specs and entry points you
trust. A user model's source (its file, or its class's source when it has no file) is hashed
into its configuration (``gdbench.models.registry.ModelSpec.source``), so editing the file changes
the
compiled programs' cache key and the run's identity: a stale program is never loaded, and a run
directory made with the old code refuses to resume with the new.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import gdbench.models.registry as model_registry
import gdbench.tasks.registry as task_registry
from gdbench.models.registry import ModelSpecError
from gdbench.tasks.base import Task, TaskError

MODEL_GROUP = "gdbench.models"
TASK_GROUP = "gdbench.tasks"
#: ``package.module:Name`` (dotted identifiers).
_MODULE_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_][\w.]*$")
#: Prefixes of built-in task and model families, which are never plug-in specs.
_BUILTIN_PREFIXES = ("sk:", "csv:", "tfds:", "npz:")


class PluginError(ValueError):
    """A plug-in spec that cannot be loaded (one-line message)."""


def is_reference(name: str) -> bool:
    """Whether ``name`` (without ``?...``) is a ``file.py:Name`` or ``module:Name`` spec."""
    if name.startswith(_BUILTIN_PREFIXES) or ":" not in name:
        return False
    left = name.rpartition(":")[0]
    return left.endswith(".py") or bool(_MODULE_REF.match(name))


def source_hash(obj: Any, module: Any = None) -> str:
    """SHA-256 (16 hex digits) of the file that defines ``obj`` (its module's file), or of its
    own source when it has no file; empty when neither can be read."""
    path = getattr(module, "__file__", None)
    if path is None:
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:  # a built-in or an object without source
            path = None
    try:
        data = Path(path).read_bytes() if path else inspect.getsource(obj).encode()
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(data).hexdigest()[:16]


def load_reference(ref: str) -> tuple[Any, str]:
    """The object a ``file.py:Name`` or ``package.module:Name`` spec names, with its source
    hash. Importing the file or module runs its code."""
    left, _, attr = ref.rpartition(":")
    if left.endswith(".py"):
        path = Path(left).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plug-in file '{left}' of '{ref}' does not exist")
        module_name = "gdbench_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            sys.modules.pop(module_name, None)
            raise PluginError(
                f"importing plug-in file '{left}' failed: {type(err).__name__}: {err}"
            ) from None
    else:
        try:
            module = importlib.import_module(left)
        except ImportError as err:
            raise PluginError(f"cannot import module '{left}' of '{ref}': {err}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = [n for n in dir(module) if not n.startswith("_")]
            raise PluginError(
                f"'{left}' has no '{attr}'; it defines {', '.join(found[:20]) or 'nothing'}"
            )
        obj = getattr(obj, part)
    return obj, source_hash(obj, module)


def _entry_point(group: str, name: str) -> importlib.metadata.EntryPoint | None:
    found = importlib.metadata.entry_points(group=group, name=name)
    return next(iter(found), None)


def entry_point_names(group: str) -> list[str]:
    """Names of the installed entry points of ``group`` (``gdbench.models``/``gdbench.tasks``)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> tuple[Any, str]:
    try:
        obj = ep.load()
    except Exception as err:  # noqa: BLE001 - any failure of the plug-in's import
        raise PluginError(
            f"entry point '{ep.name}' ({ep.value}) failed to load: {type(err).__name__}: {err}"
        ) from None
    return obj, source_hash(obj, inspect.getmodule(obj))


#: Spec names of model classes passed as objects (``register_model_class``): already resolved.
_FROM_OBJECTS: set[str] = set()


def resolve_model(spec: str) -> str:
    """Register the model a spec names when it is a plug-in (``file.py:Class[?...]``,
    ``module:Class[?...]``, an entry point's name); returns ``spec`` unchanged. Built-in and
    already registered names pass through."""
    name = spec.partition("?")[0]
    if name in model_registry.REGISTRY or name.startswith("sk:") or name in _FROM_OBJECTS:
        return spec
    if is_reference(name):
        try:
            cls, source = load_reference(name)
        except PluginError as err:
            raise ModelSpecError(str(err)) from None
        model_registry.register(name, cls, source)
    elif (ep := _entry_point(MODEL_GROUP, name)) is not None:
        try:
            cls, source = _load_entry_point(ep)
        except PluginError as err:
            raise ModelSpecError(str(err)) from None
        model_registry.register(name, cls, source)
    return spec


def register_model_class(cls: type) -> str:
    """Register a model class passed as an object; returns its spec name ``module:Qualname``."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    model_registry.register(name, cls, source_hash(cls, inspect.getmodule(cls)))
    _FROM_OBJECTS.add(name)
    return name


def _task_loader(name: str, obj: Any):
    """A loader returning the ``Task`` named ``name`` from a plug-in object: a Task (renamed
    to ``name``), or a function returning a Task or arrays."""
    import dataclasses

    from gdbench.tasks.arrays import from_arrays

    def load() -> Task:
        value = obj() if callable(obj) and not isinstance(obj, Task) else obj
        if isinstance(value, Task):
            return value if value.name == name else dataclasses.replace(value, name=name)
        if isinstance(value, tuple | list) and len(value) in (2, 4):
            return from_arrays(name, *value)
        raise TaskError(
            f"task '{name}' must be a Task, or a function returning a Task or the arrays "
            f"(x_train, y_train[, x_test, y_test]); it gave a {type(value).__name__}"
        )

    return load


def resolve_task(name: str) -> str:
    """Register the task a name refers to when it is a plug-in (``file.py:function``,
    ``module:function``, an entry point); returns ``name``. Other names pass through."""
    if name in task_registry.REGISTRY or name.startswith(_BUILTIN_PREFIXES):
        return name
    if is_reference(name):
        try:
            obj, source = load_reference(name)
        except PluginError as err:
            raise TaskError(str(err)) from None
    elif (ep := _entry_point(TASK_GROUP, name)) is not None:
        try:
            obj, source = _load_entry_point(ep)
        except PluginError as err:
            raise TaskError(str(err)) from None
    else:
        return name
    description = (inspect.getdoc(obj) or "").splitlines()[0] if callable(obj) else ""
    task_registry.register(name, _task_loader(name, obj), description or f"plug-in {name}")
    return name


def register_task(task: Task) -> str:
    """Register a ``Task`` object passed to ``gdbench.run``; returns its name."""
    if not isinstance(task, Task):
        raise TaskError(f"expected a Task (Task.from_arrays), got a {type(task).__name__}")
    task_registry.register(task.name, lambda: task, task.description)
    return task.name
