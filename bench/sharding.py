"""Scale-out over local devices (a device mesh) and over hosts (``jax.distributed``).

A grid's cells are independent fits, so the natural parallelism across devices is over cells:
the cell axis (PRNG keys, example weights ``w_train``/``w_val`` ``[cells, N]``, fitted states)
is split into equal blocks, one per device, and every device runs the grid's own program
(``jax.lax.map`` over its block of cells) on its block; the training pool ``x_pool [N, D]``
and the test set are replicated. This is ``jax.shard_map`` (the SPMD "manual" mode of XLA's
partitioner, Xu et al. 2021, "GSPMD", arXiv:2105.04663): no cross-device communication
happens inside the programs (``collectives`` checks the compiled HLO for that), and outputs
stay sharded over cells until they are gathered to the host.

The cell count is padded to a multiple of the device count with copies of cell 0, whose results
are dropped (``pad_index``), so every device gets the same static shapes (one program).

Mesh layout: axes ``("cells", "data")``, ``data`` = 1 by default. With ``data`` = k > 1
(``gdbench run --data-parallel k``) each cell's examples (the pool's rows, the cells' example
weights, the test set) are also split over k devices: the ``shard_map`` is then manual over
``cells`` only, and inside it XLA's SPMD partitioner (GSPMD) splits every per-example
computation over ``data`` and inserts the all-reduces that the models' sums over examples
need, so the models stay written for one device. For pools too large for one device, or
cells too few to fill the devices.

With one device (or ``devices=1``) nothing of this is used: the engine compiles exactly the
programs it compiled before (no ``shard_map``, no padding).

Multi-host (``initialize_distributed``): every process joins ``jax.distributed`` (explicit
coordinator for tests, or JAX's cluster auto-detection on TPU pods, SLURM, ...), and takes the
cells of every grid whose index in the grid is ``process_index`` modulo the process count
(``process_share``), which it runs on a mesh of its *local* devices. Processes share nothing at
run time but the run directory: each writes its rows into part files of its own (suffix
``.p<process_index>``), which ``gdbench.results.store.load`` merges. (One global program over a
global
mesh would need cross-process collectives to gather results, which XLA:CPU has only with the
gloo backend, and would lock every process to the same grids in the same order; independent
cells need neither.)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: The mesh axis the grid's cells are split over.
CELLS = "cells"
#: The vmapped axis of the cells of one chunk inside ``map_cells``: a cell function may reduce
#: over it (``jax.lax.pmax(x, CHUNK)``), e.g. to take one static branch for the whole chunk
#: (``gdbench.fit._row_branch``: the fewest rows that hold every cell's subset).
CHUNK = "chunk"
#: The mesh axis a cell's examples would be split over (kept at size 1; see the module doc).
DATA = "data"


def local_devices(count: int | None = None) -> list[jax.Device]:
    """The first ``count`` devices of this process (all of them when None)."""
    devices = jax.local_devices()
    if count is None:
        return devices
    if not 1 <= count <= len(devices):
        raise ValueError(
            f"--devices {count}: this process has {len(devices)} "
            f"{devices[0].platform.upper()} device(s)"
        )
    return devices[:count]


def make_mesh(devices: Sequence[jax.Device] | int | None = None, data: int = 1) -> Mesh | None:
    """A ``("cells", "data")`` mesh over local devices, or None for a single device.

    ``devices``: a list of devices, a count (the first that many local devices) or None (all
    local devices). ``data`` must be 1 (see the module docstring)."""
    if devices is None or isinstance(devices, int):
        devices = local_devices(devices)
    devices = list(devices)
    if data < 1 or len(devices) % data:
        raise ValueError(
            f"--data-parallel {data} must divide the {len(devices)} device(s) the cells are "
            "split over"
        )
    if len(devices) < 2:
        return None
    return Mesh(np.asarray(devices).reshape(len(devices) // data, data), (CELLS, DATA))


def data_count(mesh: Mesh | None) -> int:
    """Devices along the data axis: how many devices share one cell's examples."""
    return 1 if mesh is None else int(mesh.shape[DATA])


def device_count(mesh: Mesh | None) -> int:
    """Devices of the mesh (1 without one)."""
    return 1 if mesh is None else int(mesh.devices.size)


def rows_sharding(mesh: Mesh, rows: int, cells: bool = False) -> NamedSharding:
    """An array of ``rows`` examples (after a leading cell axis when ``cells``) split over the
    data axis when it divides them (else replicated over it), its cell axis over ``cells``."""
    split = DATA if data_count(mesh) > 1 and rows % data_count(mesh) == 0 else None
    return NamedSharding(mesh, PartitionSpec(CELLS, split) if cells else PartitionSpec(split))


def cell_count(mesh: Mesh | None) -> int:
    """Devices along the cells axis (1 without a mesh)."""
    return 1 if mesh is None else int(mesh.shape[CELLS])


def pad_index(count: int, mesh: Mesh | None) -> np.ndarray:
    """Indices of the padded cell axis: ``0..count-1`` followed by zeros (copies of cell 0) up
    to the next multiple of the mesh's cell-axis size."""
    if count < 1:
        raise ValueError(f"need at least one cell, got {count}")
    devices = cell_count(mesh)
    padded = math.ceil(count / devices) * devices
    return np.concatenate([np.arange(count), np.zeros(padded - count, dtype=np.int64)])


