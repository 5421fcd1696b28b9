"""How gdbench's programs are lowered for XLA:CPU: the threefry PRNG hash unrolled.

JAX lowers its threefry2x32 hash (every ``jax.random`` call: ``split``, ``fold_in``,
``uniform``, ``normal``, ``choice``...) differently by platform: on GPU/TPU as 20 unrolled
rounds, on CPU as a ``fori_loop`` over 5 groups of 4 rounds, to keep the program small. A
grid's training loop calls the PRNG at every step, and on XLA:CPU each of those loops is a
``while`` of its own: compiled separately and dispatched as several small kernels per
iteration. Lowering the hash unrolled on CPU as well (``use_unrolled_threefry``) makes the
programs compile much faster (2-core CPU, digits_2v3, 30 cells: VAE fit + evaluate 9.1 -> 3.6
s, flow 5.4 -> 4.0 s, GMM 3.4 -> 1.7 s, 10-seed MLP 3.8 -> 2.1 s) and run as fast. The hash is
the same function, so every random number, and every result, is bit-for-bit what the rolled
lowering gives (``tests/test_lowering.py`` checks a known-answer vector and a whole grid).

This replaces one lowering rule of JAX's own for the whole process (``jax._src`` has no public
hook for it); with a JAX that no longer has it, nothing is changed and the default lowering
stays. It is used only with the JAX versions it was checked with (``supported``: up to 0.10):
with JAX 0.11.2 XLA:CPU did not finish compiling the GAN's fit program with the unrolled hash
in 10 minutes (3.5 s with JAX's rolled lowering; the other models compiled as with 0.10.2),
so with a newer JAX the default lowering stays too.
"""

from __future__ import annotations

import re

#: The newest JAX (major, minor) the unrolled CPU lowering was checked with.
NEWEST_CHECKED = (0, 10)

_done = False


def supported(jax_version: str) -> bool:
    """Whether the unrolled CPU lowering is used with this JAX version (see module doc)."""
    match = re.match(r"(\d+)\.(\d+)", jax_version)
    return bool(match) and (int(match[1]), int(match[2])) <= NEWEST_CHECKED


def use_unrolled_threefry() -> bool:
    """Lower ``threefry2x32`` unrolled on CPU too (idempotent). Returns whether it is in use."""
    global _done
    if _done:
        return True
    import jax

    if not supported(jax.__version__):
        return False
    try:
        from jax._src.interpreters import mlir  # noqa: PLC2701
        from jax._src.random import threefry2x32 as threefry  # noqa: PLC2701

        rule = threefry._threefry2x32_lowering_rule  # the unrolled rule of GPU/TPU
        primitive = threefry.threefry2x32_p
    except (ImportError, AttributeError):
        return False
    mlir.register_lowering(primitive, rule, platform="cpu", inline=False)
    _done = True
    return True


def in_use() -> bool:
    """Whether ``use_unrolled_threefry`` has replaced the CPU lowering in this process."""
    return _done
