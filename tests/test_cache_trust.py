"""The compilation cache's trust boundary (it holds executable code) and the modes of files
gdbench writes: caches private to the user, run data with the user's umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from gdbench import compile_cache
from gdbench.results import store

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _double(x):
    return 2.0 * x


@pytest.fixture
def restore_cache():
    before = compile_cache.directory()
    yield
    compile_cache.enable(before)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.fast
def test_reasons(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.TRUST_VAR, raising=False)
    entry = tmp_path / "entry.xla"
    entry.write_bytes(b"x")
    entry.chmod(0o600)
    assert compile_cache.untrusted_reason(entry) is None
    entry.chmod(0o646)
    assert "writable by other users (mode 0646)" in compile_cache.untrusted_reason(entry)
    entry.chmod(0o620)  # group-writable
    assert "writable by other users" in compile_cache.untrusted_reason(entry)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "writable by other users (mode 0777)" in compile_cache.untrusted_reason(shared)
    shared.chmod(0o1777)  # like /tmp: others cannot replace what is ours
    assert compile_cache.untrusted_reason(shared) is None
    monkeypatch.setenv(compile_cache.TRUST_VAR, "1")
    entry.chmod(0o666)
    assert compile_cache.untrusted_reason(entry) is None
    assert compile_cache.untrusted_reason(tmp_path / "missing") is None


@pytest.mark.skipif(not IS_ROOT, reason="changing a file's owner needs root")
def test_another_users_entry_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.TRUST_VAR, raising=False)
    entry = tmp_path / "entry.xla"
    entry.write_bytes(b"x")
    entry.chmod(0o600)
    os.chown(entry, 12345, 12345)
    assert "owned by another user (uid 12345)" in compile_cache.untrusted_reason(entry)


def test_created_cache_is_private(tmp_path, restore_cache, umask_022, monkeypatch):
    monkeypatch.delenv(compile_cache.TRUST_VAR, raising=False)
    root = tmp_path / "cache" / "gdbench" / "xla"
    assert compile_cache.enable(root) == root
    for directory in (tmp_path / "cache", tmp_path / "cache" / "gdbench", root, root / "programs"):
        assert _mode(directory) == 0o700, directory
    x = jnp.arange(4.0)
    compile_cache.compile_program(_double, (x,), "double", {})
    (entry,) = (root / compile_cache.PROGRAMS).glob("*.xla")
    assert _mode(entry) == 0o600


def test_world_writable_cache_directory_is_not_used(tmp_path, restore_cache, monkeypatch):
    monkeypatch.delenv(compile_cache.TRUST_VAR, raising=False)
    root = tmp_path / "xla"
    (root / compile_cache.PROGRAMS).mkdir(parents=True)
    root.chmod(0o777)
    with pytest.warns(UserWarning, match=r"compilation cache not used: .* writable by other users"):
        assert compile_cache.enable(root) is None
    assert compile_cache.directory() is None
    x = jnp.arange(3.0)
    _, cached = compile_cache.compile_program(_double, (x,), "double", {})
    assert not cached
    assert not list((root / compile_cache.PROGRAMS).iterdir())  # nothing written there either
    monkeypatch.setenv(compile_cache.TRUST_VAR, "1")
    assert compile_cache.enable(root) == root  # shared on purpose


def test_world_writable_entry_is_compiled_again_not_loaded(
    tmp_path, restore_cache, umask_022, monkeypatch
):
    """A planted (or carelessly shared) entry is never deserialized: the program is compiled
    again and the entry replaced by a private one."""
    monkeypatch.delenv(compile_cache.TRUST_VAR, raising=False)
    compile_cache.enable(tmp_path / "xla")
    x = jnp.arange(5.0)
    compiled, cached = compile_cache.compile_program(_double, (x,), "double", {})
    assert not cached
    (entry,) = (tmp_path / "xla" / compile_cache.PROGRAMS).glob("*.xla")
    entry.chmod(0o666)
    compile_cache.clear_memo()  # a new process: only the disk layer has the program
    with pytest.warns(UserWarning, match="compiled program not loaded: .* writable by other users"):
        again, cached = compile_cache.compile_program(_double, (x,), "double", {})
    assert not cached
    np.testing.assert_array_equal(again(x), compiled(x))
    assert _mode(entry) == 0o600  # replaced by a private entry
    compile_cache.clear_memo()
    assert compile_cache.compile_program(_double, (x,), "double", {})[1]  # and loaded next time


def test_run_data_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store.atomic_write(tmp_path / "shared.json", lambda f: f.write(b"{}"))
        store.atomic_write(tmp_path / "private.bin", lambda f: f.write(b"x"), private=True)
        os.umask(0o077)
        store.atomic_write(tmp_path / "strict.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "shared.json") == 0o644
    assert _mode(tmp_path / "private.bin") == 0o600
    assert _mode(tmp_path / "strict.json") == 0o600


def test_manifest_and_rows_are_readable_by_the_group_with_umask_022(tmp_path):
    from tests.test_results_store import grid_rows

    old = os.umask(0o022)
    try:
        store.write_manifest(tmp_path, {"schema_version": 1, "name": "x"})
        part = store.write_grid(tmp_path, grid_rows(), "part")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "manifest.json") == 0o644
    assert _mode(part) == 0o644


def test_feature_cache_follows_xdg(monkeypatch, tmp_path):
    from gdbench import quality

    monkeypatch.delenv(quality.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert quality.default_cache_dir() == tmp_path / "xdg" / "gdbench" / "features"
    monkeypatch.setenv(quality.CACHE_ENV, str(tmp_path / "own"))
    assert quality.default_cache_dir() == tmp_path / "own"
    monkeypatch.delenv(quality.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert quality.default_cache_dir() == tmp_path / "home" / ".cache" / "gdbench" / "features"
    monkeypatch.setenv(quality.CACHE_ENV, "~/feat")  # as the compilation cache's variable
    assert quality.default_cache_dir() == tmp_path / "home" / "feat"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_feature_cache_files_follow_the_umask(tmp_path, mask, mode):
    """The feature nets' cache holds data (read without pickles), not code: its files get the
    user's umask, as run data do (the compilation cache is private whatever the umask)."""
    from gdbench import quality

    params = {
        "shift": np.zeros(3, np.float32),
        "scale": np.ones(3, np.float32),
        "layers": ({"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)},),
    }
    path = tmp_path / "features" / "task-abc.npz"
    old = os.umask(mask)
    try:
        quality._save(path, params, 0.75, "abc")
    finally:
        os.umask(old)
    assert _mode(path) == mode
    assert _mode(path.parent) == 0o777 & ~mask
    loaded, accuracy = quality._load(path, "abc")
    assert accuracy == 0.75 and np.asarray(loaded["layers"][0]["kernel"]).shape == (3, 2)
