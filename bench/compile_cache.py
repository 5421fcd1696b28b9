"""JAX's persistent compilation cache, on by default for ``gdbench run``.

A grid's fit and evaluate programs depend only on the task's shapes, the model's configuration,
the cell batch and the JAX/XLA versions, so a second run of a suite (or a resumed one) loads
them from disk instead of compiling again. The cache lives in, by priority: ``--compile-cache
DIR``, ``$GDBENCH_COMPILE_CACHE``, ``$XDG_CACHE_HOME/gdbench/xla``, ``~/.cache/gdbench/xla``.
``--no-compile-cache`` (or ``GDBENCH_COMPILE_CACHE=off``) turns it off. Results do not depend on
it: a program loaded from the cache is the executable XLA compiled before.

Every program is cached, however fast it compiled (JAX's default skips those under one second,
which would leave most of the quick suite's programs out).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax
from jax._src import monitoring  # noqa: PLC2701 (JAX's event hooks have no public alias)

ENV_VAR = "GDBENCH_COMPILE_CACHE"
OFF = ("off", "none", "0", "false", "no")
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"

_lock = threading.Lock()
_counts = {_HIT_EVENT: 0, _REQUEST_EVENT: 0}
_listening = False


def default_dir() -> Path | None:
    """The cache directory from the environment, or None when it says the cache is off."""
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gdbench" / "xla"


def enable(path: str | Path | None) -> Path | None:
    """Use `path` as JAX's persistent compilation cache (None: leave it off). Returns the path.

    Counting of cache hits starts here (see `counts`)."""
    _listen()
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def counts() -> tuple[int, int]:
    """(programs loaded from the cache, programs that asked the cache) since `enable`."""
    with _lock:
        return _counts[_HIT_EVENT], _counts[_REQUEST_EVENT]


def _on_event(event: str, **_kwargs) -> None:
    if event in _counts:
        with _lock:
            _counts[event] += 1


def _listen() -> None:
    global _listening
    with _lock:
        if not _listening:
            monitoring.register_event_listener(_on_event)
            _listening = True
