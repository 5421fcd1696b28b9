"""Sample-quality metrics for generative models, and the Classification Accuracy Score.

Image benchmarks judge samples in the feature space of a fixed ImageNet network (FID, Inception
Score). gdbench's tasks are small tabular or image vectors with no such network, so it trains
its own ("Inception without Inception"): a small ReLU MLP classifier per task, fitted once on
the task's whole training pool with a fixed seed and a fixed number of AdamW steps, cached on
disk. Its last hidden layer gives the features and its softmax the class probabilities on
which the metrics below are computed:

- ``frechet_distance``: the Fréchet distance between Gaussians fitted to two feature sets, the
  Fréchet Inception Distance of Heusel et al. (2017), "GANs trained by a two time-scale update
  rule converge to a local Nash equilibrium", in squared feature units;
- ``classifier_score``: ``exp(E_x KL(p(y|x) || p(y)))``, the Inception Score of Salimans et al.
  (2016), "Improved techniques for training GANs", in [1, C];
- ``precision_recall``: the k-nearest-neighbour precision and recall of Kynkäänniemi et al.
  (2019), "Improved precision and recall metric for assessing generative models": fidelity
  (how many samples look real) and coverage (how much of the real data the samples reach);
- ``cas``: the Classification Accuracy Score of Ravuri & Vinyals (2019), "Classification
  accuracy score for conditional generative models": the real-test accuracy of a fixed
  classifier (multinomial logistic regression) trained on class-conditional samples, next to
  the same classifier trained on as many real examples.

Every metric is a pure JAX function with fixed shapes (optional 0/1 weights mark padding), so
the engine can evaluate it inside its jit-compiled program, vmapped over cells. NumPy appears
only in the feature-net cache.

The feature-net cache: ``feature_net(task)`` looks for
``<cache_dir>/<task>-<key>.npz``, where ``cache_dir`` is the argument, else the environment
variable ``GDBENCH_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/gdbench/features`` (default
``~/.cache/gdbench/features``), and ``key`` is a
SHA-256 over the task's name and array checksum, ``FEATURE_NET_VERSION``, the net's settings
(``FeatureNetConfig``) and the jax/flax/optax versions. A missing or unreadable file is
(re)trained and written atomically (temporary file, then ``os.replace``); nets are also
memoized in-process. Deleting the directory is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gdbench import lowering
from gdbench.results import store
from gdbench.tasks.base import Task

lowering.use_unrolled_threefry()

Array = jax.Array
Params = dict[str, Any]

#: Bump when the feature net's architecture, training or file format changes: old cache files
#: are then ignored (their key no longer matches).
FEATURE_NET_VERSION = 1
#: Environment variable naming the feature-net cache directory.
CACHE_ENV = "GDBENCH_FEATURE_CACHE"
#: Keys of the dict returned by ``sample_quality``.
QUALITY_METRICS = ("fd", "classifier_score", "precision", "recall", "label_accuracy")

_STD_FLOOR = 1e-6


# --------------------------------------------------------------------------- feature network


@dataclasses.dataclass(frozen=True)
class FeatureNetConfig:
    """Settings of the per-task feature classifier (all enter the cache key).

    Attributes:
      hidden: widths of the ReLU hidden layers; the last one is the feature dimension.
      steps: AdamW steps (fixed: training is deterministic for a given seed and platform).
      batch_size: minibatch size; each step draws its batch uniformly with replacement.
      learning_rate: peak AdamW learning rate (cosine decay to 0 over ``steps``).
      weight_decay: AdamW decoupled weight decay.
      seed: seed of the initialisation and of the minibatch draws.
    """

    hidden: tuple[int, ...] = (128, 128)
    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def features(params: Params, x: Array) -> Array:
    """Last-hidden-layer activations ``[B, H]`` of the feature net for inputs ``x [B, D]``.

    ``x`` is in the task's original units: the net standardizes it with the training pool's
    mean and standard deviation (``params["shift"]``, ``params["scale"]``).
    """
    h = (x - params["shift"]) / params["scale"]
    for layer in params["layers"][:-1]:
        h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
    return h


def class_logits(params: Params, x: Array) -> Array:
    """Class logits ``[B, C]`` of the feature net (``x`` in original units)."""
    last = params["layers"][-1]
    return features(params, x) @ last["kernel"] + last["bias"]


def class_probs(params: Params, x: Array) -> Array:
    """Class probabilities ``p(y|x)`` ``[B, C]`` of the feature net (``x`` in original units)."""
    return jax.nn.softmax(class_logits(params, x), axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
    """A trained feature classifier for one task.

    Attributes:
      params: a pytree of arrays, ``{"shift": [D], "scale": [D], "layers": ({"kernel",
        "bias"}, ...)}``; pass it as a (jit) argument to ``features`` / ``class_probs``.
      test_accuracy: its accuracy on the task's test set (a sanity check of the features).
      task: the task's name.
      key: the cache key (SHA-256 hex), for provenance in a run's manifest.
      config: the settings it was trained with.
    """

    params: Params
    test_accuracy: float
    task: str
    key: str
    config: FeatureNetConfig

    # The pure functions, also reachable from a net: ``net.features(net.params, x)``.
    features = staticmethod(features)
    class_probs = staticmethod(class_probs)
    class_logits = staticmethod(class_logits)

    @property
    def shift(self) -> Array:
        """Per-feature mean of the training pool (input standardization)."""
        return self.params["shift"]

    @property
    def scale(self) -> Array:
        """Per-feature standard deviation of the training pool (floored at 1e-6; 1 if constant)."""
        return self.params["scale"]

    def metadata(self) -> dict:
        """Provenance for a run's manifest."""
        return {
            "task": self.task,
            "key": self.key,
            "version": FEATURE_NET_VERSION,
            "config": dataclasses.asdict(self.config),
            "test_accuracy": self.test_accuracy,
        }


