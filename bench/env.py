"""``gdbench env``: devices, library versions and a measured matmul peak."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from results import provenance


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 FLOP/s of an ``n x n`` matmul on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def describe() -> str:
    info = provenance.collect()
    lines = [f"gdbench {info.get('gdbench_version')}"]
    if info.get("git_commit"):
        dirty = " (dirty)" if info.get("git_dirty") else ""
        lines.append(f"git commit: {info['git_commit']}{dirty}")
    lines.append(f"python: {info.get('python')}")
    for name, version in sorted(info.get("versions", {}).items()):
        lines.append(f"{name}: {version}")
    lines.append(f"jax backend: {jax.default_backend()}")
    for d in jax.devices():
        lines.append(f"device {d.id}: {d.platform} {d.device_kind}")
    peak = matmul_peak_flops()
    lines.append(f"measured float32 matmul peak (2048^3, best of 5): {peak / 1e9:.1f} GFLOP/s")
    return "\n".join(lines)
