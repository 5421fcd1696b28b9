"""Compiled programs kept on disk, on by default for ``gdbench run``: two layers, and a memo.

A grid's fit and evaluate programs depend only on the task, the model's configuration, the cell
batch, the code and the JAX/XLA versions, so a second run of a suite (or a resumed one) loads
them from disk instead of compiling again. The cache lives in, by priority: ``--compile-cache
DIR``, ``$GDBENCH_COMPILE_CACHE``, ``$XDG_CACHE_HOME/gdbench/xla``, ``~/.cache/gdbench/xla``.
``--no-compile-cache`` (or ``GDBENCH_COMPILE_CACHE=off``) turns both layers off. Results do not
depend on it: a program loaded from the cache is the executable XLA compiled before.

- **Programs** (``compile_program``, used for every program of a grid), in ``DIR/programs``:
  the serialized executable, keyed by everything the traced program is a function of
  (``program_key``: the code version, i.e. every source file of ``bench``/``models``/``tasks``
  and the numerical libraries' versions; the program's name and static description: task with
  its data checksum (``grid_static``: for a grid's fit and evaluate programs, its shapes and
  preprocessing only), model with its hyperparameters, chunk sizes, mesh; the arguments' tree,
  shapes, dtypes and shardings; the JAX configuration, ``XLA_FLAGS``, the threefry lowering,
  the devices and the host CPU's model and flags). A hit skips tracing and lowering as well as
  compiling, which is most of what a warm run spent on programs with JAX's cache alone.
  Beside each program, its cost analysis (``cost_model``: ``<key>.cost.json``).
- **In the process** (``compile_program``'s memo, with the disk cache on or off): a program
  asked for again, by the same grid or another whose program it is, is not compiled again.
- **JAX's persistent compilation cache** (keyed by the lowered program itself) in ``DIR``, for
  the small programs outside the grids (array creation, PRNG keys). Every program is cached,
  however fast it compiled (JAX's default skips those under one second). The grid programs
  bypass it (``_compile_fresh``), so an edit to the code compiles each of them again once.

**Both layers hold executable code**: loading an entry runs what its writer compiled. So the
cache has a trust boundary, as ssh has for its keys (``trusted``): the directory is created
private to the user (mode 0700, entries 0600), and a cache directory, programs directory or
entry that another user owns or that anyone but its owner can write is not loaded: a one-line
warning says why and how to fix the permissions, and the run compiles afresh. A directory shared
on purpose between people who trust each other (each of whom can then run code as the others)
is accepted with ``GDBENCH_TRUST_CACHE=1``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import os
import pickle
import platform
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
from jax._src import monitoring  # noqa: PLC2701 (JAX's event hooks have no public alias)
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache.compilation_cache import reset_cache

from gdbench import lowering
from gdbench.codeversion import code_version
from gdbench.cost import CostModel
from gdbench.cost import cost_model as analyse
from gdbench.results import store

if TYPE_CHECKING:
    from gdbench.models.registry import ModelSpec
    from gdbench.tasks.base import Task

ENV_VAR = "GDBENCH_COMPILE_CACHE"
#: Set to 1 to load a cache that another user owns or can write (see ``trusted``).
TRUST_VAR = "GDBENCH_TRUST_CACHE"
OFF = ("off", "none", "0", "false", "no")
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"

#: Subdirectory of the cache directory holding the serialized programs (``compile_program``).
PROGRAMS = "programs"
#: The programs layer's size bound (``evict``): the quick suite's 241 programs take about
#: 8 MB, so this keeps the programs of many code versions and suites.
MAX_PROGRAM_BYTES = 2 * 1024**3
#: A temporary file of the programs layer older than this (seconds) was left by a killed writer.
_STALE_TMP_S = 3600
#: Bumped when the stored format or the key's content changes.
FORMAT = 1
#: JAX options that do not change a compiled program (the cache's own settings, logging).
_UNKEYED = (
    "jax_compilation_cache",
    "jax_enable_compilation_cache",
    "jax_persistent_cache",
    "jax_raise_persistent_cache_errors",
    "jax_log_compiles",
    "jax_explain_cache_misses",
    "jax_logging_level",
    "jax_pprint_use_color",
)

_lock = threading.Lock()
_counts = {_HIT_EVENT: 0, _REQUEST_EVENT: 0}
_programs = {"hits": 0, "dir": None}
#: Programs this process compiled or loaded, by ``program_key`` (most recent last): two grids
#: whose programs are the same program (``grid_static``: two tasks of the same shapes, such as
#: ``digits_0v1`` and ``digits_2v3``, or ``gauss_nb`` and ``gauss_corr``, with one model) compile
#: it once per process, with the disk cache on or off. At most ``MEMO_PROGRAMS`` are kept.
_memo: collections.OrderedDict[str, jax.stages.Compiled] = collections.OrderedDict()
MEMO_PROGRAMS = 64
#: Cost models (``cost_model``) of the programs in ``_memo``, by ``program_key``.
_cost_memo: dict[str, CostModel] = {}
#: Suffix of a program's cost model in the programs layer (next to its ``.xla``).
COST_SUFFIX = ".cost.json"
_listening = False


def default_dir() -> Path | None:
    """The cache directory from the environment, or None when it says the cache is off."""
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gdbench" / "xla"


def enable(path: str | Path | None) -> Path | None:
    """Use `path` as the compilation cache, both layers (None: leave it off). Returns the path.

    Counting of cache hits starts here (see `counts`). The programs layer is trimmed to
    ``MAX_PROGRAM_BYTES`` here (``evict``). The in-process memo of programs is emptied."""
    _listen()
    clear_memo()
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        _programs["dir"] = None
        return None
    path = Path(path).expanduser()
    _make_private_dirs(path / PROGRAMS)
    problem = untrusted_reason(path) or untrusted_reason(path / PROGRAMS)
    if problem is not None:
        warnings.warn(
            f"compilation cache not used: {problem}; it holds executable code, so gdbench loads "
            f"only a cache that is yours and writable by you alone (fix: chmod go-w {path} "
            f"{path / PROGRAMS}; or set {TRUST_VAR}=1 if everyone who can write it is trusted)",
            stacklevel=2,
        )
        jax.config.update("jax_enable_compilation_cache", False)
        _programs["dir"] = None
        return None
    _programs["dir"] = path / PROGRAMS
    evict(path / PROGRAMS, MAX_PROGRAM_BYTES)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _make_private_dirs(path: Path) -> None:
    """``mkdir -p`` with the directories it creates private to the user (mode 0700)."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    path.mkdir(parents=True, exist_ok=True)


