"""The cells of a (task, model) grid: which pool examples each (size, seed) cell trains on.

Subsets are *nested* and *stratified at the start*: for seed s, the pool is put in one random
order whose first C positions hold one example of every class (so every subset has every class)
followed by the rest in random order. The cell (n, s) trains on the first n examples of seed s's
order, so the cell of size 40 contains the cell of size 20. The order depends only on the seed
and the task's pool: every model sees the same subsets.

Models that select or calibrate on held-out data (``needs_validation``) carve a validation part
from the cell's own subset: positions r >= C with r % 5 == 4, about 20 % of the subset, never the
first C examples. The test set is never touched.
"""

from __future__ import annotations

import dataclasses

import numpy as np

VAL_PERIOD = 5


class PlanError(ValueError):
    """Sizes or seeds that a task cannot honour."""


@dataclasses.dataclass(frozen=True)
class Cells:
    """Flattened (size, seed) cells, size-major: cell i has ``sizes[i]`` and ``seeds[i]``."""

    sizes: np.ndarray  # [M] int
    seeds: np.ndarray  # [M] int
    w_train: np.ndarray  # [M, N] float32, 1 on the examples the model fits on
    w_val: np.ndarray  # [M, N] float32, 1 on the validation part (zeros if not used)

    @property
    def count(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def n_val(self) -> np.ndarray:
        return self.w_val.sum(1).astype(np.int64)


def seed_order(y_pool: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Pool indices in seed ``seed``'s order: one example of each class first, then the rest."""
    rng = np.random.default_rng(seed)
    firsts = np.array([rng.choice(np.flatnonzero(y_pool == c)) for c in range(num_classes)])
    firsts = rng.permutation(firsts)
    rest = np.setdiff1d(np.arange(len(y_pool)), firsts)
    return np.concatenate([firsts, rng.permutation(rest)])


def check_sizes(sizes, seeds, pool_size: int, num_classes: int, task: str) -> None:
    """Raise ``PlanError`` (one line) for sizes or seeds this task cannot use."""
    if not sizes:
        raise PlanError("no training sizes given; give at least one, e.g. --sizes 10,20,40")
    if not seeds:
        raise PlanError("no seeds given; give at least one, e.g. --seeds 5")
    for n in sizes:
        if n < num_classes:
            raise PlanError(
                f"training size {n} is smaller than the {num_classes} classes of task '{task}' "
                f"(every subset holds every class); valid sizes: {num_classes}..{pool_size}"
            )
        if n > pool_size:
            raise PlanError(
                f"training size {n} exceeds the training pool of task '{task}' "
                f"({pool_size} examples); valid sizes: {num_classes}..{pool_size}"
            )
    if any(s < 0 for s in seeds):
        raise PlanError(f"seeds must be non-negative, got {min(seeds)}")


def check_pairs(pairs, task) -> None:
    """``check_sizes`` for the (size, seed) ``pairs`` of one grid on ``task`` (anything with
    ``pool_size``, ``num_classes`` and ``name``)."""
    check_sizes(
        sorted({n for n, _ in pairs}),
        sorted({s for _, s in pairs}),
        task.pool_size,
        task.num_classes,
        task.name,
    )


def standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the rows of ``x`` (per feature, float64): population standard
    deviation, 1 where the variance is at most 1e-12. The statistics of
    ``gdbench.engine._standardizer`` with 0/1 weights, in NumPy for code that runs outside JAX
    (the scikit-learn references and the benchmark baseline)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)
    return mean, np.where(var > 1e-12, np.sqrt(np.maximum(var, 0.0)), 1.0)


def auto_sizes(pool_size: int, num_classes: int, count: int, smallest: int = 10) -> tuple[int, ...]:
    """``count`` log-spaced sizes from ``max(smallest, 2C)`` to the whole pool (distinct
    integers; fewer than ``count`` when the range is too narrow)."""
    low = min(max(smallest, 2 * num_classes), pool_size)
    sizes = np.unique(np.round(np.geomspace(low, pool_size, count)).astype(int))
    return tuple(int(s) for s in sizes)


def make_cells(
    y_pool: np.ndarray,
    num_classes: int,
    sizes: tuple[int, ...],
    seeds: tuple[int, ...],
    validation: bool,
) -> Cells:
    """Weights over the pool for every (size, seed) cell of the product, size-major."""
    pairs = [(n, s) for n in sizes for s in seeds]
    return make_cells_for(y_pool, num_classes, pairs, validation)


def make_cells_for(
    y_pool: np.ndarray,
    num_classes: int,
    pairs: list[tuple[int, int]],
    validation: bool,
) -> Cells:
    """Weights over the pool for the given (size, seed) cells, in the given order.

    A cell's subset depends only on its size, its seed and the pool, never on which other
    cells are computed with it.
    """
    n_pool = len(y_pool)
    cell_sizes = np.asarray([n for n, _ in pairs], dtype=np.int64)
    cell_seeds = np.asarray([s for _, s in pairs], dtype=np.int64)
    ranks = {}
    for s in dict.fromkeys(int(s) for s in cell_seeds):
        r = np.empty(n_pool, dtype=np.int64)
        r[seed_order(y_pool, num_classes, s)] = np.arange(n_pool)
        ranks[s] = r
    cell_ranks = np.stack([ranks[int(s)] for s in cell_seeds]).reshape(len(pairs), n_pool)
    inside = cell_ranks < cell_sizes[:, None]
    if validation:
        is_val = (cell_ranks >= num_classes) & (cell_ranks % VAL_PERIOD == VAL_PERIOD - 1)
        val = inside & is_val
    else:
        val = np.zeros_like(inside)
    return Cells(
        sizes=cell_sizes,
        seeds=cell_seeds,
        w_train=(inside & ~val).astype(np.float32),
        w_val=val.astype(np.float32),
    )
