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
stays.
"""

from __future__ import annotations

_done = False


def use_unrolled_threefry() -> bool:
    """Lower ``threefry2x32`` unrolled on CPU too (idempotent). Returns whether it is in use."""
    global _done
    if _done:
        return True
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