def untrusted_reason(path: Path) -> str | None:
    """Why ``path`` (a cache directory or entry) must not be loaded, or None when it may be.

    Not loaded: a path owned by another user (root's excepted, as ssh does), or one that its
    group or others can write (a directory with the sticky bit, like /tmp, still lets others
    replace nothing of ours, but its entries are checked one by one). ``GDBENCH_TRUST_CACHE=1``
    accepts everything."""
    if os.environ.get(TRUST_VAR, "").strip() in ("1", "true", "yes"):
        return None
    try:
        st = path.stat()
    except OSError:
        return None  # nothing there to load
    if not hasattr(os, "geteuid"):
        return None  # no POSIX owners (Windows): nothing to check
    uid = os.geteuid()
    if st.st_uid not in (uid, 0):
        return f"{path} is owned by another user (uid {st.st_uid})"
    writable = st.st_mode & 0o022
    sticky_dir = path.is_dir() and st.st_mode & 0o1000
    if writable and not sticky_dir:
        return f"{path} is writable by other users (mode {st.st_mode & 0o7777:04o})"
    return None


def evict(programs_dir: Path, max_bytes: int) -> list[Path]:
    """Delete the least recently used programs and cost models (by modification time: a load
    touches its file) until the rest take at most ``max_bytes``; returns the deleted paths.
    Every edit to the code makes new entries (the key holds the code version), so without this
    the directory would grow with each version run. A program deleted under a process that is
    about to read it is compiled again there."""
    entries, deleted = [], []
    for entry in programs_dir.iterdir():
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue
        if entry.suffix == ".xla" or entry.name.endswith(COST_SUFFIX):
            entries.append((stat.st_mtime_ns, stat.st_size, entry))
        elif entry.suffix == ".tmp" and time.time() - stat.st_mtime > _STALE_TMP_S:
            entry.unlink(missing_ok=True)  # left by a writer that was killed
            deleted.append(entry)
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= max_bytes:
            break
        entry.unlink(missing_ok=True)
        total -= size
        deleted.append(entry)
    return deleted


def directory() -> Path | None:
    """The cache directory in use (``enable``), or None when the cache is off."""
    return None if _programs["dir"] is None else _programs["dir"].parent


def counts() -> tuple[int, int]:
    """(programs loaded from the cache, programs that asked the cache) since `enable`: those
    ``compile_program`` loaded, and those that went to JAX's cache (hits and requests)."""
    with _lock:
        hits = _programs["hits"]
        return hits + _counts[_HIT_EVENT], hits + _counts[_REQUEST_EVENT]


