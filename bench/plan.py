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
import functools

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


@functools.lru_cache(maxsize=256)
def _seed_ranks(labels: bytes, dtype: str, num_classes: int, seed: int) -> np.ndarray:
    """Each pool example's position in ``seed_order`` (read-only), for the pool whose labels
    are ``labels``: kept, since every grid of a task asks for the same seeds (a suite of six
    models on 100 seeds spent 1.7 s drawing 3,600 orders, 600 of them distinct)."""
    y_pool = np.frombuffer(labels, dtype=dtype)
    ranks = np.empty(len(y_pool), dtype=np.int64)
    ranks[seed_order(y_pool, num_classes, seed)] = np.arange(len(y_pool))
    ranks.setflags(write=False)
    return ranks


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


@dataclasses.dataclass(frozen=True)
class GridPlan:
    """The cells of one (task, model) grid: made once per task by the runner from the run's
    configuration (``gdbench.runner.grid_plan``), narrowed per grid to the cells still to
    compute (``only``), and handed as it is to the grid's runner (``gdbench.grids``: the engine
    or the ``sk:`` references) and the row builder (``gdbench.rows``).

    ``sizes`` and ``seeds`` are the whole grid's, what the run's identity and the cell keys
    name; ``pairs`` are the (size, seed) cells to compute now, in order: the whole product,
    size-major, for a new grid, fewer for a resumed grid or one process's share. Holding both
    is what lets a resumed grid that computes only its small cells know the size it must
    score (``scored_size``), and lets the sizes be chosen in one place. The task is held by
    its name and pool (``pool_size``, ``num_classes``), what a plan is checked against on
    construction (``check_sizes``: ``PlanError``), not by its arrays: the cells' weights are
    made from the pool's labels when a grid runner needs them (``cells``)."""

    task: str
    pool_size: int
    num_classes: int
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        as_ints = lambda values: tuple(int(v) for v in values)  # noqa: E731
        object.__setattr__(self, "sizes", as_ints(self.sizes))
        object.__setattr__(self, "seeds", as_ints(self.seeds))
        object.__setattr__(self, "pairs", tuple((int(n), int(s)) for n, s in self.pairs))
        check_sizes(self.sizes, self.seeds, self.pool_size, self.num_classes, self.task)
        sizes, seeds = set(self.sizes), set(self.seeds)
        outside = [(n, s) for n, s in self.pairs if n not in sizes or s not in seeds]
        if outside:
            raise PlanError(
                f"cell (size {outside[0][0]}, seed {outside[0][1]}) is not in the grid of task "
                f"'{self.task}' (sizes {list(self.sizes)}, seeds {list(self.seeds)})"
            )

    @classmethod
    def make(cls, task, sizes, seeds) -> GridPlan:
        """Every cell of ``sizes`` x ``seeds`` on ``task`` (anything with ``name``,
        ``pool_size`` and ``num_classes``), size-major; ``PlanError`` for sizes or seeds the
        task cannot use."""
        pairs = tuple((n, s) for n in sizes for s in seeds)
        return cls(task.name, task.pool_size, task.num_classes, tuple(sizes), tuple(seeds), pairs)

    @classmethod
    def of_pairs(cls, task, pairs) -> GridPlan:
        """The grid of exactly the cells ``pairs`` (its sizes and seeds: theirs), in their
        order: a plan for callers that ask for cells directly (tests, benchmarks)."""
        pairs = tuple((int(n), int(s)) for n, s in pairs)
        sizes = tuple(sorted({n for n, _ in pairs}))
        seeds = tuple(sorted({s for _, s in pairs}))
        return cls(task.name, task.pool_size, task.num_classes, sizes, seeds, pairs)

    def only(self, pairs) -> GridPlan:
        """The same grid with only the cells ``pairs`` to compute (e.g. those not stored)."""
        return dataclasses.replace(self, pairs=tuple(pairs))

    @property
    def count(self) -> int:
        """The number of cells to compute."""
        return len(self.pairs)

    @property
    def scored_size(self) -> int:
        """The training size whose cells get the sample-quality and robustness columns, the
        samples and the traces: the grid's largest, also when a resumed grid computes only
        smaller cells (then none is scored)."""
        return max(self.sizes)

    @property
    def first_cell(self) -> tuple[int, int]:
        """The cell a reader looks at (samples, traces): the largest size, the first seed."""
        return max(self.sizes), min(self.seeds)

    def cells(self, y_pool: np.ndarray, validation: bool) -> Cells:
        """The weights of the cells to compute over the pool with labels ``y_pool``
        (``make_cells_for``), in the order of ``pairs``."""
        if len(y_pool) != self.pool_size:
            raise ValueError(
                f"the plan of task '{self.task}' is for a pool of {self.pool_size} examples, "
                f"got labels of {len(y_pool)}"
            )
        return make_cells_for(y_pool, self.num_classes, list(self.pairs), validation)


def grid_of(task, cells) -> GridPlan:
    """``cells`` as a ``GridPlan`` of ``task``: a plan as it is, (size, seed) pairs as the plan
    of just those cells (``GridPlan.of_pairs``), so that the grid runners keep taking pairs."""
    if isinstance(cells, GridPlan):
        if cells.task != task.name or cells.pool_size != task.pool_size:
            raise ValueError(f"a plan of task '{cells.task}' given for task '{task.name}'")
        return cells
    return GridPlan.of_pairs(task, cells)


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
    labels = np.ascontiguousarray(y_pool)
    pool = (labels.tobytes(), labels.dtype.str, num_classes)
    ranks = {s: _seed_ranks(*pool, s) for s in dict.fromkeys(int(s) for s in cell_seeds)}
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