class _FeatureMLP(nnx.Module):
    """ReLU MLP ``D -> hidden... -> C`` on standardized inputs (used only to train)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], num_classes: int, *, rngs: nnx.Rngs):
        sizes = (dim, *hidden, num_classes)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


def train_feature_net(task: Task, config: FeatureNetConfig = FeatureNetConfig()) -> Params:
    """Train the feature net on ``task``'s whole training pool; returns its ``params``.

    Minibatch AdamW (cosine-decayed learning rate) on the mean cross-entropy of standardized
    inputs, ``config.steps`` steps inside one ``lax.scan``; deterministic for a given seed.
    """
    x = jnp.asarray(task.x_pool, jnp.float32)
    y = jnp.asarray(task.y_pool, jnp.int32)
    shift = x.mean(0)
    std = x.std(0)
    scale = jnp.where(std > _STD_FLOOR, std, 1.0)
    model = _FeatureMLP(
        task.dim, tuple(config.hidden), task.num_classes, rngs=nnx.Rngs(config.seed)
    )
    graphdef, state = nnx.split(model, nnx.Param)
    tx = optax.adamw(
        optax.cosine_decay_schedule(config.learning_rate, config.steps),
        weight_decay=config.weight_decay,
    )
    batch_key = jax.random.key(config.seed + 1)

    def loss_fn(state, xb, yb):
        logits = nnx.merge(graphdef, state)((xb - shift) / scale)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, t):
        state, opt_state = carry
        idx = jax.random.randint(
            jax.random.fold_in(batch_key, t), (config.batch_size,), 0, x.shape[0]
        )
        grads = jax.grad(loss_fn)(state, x[idx], y[idx])
        updates, opt_state = tx.update(grads, opt_state, state)
        return (optax.apply_updates(state, updates), opt_state), None

    @jax.jit
    def train(state):
        (state, _), _ = jax.lax.scan(step, (state, tx.init(state)), jnp.arange(config.steps))
        return state

    nnx.update(model, train(state))
    layers = tuple({"kernel": layer.kernel[...], "bias": layer.bias[...]} for layer in model.layers)
    return {"shift": shift, "scale": scale, "layers": layers}


def _cache_key(task: Task, config: FeatureNetConfig) -> str:
    blob = json.dumps(
        {
            "task": task.name,
            "sha256": task.checksum,
            "version": FEATURE_NET_VERSION,
            "config": dataclasses.asdict(config),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$GDBENCH_FEATURE_CACHE`` if set, else ``$XDG_CACHE_HOME/gdbench/features``, else
    ``~/.cache/gdbench/features``."""
    env = os.environ.get(CACHE_ENV)
    if env and env.strip():
        return Path(env.strip()).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gdbench" / "features"


