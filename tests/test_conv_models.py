"""The convolutional models: ``cnn`` (discriminative) and ``conv_vae`` (generative).

- The im2col convolutions of ``gdbench.models.conv`` equal ``lax.conv_general_dilated`` with
``SAME``
  padding (odd and even sides, strides 1 and 2); depth to space matches its index formula.
- The strided feature stack is translation-equivariant: shifting the image by 2^n pixels shifts
  the n-layer feature maps by one.
- Shapes for gray and RGB images whose sides are not multiples of 4.
- Through the engine on the bundled 10-class ``digits`` (8x8 images), ``cnn`` beats chance by a
  wide margin and is on par with ``mlp`` on the same cells.
- ``conv_vae`` with a Bernoulli decoder on 2x2 binary images, where all 16 images can be
  enumerated and the exact ``log p(x | c)`` of a one-dimensional latent is computed by
  Gauss-Hermite quadrature: the quadrature masses sum to 1, the ELBO lies below the exact
  value, the IWAE bound with many samples is close to it (its masses sum to about 1), and IWAE
  is at least the ELBO.
- ``conv_vae`` through the engine on a small RGB task (6x6x3): finite bits/dim, IWAE >= ELBO,
  better than chance.
- ``gdbench run`` refuses an image model on a tabular task at planning time, in one line.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from numpy.polynomial import hermite_e

from gdbench import cli, engine, models, tasks
from gdbench.models.conv import Conv3x3, conv_patches, depth_to_space
from gdbench.models.discriminative.cnn import CNN
from gdbench.models.generative.conv_vae import ConvVAE
from gdbench.tasks.base import Task


@pytest.mark.fast
def test_conv3x3_matches_lax_convolution():
    """Odd and even sides, strides 1 and 2, a 1x1 image (all padding)."""

    def both(conv, x):
        reference = jax.lax.conv_general_dilated(
            x,
            conv.kernel[...],
            (conv.stride,) * 2,
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return conv(x), reference + conv.bias[...], conv_patches(x, conv.stride)

    for height, width, channels, stride in [(8, 8, 1, 2), (7, 5, 3, 2), (5, 6, 2, 1), (1, 1, 4, 2)]:
        conv = Conv3x3(channels, 5, stride=stride, rngs=nnx.Rngs(0))
        conv.bias[...] = jax.random.normal(jax.random.key(1), (5,))
        x = jax.random.normal(jax.random.key(2), (3, height, width, channels))
        ours, reference, patches = nnx.jit(both)(conv, x)
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
        out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
        assert patches.shape == (3, out_h, out_w, 9 * channels)


def test_depth_to_space_places_channel_groups_in_2x2_blocks():
    maps = np.random.default_rng(0).normal(size=(2, 3, 4, 4 * 5)).astype(np.float32)
    out = np.asarray(depth_to_space(jnp.asarray(maps)))
    assert out.shape == (2, 6, 8, 5)
    for i, j, a, b in itertools.product(range(3), range(4), range(2), range(2)):
        group = (2 * a + b) * 5
        np.testing.assert_array_equal(
            out[:, 2 * i + a, 2 * j + b], maps[:, i, j, group : group + 5]
        )


def test_strided_features_are_translation_equivariant():
    """With zero biases (so empty regions stay zero), two stride-2 layers map a shift of the
    image by 4 pixels to a shift of the feature maps by 1, for content away from the border."""

    @jax.jit
    def features(x):
        model = CNN(256, 3, rngs=nnx.Rngs(0), channels=(4, 6), image_shape=(16, 16))
        for conv in model.convs:
            conv.bias[...] = jnp.zeros_like(conv.bias[...])
        return model.features(x)

    image = np.zeros((16, 16), np.float32)
    image[4:8, 3:8] = np.random.default_rng(0).normal(size=(4, 5))
    shifted = np.roll(image, (4, 4), axis=(0, 1))
    feats = features(jnp.asarray(np.stack([image, shifted]).reshape(2, -1)))
    assert feats.shape == (2, 4, 4, 6)
    np.testing.assert_allclose(feats[1], np.roll(feats[0], (1, 1), axis=(0, 1)), atol=1e-6)
    assert float(jnp.abs(feats[0]).max()) > 0


@pytest.mark.parametrize("shape", [(8, 8), (7, 5, 3), (28, 28), (6, 6, 3)])
def test_shapes_for_gray_and_rgb_images_of_any_size(shape):
    """Traced only (``jax.eval_shape``): no compilation."""
    dim = math.prod(shape)
    h, w = math.ceil(shape[0] / 4), math.ceil(shape[1] / 4)
    x = jax.ShapeDtypeStruct((5, dim), jnp.float32)

    def outputs(x):
        cnn = CNN(dim, 4, rngs=nnx.Rngs(0), channels=(3, 5), hidden=(7,), image_shape=shape)
        vae = ConvVAE(dim, 4, rngs=nnx.Rngs(0), channels=(3, 5), latent=2, image_shape=shape)
        z = jnp.zeros((5, 2))
        return {
            "features": cnn.features(x),
            "logits": cnn.predict_logits(x),
            "code": jnp.zeros(vae.code_shape),
            "means": vae._decoder_means(z, vae._decoder_rows()[jnp.arange(5) % 4]),
            "sample": vae.sample(jax.random.key(2), 1, 3),
            "bounds": vae.class_log_bounds(x, num_samples=4),
        }

    out = jax.eval_shape(outputs, x)
    assert out["features"].shape == (5, h, w, 5)
    assert out["logits"].shape == (5, 4)
    assert out["code"].shape == (h, w, 5)
    assert out["means"].shape == (5, dim)
    assert out["sample"].shape == (3, dim)
    assert out["bounds"][0].shape == out["bounds"][1].shape == (5, 4)


def test_image_models_need_an_image_shape_that_fits():
    for spec in ("cnn", "conv_vae"):
        with pytest.raises(ValueError, match="needs an image task"):
            models.get(spec).build(30, 2, nnx.Rngs(0), "real", None)
        with pytest.raises(ValueError, match="features"):
            models.get(spec).build(30, 2, nnx.Rngs(0), "real", (5, 5))


def test_run_refuses_an_image_model_on_a_tabular_task_when_planning(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--tasks", "breast_cancer", "--models", "cnn", "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'cnn' needs an image task" in err and "breast_cancer" in err
    assert not out.exists()


def test_cnn_beats_chance_and_is_on_par_with_mlp_on_the_same_digits_cells():
    task = tasks.load("digits")
    assert task.image_shape == (8, 8)
    pairs = [(400, 0), (400, 1)]
    cnn = engine.run_cells(task, models.get("cnn?channels=16-32&steps=150"), pairs, quality=False)
    mlp = engine.run_cells(task, models.get("mlp?steps=150"), pairs, quality=False)
    cells = lambda rows: [(r["n_train"], r["seed"], r["n_val"]) for r in rows]  # noqa: E731
    assert cells(cnn.rows) == cells(mlp.rows)
    cnn_acc = np.mean([r["accuracy"] for r in cnn.rows])
    mlp_acc = np.mean([r["accuracy"] for r in mlp.rows])
    assert all(r["status"] == "ok" for r in cnn.rows)
    assert cnn_acc > 0.8  # chance is 0.1
    assert cnn_acc > mlp_acc - 0.05


def _exact_class_log_probs(vae: ConvVAE, images: np.ndarray, nodes: int = 200) -> np.ndarray:
    """``log p(x | c) = log integral N(z; 0, 1) prod_d Bernoulli(x_d | m_d(z, c)) dz`` by
    Gauss-Hermite quadrature (probabilists' weights), ``[N, C]``, float64."""
    z, weights = hermite_e.hermegauss(nodes)
    log_w = np.log(weights / math.sqrt(2.0 * math.pi))
    out = []
    for c in range(vae.num_classes):
        rows = vae._decoder_rows()[c]
        logits = np.asarray(vae._decoder_means(jnp.asarray(z[:, None], jnp.float32), rows))
        logits = logits.astype(np.float64)  # [Q, D]
        log_lik = images @ logits.T - np.logaddexp(0.0, logits).sum(-1)  # [N, Q]
        out.append(np.logaddexp.reduce(log_lik + log_w, axis=-1))
    return np.stack(out, axis=-1)


def test_bernoulli_conv_vae_bounds_against_exact_enumeration_of_2x2_images():
    vae = ConvVAE(
        4, 2, rngs=nnx.Rngs(3), latent=1, channels=(4, 8), feature_kind="binary", image_shape=(2, 2)
    )
    assert vae.decoder == "bernoulli" and vae.input_support == "binary"
    # Larger decoder weights than at initialisation: pixels that depend strongly on z, so that
    # the posterior is far from the encoder's q (which starts near the prior) and the ELBO gap
    # is not negligible.
    decoder = nnx.state(vae, nnx.All(nnx.Param, nnx.PathContains("decoder")))
    nnx.update(vae, jax.tree.map(lambda a: 3.0 * a, decoder))
    images = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)  # all 16
    exact = _exact_class_log_probs(vae, images)
    np.testing.assert_allclose(np.exp(exact).sum(0), 1.0, rtol=1e-6)

    bounds = nnx.jit(lambda m, x: m.class_log_bounds(x, num_samples=20000))(vae, images)
    iwae, elbo = (np.asarray(a, np.float64) for a in bounds)
    assert np.all(iwae >= elbo - 1e-5)
    assert np.all(elbo <= exact + 1e-3)
    assert np.exp(elbo).sum(0).max() < 1.0
    assert float((exact - elbo).max()) > 0.05  # a real gap, which IWAE closes
    np.testing.assert_allclose(iwae, exact, atol=0.03)
    np.testing.assert_allclose(np.exp(iwae).sum(0), 1.0, atol=0.02)


