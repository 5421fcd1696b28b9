"""Run provenance: software versions, host, git state and JAX/XLA settings, without JAX.

Nothing here imports jax: versions come from installed package metadata, so provenance can be
collected (and reports built) on a machine without an accelerator stack. Device facts (kind,
count) are known only to the engine, which passes them in through `extra`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "tensorflow-datasets",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
)
ENV_PREFIXES = ("JAX_",)
ENV_NAMES = ("XLA_FLAGS",)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_GIT_TIMEOUT_S = 10.0


def collect(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of the current process, as a JSON-ready dict.

    Keys: `gdbench_version`, `versions` (distribution name -> version, None if not installed),
    `python`, `platform`, `machine`, `hostname`, `cpu_model` (`cpu_model()`), `cpu_count`,
    `argv` (this process's `sys.argv`), `git_commit` and `git_dirty` (None when git or the
    repository is unavailable), `git_diff_sha256` (`git_diff_sha256()` when the tree is dirty,
    else None), `env` (XLA_FLAGS and JAX_* variables that are set), `timestamp_utc` (ISO
    8601). `extra` (e.g. {"device_kind": "NVIDIA H100", "device_count": 1}) is merged in at
    the top level; a key that clashes with a collected one raises `ValueError`.
    """
    commit, dirty = git_state(_REPO_ROOT) if _source_project() else (None, None)
    diff_hash = git_diff_sha256(_REPO_ROOT) if dirty else None
    info: dict[str, Any] = {
        "gdbench_version": gdbench_version(),
        "versions": {name: _version(name) for name in DISTRIBUTIONS},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "argv": list(sys.argv),
        "git_commit": commit,
        "git_dirty": dirty,
        "git_diff_sha256": diff_hash,
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k in ENV_NAMES or k.startswith(ENV_PREFIXES)
        },
        "timestamp_utc": utc_now(),
    }
    for key, value in (extra or {}).items():
        if key in info:
            raise ValueError(f"extra provenance key {key!r} clashes with a collected key")
        info[key] = value
    return info


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a 'Z' suffix, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def gdbench_version() -> str | None:
    """The installed gdbench version, else the version in the source tree's pyproject.toml."""
    installed = _version("gdbench")
    if installed is not None:
        return installed
    project = _source_project()
    return None if project is None else project.get("version")


#: Run outputs inside the source tree: changes there (e.g. ``make reference`` replacing a
#: committed reference run) do not make the code that produced a run differ from its commit.
OUTPUT_PATHS = ("results/reference", "results/benchmarks", "runs")


def git_state(directory: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether the work tree has uncommitted or untracked changes outside the
    run-output paths ``OUTPUT_PATHS``) of the git repository containing `directory`;
    (None, None) when git or a repository is missing."""
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    excluded = [f":(top,exclude){path}" for path in OUTPUT_PATHS]
    status = _git(directory, "status", "--porcelain", "--", ":(top)", *excluded)
    return commit, (None if status is None else status != "")


def git_diff_sha256(directory: Path) -> str | None:
    """SHA-256 (hex) of the uncommitted changes to tracked files of the repository containing
    `directory`, outside ``OUTPUT_PATHS``: the bytes of

        git diff HEAD --no-ext-diff --no-color --binary -- ':(top)' \\
            ':(top,exclude)results/reference' ':(top,exclude)results/benchmarks' \\
            ':(top,exclude)runs'

    (run from the repository root, piped to ``sha256sum``, it gives the same hash). Untracked
    files are not in it. None when git or the repository is missing."""
    excluded = [f":(top,exclude){path}" for path in OUTPUT_PATHS]
    args = ["diff", "HEAD", "--no-ext-diff", "--no-color", "--binary", "--", ":(top)", *excluded]
    diff = _git_bytes(directory, *args)
    return None if diff is None else hashlib.sha256(diff).hexdigest()


def cpu_model() -> str | None:
    """The CPU's model name: /proc/cpuinfo's first "model name" (Linux), else ``sysctl -n
    machdep.cpu.brand_string`` (macOS), else ``platform.processor()``; None when none says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def _source_project() -> dict[str, Any] | None:
    """The [project] table when this package runs from a gdbench source tree, else None
    (an installed copy in site-packages must not report the git state of some other repo)."""
    try:
        project = tomllib.loads((_REPO_ROOT / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return None
    return project if isinstance(project, dict) and project.get("name") == "gdbench" else None


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_bytes(directory: Path, *args: str) -> bytes | None:
    """The raw standard output of ``git -C directory ARGS``; None when it fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