def _cache_path(cache_dir: Path, task: Task, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", task.name)[:80]
    return cache_dir / f"{safe}-{key[:20]}.npz"


def _save(path: Path, params: Params, test_accuracy: float, key: str) -> None:
    arrays = {"shift": np.asarray(params["shift"]), "scale": np.asarray(params["scale"])}
    for i, layer in enumerate(params["layers"]):
        arrays[f"kernel_{i}"] = np.asarray(layer["kernel"])
        arrays[f"bias_{i}"] = np.asarray(layer["bias"])
    arrays["test_accuracy"] = np.asarray(test_accuracy, np.float64)
    arrays["key"] = np.asarray(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.atomic_write(path, lambda f: np.savez(f, **arrays), durable=False)


def _load(path: Path, key: str) -> tuple[Params, float] | None:
    """The cached params and test accuracy, or None if absent, unreadable or stale."""
    try:
        with np.load(path) as f:
            if str(f["key"]) != key:
                return None
            n = sum(1 for name in f.files if name.startswith("kernel_"))
            layers = tuple(
                {"kernel": jnp.asarray(f[f"kernel_{i}"]), "bias": jnp.asarray(f[f"bias_{i}"])}
                for i in range(n)
            )
            params = {
                "shift": jnp.asarray(f["shift"]),
                "scale": jnp.asarray(f["scale"]),
                "layers": layers,
            }
            return params, float(f["test_accuracy"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError):
        return None


_MEMO: dict[tuple[str, str], FeatureNet] = {}


def feature_net(
    task: Task,
    cache_dir: str | os.PathLike | None = None,
    config: FeatureNetConfig = FeatureNetConfig(),
) -> FeatureNet:
    """The task's feature net: from memory, else from the disk cache, else trained and cached.

    Args:
      task: a loaded task (``gdbench.tasks.load(name)``).
      cache_dir: cache directory; None: ``$GDBENCH_FEATURE_CACHE``, else
        ``~/.cache/gdbench/features``.
      config: the net's settings.

    Returns:
      A ``FeatureNet``; its ``test_accuracy`` is measured on ``task.x_test``.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(task, config)
    memo_key = (str(directory.expanduser().resolve()), key)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    path = _cache_path(directory.expanduser(), task, key)
    loaded = _load(path, key)
    if loaded is None:
        params = train_feature_net(task, config)
        probs = jax.jit(class_probs)(params, jnp.asarray(task.x_test, jnp.float32))
        accuracy = float(jnp.mean(jnp.argmax(probs, -1) == jnp.asarray(task.y_test)))
        _save(path, params, accuracy, key)
    else:
        params, accuracy = loaded
    net = FeatureNet(params=params, test_accuracy=accuracy, task=task.name, key=key, config=config)
    _MEMO[memo_key] = net
    return net


def clear_memo() -> None:
    """Forget the in-process feature nets (the disk cache stays)."""
    _MEMO.clear()


# --------------------------------------------------------------------------- Fréchet distance


def _weights(n: int, w: Array | None, dtype) -> Array:
    return jnp.ones((n,), dtype) if w is None else jnp.asarray(w, dtype)


def moments(f: Array, w: Array | None = None) -> tuple[Array, Array]:
    """Weighted mean ``[H]`` and covariance ``[H, H]`` of features ``f [N, H]``.

    Frequency weights (0 = padding): the covariance divides by ``sum(w) - 1`` like
    ``np.cov(f, rowvar=False, fweights=w)``.
    """
    w = _weights(f.shape[0], w, f.dtype)
    total = w.sum()
    mu = (w @ f) / total
    a = (f - mu) * jnp.sqrt(w)[:, None]
    return mu, a.T @ a / (total - 1.0)


def _sqrtm_psd(s: Array) -> Array:
    """Symmetric square root of a positive semi-definite matrix (negative eigenvalues -> 0)."""
    evals, evecs = jnp.linalg.eigh(0.5 * (s + s.T))
    return (evecs * jnp.sqrt(jnp.clip(evals, 0.0))) @ evecs.T


def frechet_distance_from_moments(mu1: Array, cov1: Array, mu2: Array, cov2: Array) -> Array:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2).

    ``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)``, computed with two
    symmetric eigendecompositions (tiny negative eigenvalues from round-off clipped to 0).
    Its round-off error grows like ``sqrt(eps)`` times the covariances' scale on singular
    covariances; ``frechet_distance`` on samples avoids that.
    """
    root1 = _sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    evals = jnp.linalg.eigvalsh(0.5 * (middle + middle.T))
    cross = jnp.sqrt(jnp.clip(evals, 0.0)).sum()
    return jnp.sum((mu1 - mu2) ** 2) + jnp.trace(cov1) + jnp.trace(cov2) - 2.0 * cross


def _row_factor(a: Array) -> Array:
    """``R`` with ``R^T R = a^T a`` and at most ``min(N, H)`` rows (``a`` itself if N <= H)."""
    if a.shape[0] <= a.shape[1]:
        return a
    return jnp.linalg.qr(a, mode="r")


def frechet_distance(
    f1: Array, f2: Array, w1: Array | None = None, w2: Array | None = None
) -> Array:
    """Fréchet distance between Gaussians fitted to feature sets ``f1 [N1, H]`` and ``f2 [N2, H]``.

    ``FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`` (Heusel et al. 2017), with
    the sample means and covariances of ``moments`` (optional 0/1 weights mark padding), in
    squared feature units.

    The cross term is computed from the data, not from the covariances: with centred,
    weighted data ``A_i`` (``S_i = A_i^T A_i / (n_i - 1)``), the eigenvalues of
    ``S1^1/2 S2 S1^1/2`` are those of ``S1 S2``, i.e. the squared singular values of
    ``A1 A2^T / sqrt((n1 - 1)(n2 - 1))``, so the trace of its square root is that matrix's
    nuclear norm. Reducing each ``A_i`` to its QR factor ``R_i`` (same ``A^T A``) keeps the
    matrix at most ``H x H``. This never squares the data, so it stays accurate in float32
    where the covariances are singular (fewer samples than features), which the eigenvalue
    route through ``S1^1/2 S2 S1^1/2`` (``frechet_distance_from_moments``) is not.
    """
    w1 = _weights(f1.shape[0], w1, f1.dtype)
    w2 = _weights(f2.shape[0], w2, f2.dtype)
    n1, n2 = w1.sum(), w2.sum()
    mu1 = (w1 @ f1) / n1
    mu2 = (w2 @ f2) / n2
    a1 = (f1 - mu1) * jnp.sqrt(w1)[:, None]
    a2 = (f2 - mu2) * jnp.sqrt(w2)[:, None]
    cross = jnp.linalg.svd(_row_factor(a1) @ _row_factor(a2).T, compute_uv=False).sum()
    return (
        jnp.sum((mu1 - mu2) ** 2)
        + jnp.sum(a1**2) / (n1 - 1.0)
        + jnp.sum(a2**2) / (n2 - 1.0)
        - 2.0 * cross / jnp.sqrt((n1 - 1.0) * (n2 - 1.0))
    )


# --------------------------------------------------------------------------- classifier score


def classifier_score(probs: Array, w: Array | None = None) -> Array:
    """``exp(mean_i KL(p(y|x_i) || p(y)))`` with ``p(y)`` the mean of ``probs [B, C]``.

    The Inception Score of Salimans et al. (2016) computed with the task's feature classifier:
    1 when every sample gets the same class distribution, ``C`` when samples are confidently
    classified and spread evenly over the ``C`` classes. Optional 0/1 weights mark padding.
    """
    w = _weights(probs.shape[0], w, probs.dtype)
    marginal = (w @ probs) / w.sum()
    kl = jnp.sum(
        jax.scipy.special.xlogy(probs, probs) - jax.scipy.special.xlogy(probs, marginal), axis=-1
    )
    return jnp.exp((w @ kl) / w.sum())


# --------------------------------------------------------------------------- precision / recall


def _sq_distances(a: Array, b: Array) -> Array:
    """Pairwise squared Euclidean distances ``[Na, Nb]`` (clipped at 0)."""
    d = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(d, 0.0)


def knn_radii(f: Array, k: int = 3, mask: Array | None = None) -> Array:
    """Squared distance ``[N]`` from each point to its k-th nearest other point of ``f``.

    The point itself and masked-out points (``mask`` False) are excluded; inf when fewer than
    ``k`` other points are valid.
    """
    n = f.shape[0]
    mask = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask) > 0
    d = _sq_distances(f, f)
    d = jnp.where(jnp.eye(n, dtype=bool) | ~mask[None, :], jnp.inf, d)
    return -jax.lax.top_k(-d, k)[0][:, k - 1]


def _coverage(points: Array, centres: Array, radii: Array, centre_mask: Array) -> Array:
    """For each point: whether it lies in some valid centre's ball (``[Np]`` bool)."""
    inside = (_sq_distances(points, centres) <= radii[None, :]) & centre_mask[None, :]
    return inside.any(-1)


def precision_recall(
    f_real: Array,
    f_gen: Array,
    k: int = 3,
    w_real: Array | None = None,
    w_gen: Array | None = None,
) -> tuple[Array, Array]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``f_gen`` against ``f_real``.

    Each set's manifold is the union of balls centred on its points with radius the distance
    to the point's k-th nearest neighbour within the set (the point itself excluded).
    Precision is the fraction of generated points inside the real manifold; recall the
    fraction of real points inside the generated one. Both in [0, 1]. Optional 0/1 weights
    mark padding (padded points are neither centres nor counted).
    """
    m_real = _weights(f_real.shape[0], w_real, f_real.dtype) > 0
    m_gen = _weights(f_gen.shape[0], w_gen, f_gen.dtype) > 0
    r_real = knn_radii(f_real, k, m_real)
    r_gen = knn_radii(f_gen, k, m_gen)
    in_real = _coverage(f_gen, f_real, r_real, m_real)
    in_gen = _coverage(f_real, f_gen, r_gen, m_gen)
    precision = jnp.sum(in_real & m_gen) / jnp.sum(m_gen)
    recall = jnp.sum(in_gen & m_real) / jnp.sum(m_real)
    return precision, recall


# --------------------------------------------------------------------------- one call per cell


def sample_quality(
    feat_params: Params,
    x_gen: Array,
    y_gen: Array,
    x_real: Array,
    *,
    w_gen: Array | None = None,
    w_real: Array | None = None,
    k: int = 3,
) -> dict[str, Array]:
    """Every feature-space quality metric of generated samples against real data.

    Args:
      feat_params: ``FeatureNet.params`` of the task.
      x_gen, y_gen: generated samples ``[M, D]`` (original units) and the labels they were
        generated for ``[M]``.
      x_real: real examples ``[N, D]`` (e.g. the test set).
      w_gen, w_real: optional 0/1 weights marking padding.
      k: neighbourhood size of precision and recall.

    Returns:
      Scalars keyed by ``QUALITY_METRICS``: ``fd`` (Fréchet distance, squared feature units),
      ``classifier_score`` (in [1, C]), ``precision`` and ``recall`` (in [0, 1]) and
      ``label_accuracy``: the fraction of generated samples that the feature classifier
      assigns to the class they were generated for (a class-conditional generator's
      faithfulness to its label; "GAN-test" of Shmelkov et al. 2018).
    """
    f_gen = features(feat_params, x_gen)
    f_real = features(feat_params, x_real)
    last = feat_params["layers"][-1]
    probs = jax.nn.softmax(f_gen @ last["kernel"] + last["bias"], axis=-1)
    wg = _weights(x_gen.shape[0], w_gen, f_gen.dtype)
    precision, recall = precision_recall(f_real, f_gen, k, w_real, w_gen)
    hits = (jnp.argmax(probs, -1) == y_gen).astype(f_gen.dtype)
    return {
        "fd": frechet_distance(f_real, f_gen, w_real, w_gen),
        "classifier_score": classifier_score(probs, wg),
        "precision": precision,
        "recall": recall,
        "label_accuracy": (wg @ hits) / wg.sum(),
    }


# --------------------------------------------------------------------------- CAS


def fit_classifier(
    x: Array,
    y: Array,
    w: Array | None,
    num_classes: int,
    *,
    l2: float = 1.0,
    steps: int = 300,
    learning_rate: float = 0.3,
) -> Params:
    """Multinomial logistic regression on standardized inputs, by fixed full-batch Adam steps.

    Minimises ``sum_i w_i CE(x_i W + b, y_i) + (l2 / 2) |W|^2`` (scikit-learn's
    ``LogisticRegression(C=1 / l2)`` objective) over inputs standardized with the weighted
    mean and standard deviation of ``x``, with ``steps`` Adam steps on the mean objective
    (learning rate cosine-decayed to 0) inside ``lax.scan``; each step costs ``O(N D C)``.
    The biases are kept centred (sum 0), which fixes the softmax's free common shift.

    Args:
      x, y: inputs ``[N, D]`` and labels ``[N]``.
      w: 0/1 (or frequency) weights ``[N]``; 0 marks padding. None: all ones.
      num_classes: C.

    Returns:
      ``{"shift", "scale", "kernel" [D, C], "bias" [C]}`` for ``classifier_accuracy``.
    """
    w = _weights(x.shape[0], w, x.dtype)
    total = w.sum()
    shift = (w @ x) / total
    std = jnp.sqrt((w @ (x - shift) ** 2) / total)
    scale = jnp.where(std > _STD_FLOOR, std, 1.0)
    z = (x - shift) / scale
    onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)

    def objective(theta):
        logp = jax.nn.log_softmax(z @ theta["kernel"] + theta["bias"], axis=-1)
        data = -(w @ (onehot * logp).sum(-1))
        return (data + 0.5 * l2 * jnp.sum(theta["kernel"] ** 2)) / total

    theta = {
        "kernel": jnp.zeros((x.shape[1], num_classes), x.dtype),
        "bias": jnp.zeros((num_classes,), x.dtype),
    }
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def step(carry, _):
        theta, opt_state = carry
        grads = jax.grad(objective)(theta)
        updates, opt_state = tx.update(grads, opt_state, theta)
        theta = optax.apply_updates(theta, updates)
        # The softmax is unchanged by a common shift of the biases; Adam would let round-off
        # move them along it, so keep them centred (the minimiser is unique then).
        theta = {**theta, "bias": theta["bias"] - theta["bias"].mean()}
        return (theta, opt_state), None

    (theta, _), _ = jax.lax.scan(step, (theta, tx.init(theta)), None, length=steps)
    return {"shift": shift, "scale": scale, **theta}


def classifier_logits(params: Params, x: Array) -> Array:
    """Class logits ``[B, C]`` of a ``fit_classifier`` model (``x`` in original units)."""
    return ((x - params["shift"]) / params["scale"]) @ params["kernel"] + params["bias"]


def classifier_accuracy(
    params: Params, x_test: Array, y_test: Array, w_test: Array | None = None
) -> Array:
    """Accuracy (fraction correct, optional 0/1 weights) of a ``fit_classifier`` model."""
    w = _weights(x_test.shape[0], w_test, x_test.dtype)
    hits = (jnp.argmax(classifier_logits(params, x_test), -1) == y_test).astype(w.dtype)
    return (w @ hits) / w.sum()


def cas(
    x_syn: Array,
    y_syn: Array,
    w_syn: Array | None,
    x_real: Array,
    y_real: Array,
    w_real: Array | None,
    x_test: Array,
    y_test: Array,
    num_classes: int,
    **fit_kwargs: Any,
) -> tuple[Array, Array]:
    """Classification Accuracy Score (Ravuri & Vinyals 2019) and its real-data counterpart.

    Trains the same ``fit_classifier`` on the synthetic set (samples ``x_syn`` drawn for labels
    ``y_syn``) and on a real training set, and scores both on the real test set. For a fair
    comparison give the real set as many (weighted) examples as the synthetic one.

    Returns:
      ``(cas_accuracy, real_accuracy)``, fractions correct on ``(x_test, y_test)``.
    """
    syn = fit_classifier(x_syn, y_syn, w_syn, num_classes, **fit_kwargs)
    real = fit_classifier(x_real, y_real, w_real, num_classes, **fit_kwargs)
    return classifier_accuracy(syn, x_test, y_test), classifier_accuracy(real, x_test, y_test)
