"""The persistent compilation cache: where it lives, and that a second process loads from it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import compile_cache

_PROGRAM = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from bench import compile_cache
    compile_cache.enable(sys.argv[1])
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
    print(float(f.lower(jnp.ones((8, 8))).compile()(jnp.ones((8, 8)))))
    print(*compile_cache.counts())
    """
)


def _run(cache_dir: Path) -> tuple[float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(cache_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def test_second_process_loads_the_program_from_the_cache(tmp_path):
    value1, hits1, asked1 = _run(tmp_path / "xla")
    # jnp.ones is a program too: count every program, and expect all of them back.
    assert hits1 == 0 and asked1 >= 1
    assert any((tmp_path / "xla").iterdir()), "the first process wrote nothing to the cache"
    value2, hits2, asked2 = _run(tmp_path / "xla")
    assert hits2 == asked2 == asked1
    assert value2 == value1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GDBENCH_COMPILE_CACHE": "/data/xla"}, Path("/data/xla")),
        ({"GDBENCH_COMPILE_CACHE": "off"}, None),
        ({"GDBENCH_COMPILE_CACHE": "", "XDG_CACHE_HOME": "/xdg"}, Path("/xdg/gdbench/xla")),
    ],
)
def test_default_dir_follows_the_environment(monkeypatch, env, expected):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert compile_cache.default_dir() == expected


def test_default_dir_without_environment_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GDBENCH_COMPILE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.default_dir() == tmp_path / ".cache" / "gdbench" / "xla"
