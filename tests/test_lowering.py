"""``gdbench.lowering``: the threefry hash lowered unrolled on CPU gives the same random numbers.

References: the Random123 known-answer vector of threefry2x32 (20 rounds), and the same grid
run in a process that keeps JAX's own rolled CPU lowering (every metric bit-for-bit equal).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.extend.random
import numpy as np
import pytest

from gdbench import engine, lowering, models, tasks  # engine turns it on at import

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("accuracy", "nll", "ece", "brier", "log_lik")


def test_unrolled_lowering_only_with_the_checked_jax_versions():
    assert lowering.supported("0.10.2") and lowering.supported("0.9.0")
    assert not lowering.supported("0.11.2") and not lowering.supported("1.0.0")
    assert not lowering.supported("unknown")


def _skip_unless_unrolled() -> None:
    if not lowering.supported(jax.__version__):
        pytest.skip(
            f"JAX {jax.__version__} is newer than the versions the unrolled CPU lowering was "
            "checked with (bench.lowering.NEWEST_CHECKED): it is not used, nothing to compare"
        )


@pytest.mark.fast
def test_a_newer_jax_keeps_its_own_lowering(monkeypatch):
    """With a JAX newer than the checked versions nothing is replaced (whatever JAX runs here)."""
    monkeypatch.setattr(lowering, "_done", False)
    monkeypatch.setattr(jax, "__version__", "0.11.2")
    assert not lowering.use_unrolled_threefry() and not lowering.in_use()


def test_unrolled_lowering_is_on_and_has_no_loop():
    _skip_unless_unrolled()
    assert lowering.use_unrolled_threefry() and lowering.in_use()
    text = jax.jit(lambda k: jax.random.uniform(k, (8,))).lower(jax.random.key(0)).as_text()
    assert "threefry" in text
    assert "stablehlo.while" not in text  # JAX's CPU default: a 5-iteration fori_loop


@pytest.mark.fast
def test_threefry_known_answer_vector():
    """Random123's KAT for threefry2x32_20: key (0x13198a2e, 0x03707344), counter
    (0x243f6a88, 0x85a308d3) -> (0xc4923a9c, 0x483df7a0)."""
    key = np.array([0x13198A2E, 0x03707344], dtype=np.uint32)
    count = np.array([0x243F6A88, 0x85A308D3], dtype=np.uint32)
    out = jax.jit(jax.extend.random.threefry_2x32)(key, count)
    np.testing.assert_array_equal(np.asarray(out), np.array([0xC4923A9C, 0x483DF7A0], np.uint32))


_ROLLED = """
import json, sys
import gdbench.lowering as lowering
lowering._done = True  # keep JAX's rolled CPU lowering
import jax, models, tasks
from gdbench import engine
text = jax.jit(lambda k: jax.random.uniform(k, (8,))).lower(jax.random.key(0)).as_text()
assert "stablehlo.while" in text  # really the rolled lowering here
rows = engine.run_cells(tasks.load("breast_cancer"), models.get(sys.argv[1]), [(40, 0), (60, 1)],
                        quality=False).rows
print(json.dumps([[r[k] for k in sys.argv[2].split(",")] for r in rows]))
"""


def test_grid_results_equal_the_rolled_lowering_bit_for_bit():
    _skip_unless_unrolled()
    assert lowering.in_use()  # this process runs the unrolled lowering, the subprocess rolled
    spec = "mlp?steps=50&hidden=16"
    proc = subprocess.run(
        [sys.executable, "-c", _ROLLED, spec, ",".join(METRICS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    rolled = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = engine.run_cells(
        tasks.load("breast_cancer"), models.get(spec), [(40, 0), (60, 1)], quality=False
    ).rows
    ours = [[r[k] for k in METRICS] for r in rows]
    np.testing.assert_array_equal(np.array(ours, float), np.array(rolled, float))  # NaN == NaN
