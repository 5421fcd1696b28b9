"""Sample-quality metrics and CAS (bench.quality) against scipy, scikit-learn and exact maths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from sklearn.linear_model import LogisticRegression

from gdbench import quality as q
from gdbench import tasks


def _fd_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The usual FID formula in float64 with scipy's general matrix square root."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2.0 * cross))


def _random_cov(rng: np.random.Generator, h: int) -> np.ndarray:
    a = rng.normal(size=(h, h))
    return a @ a.T / h + 0.1 * np.eye(h)


def _f32(a) -> jax.Array:
    return jnp.asarray(a, jnp.float32)


# Jitted once here: eager calls would compile every primitive op by op (slower).
_fd = jax.jit(q.frechet_distance)
_fd_moments = jax.jit(q.frechet_distance_from_moments)
_pr = jax.jit(q.precision_recall, static_argnums=2)
_score = jax.jit(q.classifier_score)
_features = jax.jit(q.features)
_probs = jax.jit(q.class_probs)


# --------------------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("n, h", [(300, 16), (60, 128)])
def test_fd_of_a_set_with_itself_is_zero(n, h):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, h)) @ rng.normal(size=(h, h)) + 3.0
    scale = np.trace(np.cov(f, rowvar=False))
    assert abs(float(_fd(_f32(f), _f32(f)))) < 1e-3 * scale


def test_fd_grows_with_noise():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(400, 12))
    noise = rng.normal(size=f.shape)
    values = [float(_fd(_f32(f), _f32(f + s * noise))) for s in (0.2, 0.6, 1.5)]
    assert 0 < values[0] < values[1] < values[2]


@pytest.mark.parametrize("n1, n2, h", [(500, 400, 8), (300, 350, 32)])
@pytest.mark.fast
def test_fd_matches_scipy_sqrtm(n1, n2, h):
    rng = np.random.default_rng(h)
    a = rng.multivariate_normal(np.zeros(h), _random_cov(rng, h), size=n1)
    b = rng.multivariate_normal(rng.normal(size=h), _random_cov(rng, h), size=n2)
    ref = _fd_reference(a, b)
    np.testing.assert_allclose(float(_fd(_f32(a), _f32(b))), ref, rtol=1e-3)
    m1, c1 = q.moments(_f32(a))
    m2, c2 = q.moments(_f32(b))
    np.testing.assert_allclose(c1, np.cov(a, rowvar=False), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(_fd_moments(m1, c1, m2, c2)), ref, rtol=1e-3)


def test_fd_of_large_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    h = 4
    mu1, mu2 = rng.normal(size=h), rng.normal(size=h)
    s1, s2 = _random_cov(rng, h), _random_cov(rng, h)
    root1 = scipy.linalg.sqrtm(s1).real
    closed = ((mu1 - mu2) ** 2).sum() + np.trace(
        s1 + s2 - 2.0 * scipy.linalg.sqrtm(root1 @ s2 @ root1).real
    )
    exact = _fd_moments(_f32(mu1), _f32(s1), _f32(mu2), _f32(s2))
    np.testing.assert_allclose(float(exact), closed, rtol=1e-4)
    a = rng.multivariate_normal(mu1, s1, size=40_000)
    b = rng.multivariate_normal(mu2, s2, size=40_000)
    np.testing.assert_allclose(float(_fd(_f32(a), _f32(b))), closed, rtol=0.03)


def test_fd_between_commuting_gaussians_is_the_w2_formula():
    # Diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    got = _fd_moments(_f32(mu1), _f32(np.diag(v1)), _f32(mu2), _f32(np.diag(v2)))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_fd_ignores_padding():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(100, 6)), rng.normal(size=(80, 6)) + 0.5
    pad_b = np.concatenate([b, 1e3 * rng.normal(size=(20, 6))])
    w_b = np.r_[np.ones(80), np.zeros(20)]
    np.testing.assert_allclose(
        float(_fd(_f32(a), _f32(pad_b), None, _f32(w_b))),
        _fd_reference(a, b),
        rtol=1e-3,
    )
    _, cov = q.moments(_f32(pad_b), _f32(w_b))
    np.testing.assert_allclose(
        cov, np.cov(pad_b, rowvar=False, fweights=w_b.astype(int)), atol=1e-4
    )


# --------------------------------------------------------------------------- classifier score


def test_classifier_score_limits_and_reference():
    c = 5
    constant = np.tile(np.array([0.1, 0.2, 0.3, 0.25, 0.15]), (40, 1))
    np.testing.assert_allclose(float(_score(_f32(constant))), 1.0, rtol=1e-5)
    one_hots = np.eye(c)[np.arange(40) % c]
    np.testing.assert_allclose(float(_score(_f32(one_hots))), c, rtol=1e-5)
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(c) * 0.5, size=64)
    marginal = probs.mean(0)
    ref = np.exp(np.mean(scipy.stats.entropy(probs, marginal[None, :], axis=1)))
    got = float(_score(_f32(probs)))
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    assert 1.0 < got < c


# --------------------------------------------------------------------------- precision / recall


def _pr_reference(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    def radii(f):
        d = cdist(f, f)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    precision = (cdist(gen, real) <= radii(real)[None, :]).any(1).mean()
    recall = (cdist(real, gen) <= radii(gen)[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_properties():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 8))
    p, r = _pr(_f32(real), _f32(real), 3)
    assert (float(p), float(r)) == (1.0, 1.0)
    p, r = _pr(_f32(real), _f32(real + 100.0), 3)
    assert (float(p), float(r)) == (0.0, 0.0)
    # Two well-separated modes; the generator reproduces only the first.
    modes = np.concatenate([rng.normal(size=(100, 8)), rng.normal(size=(100, 8)) + 20.0])
    p, r = _pr(_f32(modes), _f32(modes[:100]), 3)
    assert float(p) == 1.0
    assert float(r) <= 0.55


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(150, 5))
    gen = 1.3 * rng.normal(size=(120, 5)) + 0.4
    p, r = _pr(_f32(real), _f32(gen), k)
    ref_p, ref_r = _pr_reference(real, gen, k)
    assert 0.0 < ref_p < 1.0 and 0.0 < ref_r < 1.0
    # float32 vs float64 distances may flip a point sitting exactly on a ball's edge.
    assert abs(float(p) - ref_p) <= 1.5 / 120 and abs(float(r) - ref_r) <= 1.5 / 150
    pad = rng.normal(size=(30, 5)) * 50.0
    w_real, w_gen = np.r_[np.ones(150), np.zeros(30)], np.r_[np.ones(120), np.zeros(30)]
    pp, rr = _pr(_f32(np.r_[real, pad]), _f32(np.r_[gen, pad]), k, _f32(w_real), _f32(w_gen))
    assert (float(pp), float(rr)) == pytest.approx((float(p), float(r)), rel=1e-6)


# --------------------------------------------------------------------------- CAS


def _standardize(x_fit: np.ndarray, *xs: np.ndarray) -> list[np.ndarray]:
    mu, sd = x_fit.mean(0), x_fit.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    return [(x - mu) / sd for x in (x_fit, *xs)]


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_fit_classifier_matches_sklearn(name):
    t = tasks.load(name)
    params = q.fit_classifier(_f32(t.x_pool), jnp.asarray(t.y_pool), None, t.num_classes)
    acc = float(q.classifier_accuracy(params, _f32(t.x_test), jnp.asarray(t.y_test)))
    z, zt = _standardize(t.x_pool.astype(np.float64), t.x_test.astype(np.float64))
    # Same objective: sum CE + |W|^2 / 2 for the multinomial model; for two classes the
    # softmax's two columns carry half of the binary model's weight each, i.e. C doubles.
    c = 1.0 if t.num_classes > 2 else 2.0
    sk = LogisticRegression(C=c, max_iter=5_000).fit(z, t.y_pool)
    assert abs(acc - sk.score(zt, t.y_test)) <= 0.05
    ours = np.asarray(q.classifier_logits(params, _f32(t.x_pool)), np.float64)
    agree = np.mean(ours.argmax(1) == sk.predict(z))
    assert agree >= 0.98
    if t.num_classes > 2:
        np.testing.assert_allclose(jax.nn.softmax(ours), sk.predict_proba(z), atol=0.02)


def test_cas_on_copies_equals_real_and_on_shuffled_labels_is_chance():
    t = tasks.load("digits")
    x, y = _f32(t.x_pool), jnp.asarray(t.y_pool)
    xt, yt = _f32(t.x_test), jnp.asarray(t.y_test)
    cas_acc, real_acc = q.cas(x, y, None, x, y, None, xt, yt, t.num_classes)
    assert float(cas_acc) == float(real_acc) > 0.9
    shuffled = jnp.asarray(np.random.default_rng(0).permutation(t.y_pool))
    cas_acc, real_acc = q.cas(x, shuffled, None, x, y, None, xt, yt, t.num_classes)
    assert abs(float(cas_acc) - 1.0 / t.num_classes) < 0.08
    assert float(real_acc) > 0.9


def test_fit_classifier_ignores_padding():
    t = tasks.load("iris")
    rng = np.random.default_rng(6)
    x_pad = np.r_[t.x_pool, 100.0 * rng.normal(size=(20, t.dim))]
    y_pad = np.r_[t.y_pool, rng.integers(0, 3, 20)]
    w = np.r_[np.ones(t.pool_size), np.zeros(20)]
    a = q.fit_classifier(_f32(t.x_pool), jnp.asarray(t.y_pool), None, 3)
    b = q.fit_classifier(_f32(x_pad), jnp.asarray(y_pad), _f32(w), 3)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- feature net


def test_feature_net_classifies_digits(tmp_path):
    t = tasks.load("digits")
    net = q.feature_net(t, tmp_path, q.FeatureNetConfig(steps=300))
    assert net.test_accuracy > 0.9
    f = jax.jit(q.features)(net.params, _f32(t.x_test))
    assert f.shape == (t.x_test.shape[0], 128) and bool(jnp.all(f >= 0))
    probs = net.class_probs(net.params, _f32(t.x_test))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    acc = float(jnp.mean(jnp.argmax(probs, -1) == jnp.asarray(t.y_test)))
    assert acc == pytest.approx(net.test_accuracy)


def test_feature_net_cache(tmp_path, monkeypatch):
    t = tasks.load("iris")
    config = q.FeatureNetConfig(steps=50, hidden=(16, 8))
    monkeypatch.setenv(q.CACHE_ENV, str(tmp_path))
    first = q.feature_net(t, config=config)
    (path,) = tmp_path.glob("iris-*.npz")
    assert q.feature_net(t, config=config) is first  # memoized in-process

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    q.clear_memo()
    monkeypatch.setattr(q, "train_feature_net", no_training)
    second = q.feature_net(t, config=config)
    assert second is not first and second.key == first.key
    assert jax.tree.structure(second.params) == jax.tree.structure(first.params)
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert second.test_accuracy == first.test_accuracy
    monkeypatch.undo()
    # Other settings are another key.
    other = q.feature_net(t, tmp_path, q.FeatureNetConfig(steps=51, hidden=(16, 8)))
    assert other.key != first.key and len(list(tmp_path.glob("iris-*.npz"))) == 2
    # A corrupt file is retrained and rewritten.
    q.clear_memo()
    path.write_bytes(b"not a zip file")
    third = q.feature_net(t, tmp_path, config)
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(third.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- jit and vmap


def _random_feature_params(rng: np.random.Generator, sizes: tuple[int, ...]) -> q.Params:
    layers = tuple(
        {"kernel": _f32(rng.normal(size=(a, b)) / np.sqrt(a)), "bias": _f32(rng.normal(size=b))}
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )
    return {"shift": _f32(np.zeros(sizes[0])), "scale": _f32(np.ones(sizes[0])), "layers": layers}


def test_sample_quality_under_jit_and_vmap():
    t = tasks.load("iris")
    rng = np.random.default_rng(7)
    params = _random_feature_params(rng, (4, 32, 16, 3))
    x_real = _f32(t.x_test)
    x_gen = _f32(t.x_pool[rng.integers(0, t.pool_size, (3, 40))] + rng.normal(size=(3, 40, 4)))
    y_gen = jnp.asarray(rng.integers(0, 3, (3, 40)))
    sizes = (40, 25, 40)  # two shapes to compile for the unbatched reference
    w_gen = jnp.asarray(np.arange(40)[None, :] < np.array(sizes)[:, None], jnp.float32)

    batched = jax.jit(jax.vmap(lambda x, y, w: q.sample_quality(params, x, y, x_real, w_gen=w)))(
        x_gen, y_gen, w_gen
    )
    assert set(batched) == set(q.QUALITY_METRICS)
    single = jax.jit(lambda x, y: q.sample_quality(params, x, y, x_real))
    for i, n in enumerate(sizes):
        one = single(x_gen[i, :n], y_gen[i, :n])
        for name in q.QUALITY_METRICS:
            np.testing.assert_allclose(batched[name][i], one[name], rtol=2e-3, atol=1e-4)
        f_gen, f_real = _features(params, x_gen[i, :n]), _features(params, x_real)
        np.testing.assert_allclose(one["fd"], _fd(f_real, f_gen), rtol=1e-5)
        probs = np.asarray(_probs(params, x_gen[i, :n]))
        label_acc = np.mean(np.argmax(probs, -1) == np.asarray(y_gen[i, :n]))
        np.testing.assert_allclose(one["label_accuracy"], label_acc, rtol=1e-6)

    xs = jnp.stack([_f32(t.x_pool), _f32(t.x_pool[::-1])])
    ys = jnp.stack([jnp.asarray(t.y_pool), jnp.asarray(t.y_pool[::-1])])
    run = jax.jit(
        jax.vmap(
            lambda x, y: q.cas(
                x, y, None, xs[0], ys[0], None, _f32(t.x_test), jnp.asarray(t.y_test), 3
            )
        )
    )
    cas_acc, real_acc = run(xs, ys)
    # Reversing the rows changes nothing but summation order.
    np.testing.assert_allclose(cas_acc, real_acc, atol=1.0 / len(t.y_test) + 1e-6)
