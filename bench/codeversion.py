"""The version of the code that produces numbers, for cache keys.

A hash of the Python sources of the packages whose code decides a cell's numbers (``bench``,
``models``, ``tasks``) and of the versions of the numerical libraries. It changes with any edit
to those files, committed or not, and is the same for an installed copy of the same code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

_PACKAGES = ("gdbench", "gdbench.models", "gdbench.tasks")
_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn")


@functools.cache
def code_version() -> str:
    """16 hex digits identifying the numerical code and its libraries."""
    h = hashlib.sha256()
    for package in _PACKAGES:
        # The package's own folder, wherever it is installed (editable or a wheel); a
        # subpackage mapped elsewhere is hashed under its own name.
        (folder,) = importlib.util.find_spec(package).submodule_search_locations
        root = Path(folder)
        for path in sorted(root.rglob("*.py")):
            h.update(f"{package}/{path.relative_to(root).as_posix()}".encode())
            h.update(path.read_bytes())
    for lib in _LIBRARIES:
        try:
            h.update(f"{lib}=={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}==none".encode())
    return h.hexdigest()[:16]
