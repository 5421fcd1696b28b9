"""XLA's CPU backend sums correctly over every lane of a vmapped batch once gdbench is imported.

jaxlib 0.10's CPU backend hands fused elementwise-and-reduce computations to YNNPACK, which
returned wrong sums for lanes 26 and later of a batch of 64 cells (``sum_i w_i * (one_hot(y_i)
* s_i).sum()``, the picked-score term of the softmax loss, over 1,258 examples x 10 classes:
digits_bin's pool). L-BFGS and Newton's line search then compared wrong objective values,
and the decrement test passed on cells far from their optimum. ``import gdbench`` limits the
library fusions to matrix products (``gdbench.YNN_FLAG``); each lane is checked here against
the same function run on that lane alone, and in NumPy.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import gdbench

CHECK = """
import gdbench, os, sys
import jax, jax.numpy as jnp, numpy as np
B, N, K = 64, 1258, 10
rng = np.random.default_rng(0)
s = rng.normal(size=(B, N, K)).astype(np.float32) * 3
w = (rng.uniform(size=(B, N)) < 0.07).astype(np.float32)
y = rng.integers(0, K, N)
def f(s, w):
    picked = (jax.nn.one_hot(y, K, dtype=s.dtype) * s).sum(-1)
    return jnp.sum(jnp.where(w > 0, w * picked, 0.0))
batched = np.asarray(jax.jit(jax.vmap(f))(s, w))
alone = np.array([jax.jit(f)(s[i], w[i]) for i in range(B)])
numpy = np.array([(w[i] * s[i][np.arange(N), y]).sum() for i in range(B)])
bad = np.flatnonzero(~np.isclose(batched, numpy, rtol=1e-4, atol=1e-3))
assert np.allclose(alone, numpy, rtol=1e-4, atol=1e-3)
print(os.environ.get("XLA_FLAGS", ""))
sys.exit(f"wrong lanes: {bad.tolist()}" if len(bad) else 0)
"""


@pytest.mark.fast
def test_every_lane_of_a_vmapped_reduction_is_right_after_import_gdbench():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{gdbench.YNN_FLAG}=dot" in done.stdout


def test_a_user_choice_of_library_fusions_is_kept():
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {gdbench.YNN_FLAG}=",
    }
    code = "import gdbench, os; print(os.environ['XLA_FLAGS'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == env["XLA_FLAGS"]
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == [
        "--xla_force_host_platform_device_count=2",
        f"{gdbench.YNN_FLAG}=dot",
    ]
