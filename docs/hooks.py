"""MkDocs hook: a source layout griffe can read for the API reference.

gdbench's source folders are mapped into the package by ``package-dir`` (bench/ is gdbench,
models/ is gdbench.models, ...), which griffe's static finder does not follow. At start-up this
hook lays out ``build/api-src/gdbench`` as links to those folders (``build/`` is git-ignored),
the search path mkdocs.yml gives mkdocstrings.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "build" / "api-src" / "gdbench"
SUBPACKAGES = ("models", "tasks", "results", "reports")


def on_startup(**kwargs):
    SOURCE.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (ROOT / "bench").iterdir() if p.name != "__pycache__"}
    wanted.update({name: ROOT / name for name in SUBPACKAGES})
    for name, target in wanted.items():
        link = SOURCE / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
