"""Robustness where the paradigms differ: out-of-distribution detection and missing features.

Two questions a generative model can answer in a way a discriminative one cannot, asked of the
fitted cells of a grid (``run_robustness``, called by ``gdbench.engine.run_cells`` after the fit,
like the sample-quality step):

**Out-of-distribution (OOD) detection.** Each fitted model scores the task's test set (in
distribution, the positive class) and an OOD set (``gdbench.tasks.ood``: another task of the same
dimension, e.g. ``tfds:mnist`` against ``tfds:fashion_mnist``, or a transformed copy of the
task's own test set), and the AUROC of each score separates the two:

- ``ood_auroc_logpx``: the model's own ``log p(x)`` (``logsumexp`` of the log joint, in the
  task's original units: minus ``sum log scale`` of the cell's standardization, as the engine
  reports ``log_lik``; the IWAE bound for the VAE), for models whose density is over the task's
  kind of features (``gdbench.abilities.reports_density``); NaN for the others;
- ``ood_auroc_msp``: the maximum softmax probability (Hendrycks & Gimpel 2017, "A baseline for
  detecting misclassified and out-of-distribution examples"), for every model; generative
  models get ``p(y | x)`` by Bayes' rule. It is scored by its logarithm, ``max log_softmax``,
  which orders examples the same way with fewer float32 ties near 1.

Higher score = more in-distribution; 0.5 is chance, below 0.5 the score ranks OOD inputs as
*more* typical. Nalisnick et al. (2019), "Do deep generative models know what they don't know?",
found deep generative models trained on Fashion-MNIST assigning MNIST higher likelihood than
their own test data; Serrà et al. (2020) traced that to input complexity: simpler inputs get
higher density. ``gdbench.tasks.ood`` provides offline sets on both sides of that question.

**Missing features.** For each fraction in ``fractions`` (default 25 %, 50 %, 75 %) a fixed
mask per test example hides that many features completely at random (``missing_masks``: the
same masks, from a fixed key, for every model, cell and seed, and nested: what is hidden at
25 % is also hidden at 50 %), and the test accuracy is recorded as ``acc_miss<percent>``:

- models with ``marginal_logits(x, mask)`` (``gnb``, ``gnb_shared``, ``bnb``, ``lda``, ``qda``,
  ``gmm``, ``hybrid``) *marginalize*: they classify by ``log p(x_obs, y)``, the missing
  features integrated out exactly (``missing_method = "marginalize"``);
- every other model *imputes* (``"impute-mean"``): a missing feature is set to its mean over
  the cell's training subset (training plus validation part, the examples the engine
  standardizes with), which in the engine's standardized units is 0 (exactly so up to
  round-off; on tasks that are not standardized, e.g. binary ones, it is the subset's mean
  in original units).

Costs: the OOD scores evaluate the model once on at most ``OOD_TEST_MAX`` in-distribution and
as many OOD examples; the missing-feature accuracies once per fraction on at most
``MISSING_TEST_MAX`` test examples. Gaussian marginals with full covariances (``lda``,
``qda``, ``gmm?covariance=full``) cost one ``D x D`` Cholesky factorization per example (and
class for ``qda``, component for ``gmm``), O(D^3) each. By default only the cells of the
grid's largest training size are scored (the report's view); the rest get NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gdbench import compile_cache, lowering, sharding
from gdbench.abilities import marginalizes_missing, reports_density
from gdbench.compile_cache import program_static
from gdbench.models.registry import ModelSpec
from gdbench.tasks import ood as ood_sets
from gdbench.tasks.base import Task

lowering.use_unrolled_threefry()

Array = jax.Array

#: Fractions of features hidden by default (acc_miss25, acc_miss50, acc_miss75).
MISSING_FRACTIONS = (0.25, 0.5, 0.75)
#: Seed of the key the missing-feature masks are drawn from (the same for every model).
MASK_SEED = 0
#: In-distribution and OOD examples scored, each (the first ones of each test set).
OOD_TEST_MAX = 2000
#: Test examples classified with missing features (the first ones of the test set).
MISSING_TEST_MAX = 1000
#: Cells per vmapped batch of the robustness program.
CELL_BATCH = 8
#: Floats of the widest per-example intermediate allowed per chunk of examples and cell
#: (about 16 MiB): sets how many examples a model evaluates at once.
CHUNK_FLOATS = 2**22
MARGINALIZE = "marginalize"
IMPUTE = "impute-mean"

#: Columns this step adds to the result rows: (name, dtype as in results.schema, description).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    (
        "ood_task",
        "str",
        "OOD set of the OOD columns: a task or <task>:<transform> (tasks.ood); '' if none",
    ),
    (
        "ood_auroc_logpx",
        "float64",
        "AUROC of log p(x) separating the test set (positive) from the OOD set, in [0, 1]; "
        "0.5 = chance; generative models with a density of the task's features, else NaN",
    ),
    (
        "ood_auroc_msp",
        "float64",
        "AUROC of the maximum softmax probability p(y|x) (Hendrycks & Gimpel 2017) separating "
        "the test set (positive) from the OOD set, in [0, 1]; NaN if not computed",
    ),
    *(
        (
            f"acc_miss{round(100 * f)}",
            "float64",
            f"test accuracy with {round(100 * f)}% of the features of each test example hidden "
            "completely at random (fixed masks, the same for every model), in [0, 1]",
        )
        for f in MISSING_FRACTIONS
    ),
    (
        "missing_method",
        "str",
        "how missing features were handled: marginalize (exact log p(x_obs, y)) or impute-mean "
        "(set to the training subset's mean); '' if not computed",
    ),
)
#: Column name -> dtype ("str" or "float64"), for results.schema.
COLUMN_DTYPES: dict[str, str] = {name: dtype for name, dtype, _ in COLUMNS}


class RobustnessError(ValueError):
    """An OOD set or missing-feature setting this grid cannot use (one-line message)."""


def auroc(scores_in: Array, scores_out: Array) -> Array:
    """Exact area under the ROC curve of ``scores_in [N]`` (positives) against ``scores_out [M]``.

    The Mann-Whitney statistic ``P(s_in > s_out) + 0.5 P(s_in = s_out)`` over all N M pairs,
    ties counted half (as ``sklearn.metrics.roc_auc_score``), by sorting the negatives once
    and two binary searches per positive: O((N + M) log M), fixed shapes, so it jits and
    vmaps. Returns a float32 scalar in [0, 1]; NaN if any score is NaN. The pair counts are
    summed as int32, exact up to ``N M < 2^30``.
    """
    scores_in = jnp.asarray(scores_in)
    scores_out = jnp.asarray(scores_out)
    neg = jnp.sort(scores_out)
    below = jnp.searchsorted(neg, scores_in, side="left")
    at_or_below = jnp.searchsorted(neg, scores_in, side="right")
    twice_u = jnp.sum(below.astype(jnp.int32) + at_or_below.astype(jnp.int32))
    pairs = 2.0 * scores_in.shape[0] * scores_out.shape[0]
    value = twice_u.astype(jnp.float32) / jnp.float32(pairs)
    bad = jnp.isnan(scores_in).any() | jnp.isnan(scores_out).any()
    return jnp.where(bad, jnp.nan, value)


def fraction_column(fraction: float) -> str:
    """The row column of a missing fraction: ``acc_miss<percent>`` (0.25 -> ``acc_miss25``)."""
    return f"acc_miss{round(100 * fraction)}"


def hidden_count(fraction: float, dim: int) -> int:
    """Features hidden per example at ``fraction``: ``round(fraction * dim)`` (halves up),
    at most ``dim - 1`` so that every example keeps one feature."""
    if not 0.0 <= fraction < 1.0:
        raise RobustnessError(f"missing fraction {fraction} must be in [0, 1), e.g. 0.5")
    return min(dim - 1, math.floor(fraction * dim + 0.5))


def missing_masks(
    n: int, dim: int, fractions: Sequence[float] = MISSING_FRACTIONS, seed: int = MASK_SEED
) -> np.ndarray:
    """Observation masks ``[F, n, D]`` float32 (1 = observed, 0 = missing), one per fraction.

    Missing completely at random: each example ranks its features by uniform draws from
    ``jax.random.key(seed)`` and hides the ``hidden_count(fraction, D)`` lowest-ranked, so
    masks are nested across fractions and identical for every model that uses the same
    ``(n, D, seed)``.
    """
    counts = np.asarray([hidden_count(f, dim) for f in fractions])
    u = jax.random.uniform(jax.random.key(seed), (n, dim))
    ranks = np.asarray(jnp.argsort(jnp.argsort(u, axis=1), axis=1))
    return (ranks[None] >= counts[:, None, None]).astype(np.float32)


def _batched(fn: Callable[..., Array], chunk: int, *arrays: Array) -> Array:
    """``fn(*arrays)`` over the leading (example) axis in chunks of ``chunk`` rows (the last
    chunk padded by repeating the last row), concatenated back to ``[n, ...]``."""
    n = arrays[0].shape[0]
    size = max(1, min(chunk, n))
    pad = (-n) % size
    parts = []
    for a in arrays:
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge")
        parts.append(a.reshape(-1, size, *a.shape[1:]))
    out = jax.lax.map(lambda args: fn(*args), tuple(parts))
    return out.reshape(-1, *out.shape[2:])[:n]


def example_chunk(template, task: Task) -> int:
    """Examples evaluated at once per cell: ``CHUNK_FLOATS`` over the widest per-example
    intermediate, ``C D^2`` for models with full covariances (a Cholesky factor per example and
    class), else ``C D`` (at least 1, at most 256)."""
    width = task.num_classes * task.dim
    if hasattr(template, "chol"):
        components = template.means.shape[1] if hasattr(template, "means") else 1
        width *= task.dim * components
    return int(max(1, min(256, CHUNK_FLOATS // max(width, 1))))


def build_robustness_program(
    task: Task,
    spec: ModelSpec,
    template,
    *,
    ood: bool,
    density: bool,
    marginalize: bool,
    chunk: int | None = None,
):
    """The (unjitted) robustness function of a grid, mapping over fitted cells.

    Its arguments: ``cells = (state, shift, scale, w_fit)`` stacked over cells (``w_fit``: the
    0/1 weights over the pool of the examples the cell standardized with), then ``x_in``,
    ``x_out`` (OOD scoring; ignored unless ``ood``), ``x_miss``, ``y_miss``, ``masks [F, n, D]``
    and ``x_pool``. Returns ``{"ood_auroc_logpx", "ood_auroc_msp": [M], "acc_miss": [M, F]}``.
    """
    del spec
    graphdef, _ = nnx.split(template)
    chunk = example_chunk(template, task) if chunk is None else chunk

    def cell(state, shift, scale, w_fit, x_in, x_out, x_miss, y_miss, masks, x_pool):
        model = nnx.merge(graphdef, state)
        nan = jnp.asarray(jnp.nan, jnp.float32)
        out = {"ood_auroc_logpx": nan, "ood_auroc_msp": nan}
        if ood:
            z = (jnp.concatenate([x_in, x_out]) - shift) / scale
            logits = _batched(model.predict_logits, chunk, z)
            n_in = x_in.shape[0]
            msp = jax.nn.log_softmax(logits, axis=-1).max(-1)
            out["ood_auroc_msp"] = auroc(msp[:n_in], msp[n_in:])
            if density:
                log_px = jax.nn.logsumexp(logits, axis=-1) - jnp.log(scale).sum()
                out["ood_auroc_logpx"] = auroc(log_px[:n_in], log_px[n_in:])
        z_miss = (x_miss - shift) / scale
        mean = (w_fit @ x_pool) / jnp.maximum(w_fit.sum(), 1.0)
        fill = (mean - shift) / scale

        def accuracy(mask):
            if marginalize:
                logits = _batched(model.marginal_logits, chunk, z_miss, mask)
            else:
                filled = jnp.where(mask > 0, z_miss, fill[None, :])
                logits = _batched(model.predict_logits, chunk, filled)
            return jnp.mean(jnp.argmax(logits, axis=-1) == y_miss)

        out["acc_miss"] = jax.lax.map(accuracy, masks)
        return out

    def robustness_grid(cells, x_in, x_out, x_miss, y_miss, masks, x_pool):
        fn = lambda c: cell(*c, x_in, x_out, x_miss, y_miss, masks, x_pool)  # noqa: E731
        return sharding.map_cells(fn, cells, CELL_BATCH)

    return robustness_grid


def empty_columns(count: int, fractions: Sequence[float] = MISSING_FRACTIONS) -> dict:
    """The columns of ``run_robustness`` for ``count`` cells where nothing was computed: NaN
    floats and empty strings (for a grid that failed or a step that was skipped)."""
    return {
        "ood_task": np.full(count, "", dtype=object),
        "ood_auroc_logpx": np.full(count, np.nan),
        "ood_auroc_msp": np.full(count, np.nan),
        **{fraction_column(f): np.full(count, np.nan) for f in fractions},
        "missing_method": np.full(count, "", dtype=object),
    }


def load_ood(ood_task: str | Task, task: Task) -> Task:
    """The OOD set (a spec for ``gdbench.tasks.ood.load``, or a loaded task), checked against
    ``task``:
    same number of features (``RobustnessError``, one line, otherwise)."""
    other = ood_sets.load(ood_task) if isinstance(ood_task, str) else ood_task
    if other.dim != task.dim:
        raise RobustnessError(
            f"OOD set '{other.name}' has {other.dim} features, task '{task.name}' has "
            f"{task.dim}; an OOD set needs the same dimension (e.g. {task.name}:noise)"
        )
    return other


def run_robustness(
    task: Task,
    spec: ModelSpec,
    template,
    cells,
    fitted,
    ood_task: str | Task | None = None,
    fractions: Sequence[float] = MISSING_FRACTIONS,
    largest_only: bool = True,
    missing_method: str | None = None,
    size: int | None = None,
) -> tuple[dict[str, np.ndarray], float, float]:
    """OOD AUROCs and missing-feature accuracies of a fitted grid, one program for the grid.

    Args:
      task, spec, template: the grid's task, model spec and ``build_template`` instance.
      cells: the grid's ``gdbench.plan.Cells``.
      fitted: the fit program's output ``(state, shift, scale, key, traces)``, stacked over
        cells (only the first three are read).
      ood_task: the OOD set (``gdbench.tasks.ood`` spec or a ``Task``); None: no OOD columns.
      fractions: missing fractions in [0, 1); columns ``fraction_column(f)``.
      largest_only: score only the cells of one training size, ``size`` (default: the grid's
        largest); the others get NaN.
      missing_method: ``"marginalize"`` or ``"impute-mean"``; None: marginalize when the model
        has ``marginal_logits``, else impute (``"impute-mean"`` on a model that marginalizes
        measures what marginalization gains, with the same masks).

    Returns:
      ``(columns, compile_s, run_s)``: ``columns`` maps each name of ``COLUMNS`` (with
      ``fraction_column`` of each of ``fractions``) to a ``[cells.count]`` array (float64, or
      object strings for ``ood_task`` and ``missing_method``), NaN / "" where not computed;
      the seconds of compiling and of running the program.
    """
    other = load_ood(ood_task, task) if ood_task is not None else None
    for f in fractions:
        hidden_count(f, task.dim)
    count = cells.count
    scored = cells.sizes.max() if size is None else size
    idx = np.flatnonzero(cells.sizes == scored) if largest_only else np.arange(count)
    can_marginalize = marginalizes_missing(template)
    if missing_method not in (None, MARGINALIZE, IMPUTE):
        raise RobustnessError(
            f"unknown missing_method '{missing_method}'; valid: {MARGINALIZE}, {IMPUTE}"
        )
    if missing_method == MARGINALIZE and not can_marginalize:
        raise RobustnessError(
            f"model '{spec.spec}' cannot marginalize missing features (no marginal_logits); "
            f"use {IMPUTE}"
        )
    marginalize = can_marginalize if missing_method is None else missing_method == MARGINALIZE
    density = reports_density(template, task)
    program = build_robustness_program(
        task, spec, template, ood=other is not None, density=density, marginalize=marginalize
    )
    w_fit = np.asarray(cells.w_train + cells.w_val, np.float32)[idx]
    sub = (*jax.tree.map(lambda a: a[idx], tuple(fitted[:3])), jnp.asarray(w_fit))
    x_in = jnp.asarray(task.x_test[:OOD_TEST_MAX])
    x_out = jnp.asarray(other.x_test[:OOD_TEST_MAX] if other is not None else task.x_test[:1])
    n_miss = min(MISSING_TEST_MAX, len(task.y_test))
    args = (
        sub,
        x_in,
        x_out,
        jnp.asarray(task.x_test[:n_miss]),
        jnp.asarray(task.y_test[:n_miss]),
        jnp.asarray(missing_masks(n_miss, task.dim, fractions)),
        jnp.asarray(task.x_pool),
    )
    t0 = time.perf_counter()
    static = {
        **program_static(task, spec, None),
        "ood": None if other is None else other.name,
        "density": density,
        "marginalize": marginalize,
    }
    compiled, _ = compile_cache.compile_program(program, args, "robustness", static)
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    columns = empty_columns(count, fractions)
    if other is not None:
        columns["ood_task"][idx] = other.name
        columns["ood_auroc_msp"][idx] = np.asarray(out["ood_auroc_msp"], np.float64)
        columns["ood_auroc_logpx"][idx] = np.asarray(out["ood_auroc_logpx"], np.float64)
    acc = np.asarray(out["acc_miss"], np.float64)
    for j, f in enumerate(fractions):
        columns[fraction_column(f)][idx] = acc[:, j]
    columns["missing_method"][idx] = MARGINALIZE if marginalize else IMPUTE
    return columns, t1 - t0, t2 - t1