def compile_program(
    fn: Callable, args: tuple, name: str, static: Any
) -> tuple[jax.stages.Compiled, bool]:
    """``jax.jit(fn).lower(*args).compile()``, or the same executable loaded from the cache.

    ``name`` names the program (``"fit"``, ``"evaluate"``, ...) and ``static`` (JSON-able)
    describes everything else ``fn`` is built from: what its closure holds (task, model
    configuration, chunk sizes, mesh). Two programs with the same name, static description,
    arguments' structure and types, code version and JAX set-up must be the same program:
    callers put all of that in. Returns the compiled program and whether it came from a cache.
    With the cache off (``enable(None)``, or never enabled), compiles (through JAX's cache if
    something else turned that on). A stored program that cannot be read back (truncated,
    written by another JAX) is compiled again and replaced.
    """
    key = program_key(name, static, args)
    with _lock:
        compiled = _memo.get(key)
        if compiled is not None:
            _memo.move_to_end(key)
    if compiled is not None:
        return compiled, True
    compiled, cached = _compile_or_load(fn, args, key)
    with _lock:
        _memo[key] = compiled
        while len(_memo) > MEMO_PROGRAMS:
            _cost_memo.pop(_memo.popitem(last=False)[0], None)
    return compiled, cached


def cost_model(compiled: jax.stages.Compiled) -> CostModel:
    """``gdbench.cost.cost_model`` of a program, kept with it: in the process for a program
    ``compile_program`` gave, and in the programs layer next to its executable
    (``<key>.cost.json``), so that a warm run reads its programs' costs instead of printing,
    parsing and re-analysing each (0.3 to 0.4 s of a warm ``breast_cancer`` process). The
    model is a function of the executable, which the key names; an entry that cannot be read
    back, or that the trust check refuses (``untrusted_reason``), is analysed again."""
    with _lock:
        key = next((k for k, c in _memo.items() if c is compiled), None)
        model = _cost_memo.get(key) if key is not None else None
    if model is not None:
        return model
    programs_dir = _programs["dir"]
    path = None if key is None or programs_dir is None else programs_dir / f"{key}{COST_SUFFIX}"
    model = _load_cost(path) if path is not None else None
    if model is None:
        model = analyse(compiled)
        if path is not None:
            text = json.dumps(model.to_json()).encode()
            with contextlib.suppress(OSError):
                store.atomic_write(path, lambda f: f.write(text), durable=False, private=True)
    if key is not None:
        with _lock:
            if key in _memo:
                _cost_memo[key] = model
    return model


def _load_cost(path: Path) -> CostModel | None:
    if not path.exists() or untrusted_reason(path) is not None:
        return None
    try:
        model = CostModel.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: evicted last, with its program
    return model


def clear_memo() -> None:
    """Forget the programs this process compiled or loaded (``compile_program``'s memo): the
    next request goes to the disk cache or compiles."""
    with _lock:
        _memo.clear()
        _cost_memo.clear()


def _compile_or_load(fn: Callable, args: tuple, key: str) -> tuple[jax.stages.Compiled, bool]:
    """``compile_program`` past the in-process memo: the disk cache, or a compilation."""
    programs_dir = _programs["dir"]
    if programs_dir is None:
        return _compile_counting(fn, args)
    path = programs_dir / f"{key}.xla"
    compiled = _load(path)
    if compiled is not None:
        with _lock:
            _programs["hits"] += 1
        return compiled, True
    compiled = _compile_fresh(jax.jit(fn).lower(*args))
    _store(path, compiled)
    return compiled, False


