"""Real export bugs fail the parity gate; a small data set does not.

Each broken variant is exported the way a buggy exporter would write it (through the real
converter, correctly signed), so only the gate stands between it and users. Checks use
margins measured to be wide (failures by 5x or more), never a threshold that float
rounding on another CPU can cross.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract import checkpoint, datasets
from contract.names import TRAINERS
from export import matrix
from export.source import Source
from harness import parity
from harness.verdict import FAIL, INCONCLUSIVE, PASS
from train.__main__ import run
from train.config import TrainConfig

pytestmark = pytest.mark.slow


def broken(ckpts: Path, out: Path, name: str, fmt: str, bug: Callable[[Source], None]) -> Path:
    """A `torch.<fmt>` variant exported after `bug` changed its source; returns its repo."""
    source = Source(checkpoint.find("torch", ckpts), out / f".scratch-{name}")
    try:
        bug(source)
        matrix.export_variant(source, fmt, out / name)
    finally:
        source.close()
    return out / name


def row(repo: Path, ckpts: Path, reports: Path) -> dict:
    result = parity.run(repo, ckpts, reports)
    (variant,) = [v for v in result["variants"] if v["profile"] != "transfer"]
    return variant


def calibrate_on(scale: float) -> Callable[[Source], None]:
    def bug(source: Source) -> None:
        source.calibration_images = source.calibration_images * np.float32(scale)

    return bug


def scale_kernel(index: int) -> Callable[[Source], None]:
    """One conv kernel 1.5x off: a tensor changed between training and conversion."""

    def bug(source: Source) -> None:
        convs = [layer for layer in source.keras_model.layers if type(layer).__name__ == "Conv2D"]
        kernel, bias = convs[index].get_weights()
        convs[index].set_weights([kernel * np.float32(1.5), bias])

    return bug


def scale_torch_kernel(index: int) -> Callable[[Source], None]:
    """The same bug in the torch model, which torch's exporters (and ONNX Runtime's
    quantizer, through the torch.onnx file) read."""

    def bug(source: Source) -> None:
        import torch

        with torch.no_grad():
            source.torch_net.convs()[index].weight.mul_(1.5)

    return bug


def reverse_channels(source: Source) -> None:
    """RGB read as BGR in front of the model: a classic input-pipeline bug."""
    import keras

    model = source.keras_model
    images = keras.Input(model.input_shape[1:], name="images")
    source.keras_model = keras.Model(
        images, model(keras.layers.Lambda(lambda x: x[..., ::-1])(images))
    )


@pytest.mark.parametrize(
    "fmt, name, bug, layer",
    [
        # 0..1 images for a graph taking 0..255: the input's quantization, so the first conv
        ("tflite-int8", "calibrated-0-1", calibrate_on(1 / 255), "block0"),
        ("tflite-int8", "calibrated-dark", calibrate_on(0.2), "block0"),
        ("tflite-int8", "kernel-x1.5", scale_kernel(1), "block1"),  # first stage's second conv
        # ONNX Runtime's static QDQ quantizer, calibrated on the same wrong images
        ("onnx-int8", "calibrated-0-1", calibrate_on(1 / 255), "block0"),
        ("onnx-int8", "calibrated-dark", calibrate_on(0.2), "block0"),
        ("onnx-int8", "kernel-x1.5", scale_torch_kernel(1), "block1"),
    ],
)
def test_int8_bugs_fail_on_digits_and_name_their_layer(
    digits_checkpoints, tmp_path, fmt, name, bug, layer
):
    ckpts, _ = digits_checkpoints
    variant = row(broken(ckpts, tmp_path, name, fmt, bug), ckpts, tmp_path / "r")
    assert variant["verdict"] == FAIL, variant
    # Measured: the noise rows miss the int8 bound by 2.5x to 10x (TFLite), 7x to 13x (ORT).
    assert variant["unlabelled_max_abs_diff"] > 2 * variant["bound"], variant
    assert "unlabelled rows" in variant["reason"]
    assert variant["first_divergence"] == layer, variant["layers"]
    assert f"first divergence at {layer}" in (tmp_path / "r" / "parity.md").read_text()


def test_a_kernel_off_in_the_second_stage_is_found_there(digits_checkpoints, tmp_path):
    """fp32 through tf2onnx: the first stage within float32's budget, the second stage's
    first conv far over it (measured: ~1e-6 of the range before it, ~0.3 at it)."""
    ckpts, _ = digits_checkpoints
    repo = broken(ckpts, tmp_path, "stage2", "onnx-tf", scale_kernel(2))
    variant = row(repo, ckpts, tmp_path / "r")
    assert variant["verdict"] == FAIL and variant["first_divergence"] == "block2", variant
    errors = {layer["probe"]: layer for layer in variant["layers"]}
    assert not any(errors[p]["over"] for p in ("block0", "block1", "pool0"))
    assert errors["block2"]["error"] > 100 * errors["block2"]["budget"], errors
    assert (tmp_path / "r" / "diagnose.png").stat().st_size > 0


def test_a_torchscript_file_with_a_kernel_off_names_it(digits_checkpoints, tmp_path):
    """TorchScript's probes are its own compiled modules: the kernel scaled in the file."""
    ckpts, _ = digits_checkpoints
    bug = scale_torch_kernel(3)
    variant = row(broken(ckpts, tmp_path, "ts", "torchscript", bug), ckpts, tmp_path / "r")
    assert variant["verdict"] == FAIL and variant["first_divergence"] == "block3", variant