def map_cells(fn: Callable, cells: Any, batch: int) -> Any:
    """``jax.lax.map(fn, cells)`` over the leading (cell) axis of the pytree ``cells``, vmapped
    in equal chunks of at most ``batch`` cells: one copy of ``fn`` in the program.

    ``lax.map(..., batch_size=b)`` handles a cell count that ``b`` does not divide with a
    second, separately compiled vmap of ``fn`` for the remainder, which doubled the compile
    time of such grids (1,000 cells in chunks of 64: logreg 1.4 -> 0.75 s, mlp 4.0 -> 1.9 s on a
    2-core CPU). Here the chunks are balanced instead (1,000 cells: 16 chunks of 63) and the
    last one is padded with copies of the last cell, whose outputs are dropped.
    """
    count = jax.tree.leaves(cells)[0].shape[0]
    chunks = math.ceil(count / max(1, min(batch, count)))
    size = math.ceil(count / chunks)
    pad = chunks * size - count
    if pad:
        cells = jax.tree.map(
            lambda a: jax.numpy.concatenate([a, jax.numpy.repeat(a[-1:], pad, axis=0)]), cells
        )
    chunked = jax.tree.map(lambda a: a.reshape(chunks, size, *a.shape[1:]), cells)
    out = jax.lax.map(jax.vmap(fn, axis_name=CHUNK), chunked)
    out = jax.tree.map(lambda a: a.reshape(chunks * size, *a.shape[2:]), out)
    return jax.tree.map(lambda a: a[:count], out) if pad else out


def cell_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (cell) axis split over the mesh's cells axis, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(CELLS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def shard_cells(fn: Callable, mesh: Mesh, cell_args: int, shared_args: int) -> Callable:
    """``fn(*cell_args, *shared_args)`` run per device on its block of cells (``shard_map``).

    The first ``cell_args`` arguments (pytrees) have the cell axis leading and are split over
    ``cells``; the other ``shared_args`` are replicated; every output has the cell axis leading
    and is split over ``cells``. ``fn`` must map over the cells it is given (``lax.map``), as the
    engine's grid functions do; it sees ``cells / devices`` of them."""
    in_specs = (PartitionSpec(CELLS),) * cell_args + (PartitionSpec(),) * shared_args
    # check_vma=False: the models' loops (lax.scan carries started from constants) are written
    # for plain jit, and shard_map's varying-axes type check would ask every model to mark its
    # carries as varying over 'cells'. The check guards collectives and their transposes; these
    # programs have none (``collectives``), so each device simply runs the unsharded body.
    # With a data axis the map is manual over 'cells' only: within each cell XLA's SPMD
    # partitioner splits the examples over 'data' (as the arguments' shardings say) and adds
    # the all-reduces the models' sums over examples need.
    manual = {"axis_names": frozenset({CELLS})} if data_count(mesh) > 1 else {}
    return jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=in_specs,
        out_specs=PartitionSpec(CELLS),
        check_vma=False,
        **manual,
    )


def put(tree: Any, sharding: Any) -> Any:
    """``jax.device_put`` of every leaf (onto the default device when ``sharding`` is None);
    ``sharding`` is one sharding or a pytree of them matching ``tree``."""
    if sharding is None:
        return jax.device_put(tree)
    return jax.device_put(tree, sharding)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Arrays placed on the devices and the wall seconds the host→device copy took."""

    arrays: Any
    seconds: float


def timed_put(tree: Any, sharding: Any) -> Transfer:
    """``put`` the host arrays of ``tree`` and wait for the copies (``block_until_ready``)."""
    t = time.perf_counter()
    arrays = jax.block_until_ready(put(tree, sharding))
    return Transfer(arrays, time.perf_counter() - t)


_COLLECTIVE = re.compile(
    r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(-start)?\("
)


def collectives(compiled) -> list[str]:
    """Names of the cross-device collective operations in a compiled program's optimized HLO
    (``all-gather``, ``all-reduce``, ...); empty for a program whose devices never talk."""
    text = "\n".join(m.to_string() for m in compiled.runtime_executable().hlo_modules())
    return sorted({m.group(1) for m in _COLLECTIVE.finditer(text)})


# ---------------------------------------------------------------------------------------------
# Multi-host.


@dataclasses.dataclass(frozen=True)
class Distributed:
    """How ``jax.distributed.initialize`` is called: all None means JAX's auto-detection
    (TPU pod slices, SLURM, Open MPI, Kubernetes, ...); explicit values for a hand-started
    cluster (e.g. processes on one machine talking over loopback)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def initialize_distributed(config: Distributed) -> tuple[int, int]:
    """Join the ``jax.distributed`` cluster (once per process); returns ``(process_index,
    process_count)``. Must run before anything else touches JAX's backends."""
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=config.coordinator,
            num_processes=config.num_processes,
            process_id=config.process_id,
        )
    return jax.process_index(), jax.process_count()


def process_share(count: int, index: int | None = None, processes: int | None = None) -> list[int]:
    """Indices of a grid's ``count`` cells that process ``index`` of ``processes`` computes:
    round-robin, ``i % processes == index`` (this process by default)."""
    index = jax.process_index() if index is None else index
    processes = jax.process_count() if processes is None else processes
    return [i for i in range(count) if i % processes == index]


def barrier(name: str, timeout_s: float = 3600.0) -> None:
    """Wait until every process of the ``jax.distributed`` cluster reaches ``name`` (the
    coordination service's barrier: no device collectives). No-op in a single process."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        return
    client.wait_at_barrier(name, int(timeout_s * 1000))


def wait_for_file(path: os.PathLike, timeout_s: float = 600.0, poll_s: float = 0.2) -> None:
    """Wait until ``path`` exists (another process writes it); TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s")
        time.sleep(poll_s)
