"""The ``images`` suite's path end to end, offline: ``gdbench run --suite images`` on TFDS
MNIST and Fashion-MNIST under ``tfds.testing.mock_data`` (the real loader, random pixels),
with the image models, the robustness step and its TFDS OOD pairing, then the report.

Random mock pixels carry no signal, so this checks wiring, not accuracy: every cell is
stored and ok, the convolutional models run on 28x28 images, the dequantized pixels give
densities (bits/dim), Fashion-MNIST is the OOD set of MNIST and the reverse, and the report
has its robustness section."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench import cli, results, tasks

tfds = pytest.importorskip("tensorflow_datasets")


pytestmark = pytest.mark.usefixtures("no_network")


def test_images_suite_runs_on_mocked_tfds_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GDBENCH_TFDS_DIR", str(tmp_path / "tfds"))
    (tmp_path / "tfds").mkdir()
    out = tmp_path / "run"
    models = "gnb,logreg?solver=adam&steps=20,cnn?channels=4&hidden=8&steps=25&eval_every=25"
    models += ",conv_vae?channels=4&latent=2&steps=25&eval_every=25&iwae_k=4"
    argv = [
        "run", "--suite", "images", "--tasks", "tfds:mnist,tfds:fashion_mnist",
        "--models", models, "--sizes", "20,40", "--seeds", "1", "--out", str(out),
        "--no-progress", "--no-quality", "--devices", "1",
    ]  # fmt: skip
    try:
        with tfds.testing.mock_data(num_examples=40):
            assert cli.main(argv) == 0
    finally:
        tasks.load.cache_clear()  # keep the mock's data out of later tests
    df = results.load(out)
    assert len(df) == 2 * 4 * 2 and (df["status"] == "ok").all(), df["message"].tolist()
    assert set(df["preprocess"]) == {"dequantize(u~U[0,1))+standardize"}
    big = df[df["n_train"] == 40]
    ood = dict(zip(big["task"], big["ood_task"], strict=False))
    assert ood == {"tfds:mnist": "tfds:fashion_mnist", "tfds:fashion_mnist": "tfds:mnist"}
    assert big["ood_auroc_msp"].between(0, 1).all() and big["acc_miss50"].between(0, 1).all()
    generative = big[big["model"].isin(["gnb", "conv_vae"])]
    assert np.isfinite(generative["bits_per_dim"]).all()
    assert generative["ood_auroc_logpx"].between(0, 1).all()
    assert (big["load_s"] > 0).all() and (big["input_s"] > 0).all()

    assert cli.main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Robustness" in report and "tfds:mnist against tfds:fashion_mnist" in report


@pytest.mark.fast
def test_images_suite_runs_one_model_on_mocked_mnist(tmp_path, monkeypatch):
    """The quick form of the test above: one closed-form model, one cell, through the same
    path (the TFDS loader under the mock, dequantized pixels, the OOD pairing, the store)."""
    monkeypatch.setenv("GDBENCH_TFDS_DIR", str(tmp_path / "tfds"))
    (tmp_path / "tfds").mkdir()
    out = tmp_path / "run"
    argv = [
        "run", "--suite", "images", "--tasks", "tfds:mnist", "--models", "gnb",
        "--sizes", "20", "--seeds", "1", "--out", str(out), "--no-progress", "--no-quality",
        "--devices", "1",
    ]  # fmt: skip
    try:
        with tfds.testing.mock_data(num_examples=40):
            assert cli.main(argv) == 0
    finally:
        tasks.load.cache_clear()  # keep the mock's data out of later tests
    (row,) = results.load(out).to_dict("records")
    assert row["status"] == "ok" and row["preprocess"] == "dequantize(u~U[0,1))+standardize"
    assert row["ood_task"] == "tfds:fashion_mnist" and 0 <= row["ood_auroc_logpx"] <= 1
    assert np.isfinite(row["bits_per_dim"]) and 0 <= row["acc_miss50"] <= 1
