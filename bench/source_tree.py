"""Run gdbench from its source tree without installing it (e.g. on an accelerator machine
whose Python has JAX but where nothing may be installed): ``python bench/source_tree.py -m
gdbench.device_reference ...`` or ``python bench/source_tree.py -m gdbench.cli run ...``.

The source folders are mapped into the package ``gdbench`` as ``pyproject.toml``'s
``package-dir`` does for an installed copy (``bench/`` is ``gdbench``, ``models/`` is
``gdbench.models``, ...), by a finder placed first on ``sys.meta_path``; the module is then run
as ``python -m`` would run it. ``bench.cli.command`` starts child processes the same way when
this finder is in use.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: package -> its source folder (as pyproject.toml's package-dir)
PACKAGES = {
    "gdbench": ROOT / "bench",
    "gdbench.models": ROOT / "models",
    "gdbench.tasks": ROOT / "tasks",
    "gdbench.results": ROOT / "results",
    "gdbench.reports": ROOT / "reports",
}


class SourceFinder:
    """Finds the mapped packages in the source tree (their submodules are found through the
    package's ``__path__`` as usual)."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        folder = PACKAGES.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install() -> None:
    """Put ``SourceFinder`` first on ``sys.meta_path`` (once)."""
    if SourceFinder not in sys.meta_path:
        sys.meta_path.insert(0, SourceFinder)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python bench/source_tree.py -m MODULE [ARGS...]")
    install()
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
