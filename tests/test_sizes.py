"""The CNN at the sizes photos train at: its layout, the exact weight transfer, the server's
upload path at 64, 96 and 224 px, and every exporter and the parity gate at 224 px, the
largest (32 px, trained on real files: test_photos.py; 64 and 96 px pass the same, minutes
more: EXPORT_SIZES=64,96,224 runs them)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from contract import pixels
from contract.spec import CNNSpec
from train.config import TrainConfig

SIZES = (64, 96, 224)
EXPORT_SIZES = tuple(int(s) for s in os.environ.get("EXPORT_SIZES", "224").split(","))


@pytest.mark.parametrize("side", [8, 16, 28, 32, 64, 96, 224])
def test_layout_keeps_the_head_small(side):
    spec = CNNSpec.for_data(side, 3, 10)
    assert spec.image_size % 2 ** len(spec.widths) == 0
    assert spec.flat_features <= 1024 and spec.cost()["weights"] <= 1_000_000
    assert spec.head == ("flatten" if side <= 16 else "gap")


@pytest.mark.parametrize("side", SIZES)
def test_transfer_is_exact_with_a_pooling_head(side):
    import torch

    from contract import keras_cnn, torch_cnn, transfer

    spec = CNNSpec.for_data(side, 3, 5)
    net = torch_cnn.build(spec, seed=1).eval()
    with torch.no_grad():  # statistics off their init, so BatchNorm's transfer is tested too
        for norm in net.norms():
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    model = keras_cnn.build(spec)
    transfer.torch_to_keras(net, model)
    images = np.random.default_rng(0).uniform(0, 255, (3, side, side, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(model.predict_on_batch(images), expected, atol=1e-4)


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    """{side: checkpoints}: a torch model per size, a few steps on synthetic RGB images."""
    from contract import datasets
    from train.__main__ import run

    made = {}
    for side in EXPORT_SIZES:
        out = tmp_path_factory.mktemp(f"px{side}")
        cfg = TrainConfig(
            data="synthetic", image_size=side, channels=3, synthetic_samples=60,
            synthetic_classes=3, epochs=1, max_steps=2, out=out, quiet=True,
        )  # fmt: skip
        splits = datasets.load(cfg.data, side, 3, cfg.seed, n=60, num_classes=3)
        run(cfg, "torch", splits)
        made[side] = out
    return made


@pytest.mark.slow  # exports every format (~1 min a size)
@pytest.mark.parametrize("side", EXPORT_SIZES)
def test_every_format_exports_and_passes_at(side, sized, tmp_path):
    from contract.formats import FORMAT_NAMES
    from export.matrix import export_all
    from harness import parity

    repo = tmp_path / "model_repository"
    export_all(["torch"], FORMAT_NAMES, sized[side], repo)
    result = parity.run(repo, sized[side], tmp_path / "reports")
    fails = [(r["name"], r["reason"]) for r in result["variants"] if r["verdict"] == "fail"]
    assert not fails


@pytest.mark.parametrize("side", SIZES)
def test_an_upload_is_decoded_to_the_models_size(side):
    from serve.images import decode

    photo = Image.new("RGB", (300, 200), (200, 30, 30))
    blob = io.BytesIO()
    photo.save(blob, "JPEG", quality=95)
    images = decode(blob.getvalue(), (side, side, 3))
    assert images.shape == (1, side, side, 3) and images.dtype == np.float32
    with Image.open(io.BytesIO(blob.getvalue())) as again:
        np.testing.assert_array_equal(images[0], pixels.to_pixels(again, side, side, 3))