def _rgb_task(n_pool: int = 240, n_test: int = 120) -> Task:
    """Three classes of 6x6 RGB images: a bright 3x3 square in channel c (the class) at a
    random place, on Gaussian noise."""
    rng = np.random.default_rng(0)
    n = n_pool + n_test
    y = np.arange(n) % 3
    x = rng.normal(0.0, 0.3, size=(n, 6, 6, 3))
    for i in range(n):
        r, c = rng.integers(0, 4, size=2)
        x[i, r : r + 3, c : c + 3, y[i]] += 2.0
    x = x.reshape(n, -1).astype(np.float32)
    return Task(
        name="rgb_squares",
        x_pool=x[:n_pool],
        y_pool=y[:n_pool].astype(np.int32),
        x_test=x[n_pool:],
        y_test=y[n_pool:].astype(np.int32),
        num_classes=3,
        class_names=("red", "green", "blue"),
        feature_kind="real",
        preprocess="standardize",
        description="test task: coloured squares",
        source="tests",
        version="1",
        split="first 240 / last 120",
        image_shape=(6, 6, 3),
    )


def test_conv_vae_on_an_rgb_task_through_the_engine():
    task = _rgb_task()
    spec = models.get("conv_vae?channels=8-16&latent=4&steps=100&iwae_k=8")
    rows = engine.run_cells(task, spec, [(240, 0)], quality=False).rows
    for row in rows:
        assert row["status"] == "ok", row["message"]
        assert math.isfinite(row["bits_per_dim"]) and math.isfinite(row["elbo"])
        assert row["log_lik"] >= row["elbo"]
        assert row["likelihood_is_bound"] is True
        # The task is separable (the channel with the largest sum is the class of every test
        # image, checked below): the Bayes accuracy is 1. 0.95 leaves 6 of the 120 test images
        # to a VAE of 100 steps (measured 1.0); chance is 1/3.
        assert row["accuracy"] >= 0.95
    channel_sums = task.x_test.reshape(-1, 6, 6, 3).sum((1, 2))
    assert (channel_sums.argmax(1) == task.y_test).all()