def test_a_batchnorm_statistic_changed_before_transfer_is_found(
    digits_checkpoints, tmp_path, monkeypatch
):
    """The torch model rebuilt in Keras with one BN's running variance 4x: the transfer row
    fails and names that block (the BN sits between the block's conv and its ReLU)."""
    ckpts, _ = digits_checkpoints
    load_keras = checkpoint.load_keras

    def altered(ckpt):
        model = load_keras(ckpt)
        bn = model.get_layer("bn3")
        bn.moving_variance.assign(bn.moving_variance * 4.0)
        return model

    monkeypatch.setattr(checkpoint, "load_keras", altered)
    repo = broken(ckpts, tmp_path, "plain", "onnx", lambda source: None)  # from torch
    result = parity.run(repo, ckpts, tmp_path / "r")
    rows = {v["name"]: v for v in result["variants"]}
    assert rows["torch.onnx"]["verdict"] == PASS and rows["torch.onnx"]["layers"] is None
    transfer = rows["torch.eager-keras"]
    assert transfer["verdict"] == FAIL and transfer["first_divergence"] == "block3", transfer


@pytest.mark.parametrize("name", ["calibrated-0-1", "calibrated-dark"])
def test_miscalibration_flips_real_images_decisively(digits_checkpoints, tmp_path, name):
    ckpts, _ = digits_checkpoints
    bug = calibrate_on(1 / 255 if name == "calibrated-0-1" else 0.2)
    variant = row(broken(ckpts, tmp_path, name, "tflite-int8", bug), ckpts, tmp_path / "r")
    # Measured: 347 to 475 of the 540 held-out images flip with a wide margin.
    assert variant["decisive_flips"] > 0.25 * variant["labelled_images"], variant
    assert "decisive top-1 flips" in variant["reason"]


@pytest.mark.parametrize("fmt", ["tflite-int8", "tflite"])
def test_wrong_channel_order_fails(rgb_checkpoints, tmp_path, fmt):
    ckpts, _ = rgb_checkpoints
    variant = row(broken(ckpts, tmp_path, "bgr", fmt, reverse_channels), ckpts, tmp_path / "r")
    assert variant["verdict"] == FAIL, variant
    assert variant["top1_agreement"] < 0.7, variant
    assert variant["first_divergence"] == "block0", variant["layers"]


def write_folder(root: Path, classes: int = 3, per_class: int = 60, seed: int = 1) -> Path:
    """A small folder of 40x40 RGB PNGs: a coloured disc per class on grey noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :40]
    colours = np.array([[220, 60, 60], [60, 200, 60], [60, 60, 220]])
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            image = rng.normal(110, 35, (40, 40, 3))
            y, x, r = *rng.integers(5, 30, 2), rng.integers(5, 10)
            image[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = colours[c] + rng.normal(0, 25, 3)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                root / f"class{c}/{i}.png"
            )
    return root


def test_small_folder_gives_no_false_failure(tmp_path):
    """3 classes x 60 images, 4 epochs: 54 held-out images are too few to judge a quantized
    variant. The gate says inconclusive (why, and how many images a verdict needs), passes
    every exact row, fails nothing, and exits 0 unless --strict."""
    folder = write_folder(tmp_path / "images")
    cfg = TrainConfig(data=str(folder), image_size=16, channels=3, epochs=4, out=tmp_path / "ck")
    cfg.quiet = True
    splits = datasets.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed)
    for t in TRAINERS:
        run(TrainConfig(**vars(cfg)), t, splits)
    repo = tmp_path / "repo"
    matrix.export_all(TRAINERS, ("tflite", "tflite-fp16", "tflite-int8"), cfg.out, repo)
    args = ["--repository", str(repo), "--checkpoints", str(cfg.out)]
    assert parity.main([*args, "--reports", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "parity.json").read_text())
    verdicts = {v["name"]: v for v in report["variants"]}
    assert report["counts"][FAIL] == 0, {n: v["reason"] for n, v in verdicts.items()}
    for name, v in verdicts.items():
        if v["profile"] in ("fp16", "int8"):
            assert v["verdict"] == INCONCLUSIVE and v["labelled_images"] == 54, v
            assert "too few labelled images" in v["reason"], v
        else:
            assert v["verdict"] == PASS, (name, v["reason"])
    assert parity.main([*args, "--reports", str(tmp_path / "s"), "--strict"]) == 1
    assert "inconclusive" in (tmp_path / "s" / "parity.md").read_text()
