"""Sample grids of colour images, ``image_shape`` (H, W, 3) (e.g. ``tfds:cifar10``).

Reports reshape each flattened sample to the task's image shape: grey images are drawn on the
task's pixel scale (tested with the reports), colour images in RGB, each rescaled to [0, 1]
over its own range. Checked here: the per-image rescaling against its definition, where each
image lands in the mosaics, and, in a written PNG, that red and blue images come out red and
blue.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from gdbench.reports import figures, hybrids


def test_colour_image_rescales_each_image_to_its_range():
    rng = np.random.default_rng(0)
    image = rng.uniform(-30.0, 300.0, size=(4, 5, 3))
    rgba = figures.colour_image(image.ravel(), (4, 5, 3))
    assert rgba.shape == (4, 5, 4)
    np.testing.assert_allclose(
        rgba[..., :3], (image - image.min()) / (image.max() - image.min()), rtol=1e-12
    )
    np.testing.assert_array_equal(rgba[..., 3], 1.0)
    assert rgba[..., :3].min() == 0.0 and rgba[..., :3].max() == 1.0


def test_colour_image_constant_and_non_finite():
    np.testing.assert_array_equal(figures.colour_image(np.full(12, 7.0), (2, 2, 3))[..., :3], 0.5)
    image = np.arange(12.0)
    image[[0, 5]] = [np.nan, np.inf]
    rgb = figures.colour_image(image, (2, 2, 3))[..., :3].reshape(-1)
    assert rgb[0] == 0.0 and rgb[5] == 0.0
    finite = np.isfinite(image)
    low, high = image[finite].min(), image[finite].max()
    np.testing.assert_allclose(rgb[finite], (image[finite] - low) / (high - low))


def test_shapes():
    assert figures.is_colour((32, 32, 3)) and not figures.is_colour((28, 28))
    assert not figures.is_colour((28, 28, 1))
    grey = np.arange(12.0)
    np.testing.assert_array_equal(figures.grey_image(grey, (3, 4)), grey.reshape(3, 4))
    np.testing.assert_array_equal(figures.grey_image(grey, (3, 4, 1)), grey.reshape(3, 4))


@pytest.mark.fast
def test_colour_mosaic_places_each_image():
    classes, n, h, w = 2, 3, 4, 5
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(classes, n, h * w * 3))
    mosaic = figures._mosaic(x, (h, w, 3), gap=1)
    assert mosaic.shape == (classes * (h + 1), n * (w + 1), 4)
    for c in range(classes):
        for j in range(n):
            tile = mosaic[c * (h + 1) : c * (h + 1) + h, j * (w + 1) : j * (w + 1) + w]
            np.testing.assert_array_equal(tile, figures.colour_image(x[c, j], (h, w, 3)))
    assert mosaic[..., 3].sum() == classes * n * h * w  # the gaps are transparent


def test_training_samples_mosaic_and_figure_in_colour():
    t, c, k, h, w = 2, 3, 2, 4, 3
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(t, c, k, h * w * 3))
    mosaic, rows, cols = hybrids.sample_mosaic(x, (h, w, 3), gap=1, class_gap=3)
    block = k * (w + 1) - 1
    assert mosaic.shape == (t * (h + 1) - 1, c * block + (c - 1) * 3, 4)
    for ti in range(t):
        for ci in range(c):
            for j in range(k):
                top, left = ti * (h + 1), ci * (block + 3) + j * (w + 1)
                np.testing.assert_array_equal(
                    mosaic[top : top + h, left : left + w],
                    figures.colour_image(x[ti, ci, j], (h, w, 3)),
                )
    assert len(rows) == t and len(cols) == c
    item = {
        "task": "tfds:cifar10",
        "model": "vae",
        "n_train": 40,
        "image_shape": [h, w, 3],
        "trace_step": np.array([10, 20]),
        "trace_samples": x,
    }
    fig = hybrids.training_samples_figure(item)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), mosaic)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_rgb_sample_grid_is_drawn_in_colour(tmp_path, scale):
    h, w, per_class = 6, 6, 3
    red, blue = np.zeros((h, w, 3)), np.zeros((h, w, 3))
    red[..., 0], blue[..., 2] = scale, scale
    red[0, 0], blue[0, 0] = 0.5 * scale, 0.5 * scale  # not constant: rescaled, not mid-grey
    real = np.stack([np.stack([im.ravel()] * per_class) for im in (red, blue)])
    samples = [
        {
            "task": "tfds:cifar10",
            "model": "vae",
            "n_train": 40,
            "image_shape": [h, w, 3],
            "real": real,
            "samples": real[::-1],  # blue class first: both panels hold both colours
        }
    ]
    paths = figures.sample_grids(samples, tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".svg"]
    png = imread(next(p for p in paths if p.suffix == ".png"))[..., :3]
    is_red = (png[..., 0] > 0.9) & (png[..., 1] < 0.1) & (png[..., 2] < 0.1)
    is_blue = (png[..., 2] > 0.9) & (png[..., 0] < 0.1) & (png[..., 1] < 0.1)
    # Two panels of 3 images per colour, 35 of 36 pixels each, at 150 dpi (many PNG pixels).
    assert is_red.sum() > 2 * per_class * 35 and is_blue.sum() > 2 * per_class * 35