def program_key(name: str, static: Any, args: tuple) -> str:
    """Hex key of the program ``compile_program`` would build from ``(fn, args, name, static)``."""
    leaves, treedef = jax.tree.flatten(args)
    content = {
        "format": FORMAT,
        "code": code_version(),
        "name": name,
        "static": static,
        "tree": str(treedef),
        "args": [_describe(a) for a in leaves],
        "jax": {k: repr(v) for k, v in jax.config.values.items() if not k.startswith(_UNKEYED)},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "threefry_unrolled": lowering.in_use(),
        "devices": [(d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices()],
        "host_cpu": host_cpu(),
        "platform_version": jax.devices()[0].client.platform_version,
    }
    text = json.dumps(content, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def grid_static(task: Task, spec: ModelSpec, mesh: jax.sharding.Mesh | None) -> dict:
    """``program_static`` for a grid's fit and evaluate programs (``gdbench.engine``), which read
    the task's data only through their arguments: the task enters by what the programs are
    built from (dimensions, classes, feature kind, preprocessing, image shape), not by its name
    or data, so tasks of the same shapes share the programs (``compile_program``'s memo); the
    model by its configuration without the ``traced_hyperparameters``, which the programs take
    as arguments (``gdbench.engine.traced_args``)."""
    meta = task.metadata()
    shape = ("dim", "num_classes", "feature_kind", "preprocess")
    return {
        "task": {**{k: meta[k] for k in shape}, "image_shape": task.image_shape},
        # Without the traced hyperparameters' values: the programs take them as arguments.
        "model": [spec.name, spec.paradigm, spec.program_json()],
        "mesh": None if mesh is None else repr(mesh),
    }


def program_static(task: Task, spec: ModelSpec, mesh: jax.sharding.Mesh | None) -> dict:
    """What a grid's programs are built from besides their arguments, for
    ``compile_cache.compile_program``: the task (its data checksum, shapes, preprocessing), the
    model and its hyperparameters, and the device mesh."""
    return {
        "task": {**task.metadata(), "image_shape": task.image_shape},
        "model": [spec.name, spec.spec, spec.paradigm, spec.config_json()],
        "mesh": None if mesh is None else repr(mesh),
    }


@functools.cache
def host_cpu() -> str:
    """The host CPU's model and instruction-set flags: XLA:CPU compiles for the features of the
    CPU it runs on, so a cache directory shared between machines (a network home) must not hand
    one machine's programs to another."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return " | ".join(fields.get(k, "") for k in ("model name", "flags", "Features", "CPU part"))


def _describe(leaf: Any) -> list:
    """Type, shape, dtype, weak type and placement of one argument."""
    aval = jax.typeof(leaf)
    sharding = getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) else None
    return [type(leaf).__name__, str(aval), bool(aval.weak_type), repr(sharding)]


def _compile_counting(fn: Callable, args: tuple) -> tuple[jax.stages.Compiled, bool]:
    """Lower and compile ``fn`` (through JAX's cache when it is on); whether JAX's cache hit.
    Hits are counted around ``.compile()`` only: tracing may run small programs of its own
    (``jax.ensure_compile_time_eval``), which are not this one."""
    lowered = jax.jit(fn).lower(*args)
    before = counts()[0]
    compiled = lowered.compile()
    return compiled, counts()[0] > before


@functools.cache
def _runtime_ready() -> bool:
    """Set up what lowering would have set up for the executables it loads: JAX points its CPU
    LAPACK kernels (Cholesky, eigh, triangular solves: custom calls in the compiled code) at
    scipy's LAPACK only when it lowers such an operation, so a program loaded without lowering
    would call null pointers. False (the cache is then not read) if this JAX has no such step."""
    try:
        from jax._src.lax import linalg  # noqa: PLC2701 - JAX has no public alias for it

        linalg.initialize_lapack()
    except (ImportError, AttributeError):
        return False
    return True


def _compile_fresh(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """Compile with JAX's persistent cache bypassed. An executable JAX loaded from its cache
    does not serialize completely on CPU (jaxlib 0.10: the program it writes fails to run,
    "Function ... not found"), so a program for this cache is always compiled afresh; JAX's
    cache is switched off around the compilation (``reset_cache``: it decides once whether it
    is used) and on again after it."""
    enabled = jax.config.values["jax_enable_compilation_cache"]
    jax.config.update("jax_enable_compilation_cache", False)
    reset_cache()
    try:
        return lowered.compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        reset_cache()


def _load(path: Path) -> jax.stages.Compiled | None:
    if not _runtime_ready():
        return None
    if not path.exists():
        return None
    problem = untrusted_reason(path)
    if problem is not None:
        warnings.warn(
            f"compiled program not loaded: {problem}; compiling it instead (fix: chmod go-w "
            f"{path}, or delete it)",
            stacklevel=3,
        )
        return None
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        payload, in_tree, out_tree = pickle.loads(zlib.decompress(blob))
        compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception as err:  # noqa: BLE001 - any unreadable entry is compiled again
        message = f"compiled program {path} unreadable ({type(err).__name__}); compiling it"
        warnings.warn(message, stacklevel=3)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: evicted last
    return compiled


def _store(path: Path, compiled: jax.stages.Compiled) -> None:
    """Write the serialized program atomically; a program that cannot be serialized (one with
    host callbacks) or a full disk leaves the cache without it."""
    try:
        blob = zlib.compress(pickle.dumps(serialize_executable.serialize(compiled)), 1)
    except Exception:  # noqa: BLE001 - not every executable serializes; it is then not kept
        return
    with contextlib.suppress(OSError):
        # A private entry (mode 0600); it replaces an untrusted one under the same name.
        store.atomic_write(path, lambda f: f.write(blob), durable=False, private=True)


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
