"""A folder of real JPEG and PNG files through the whole pipeline: prepared, trained by all
three trainers from the cache with the folder defaults (augmentation, warm-up, BatchNorm
recalibration, the CNN the size asks for), every format exported, the parity gate.

Three classes of noisy colour (tests/test_data.py's folder), easy on purpose: this proves
the path, in CI time; what the defaults give on shapes, which take real training, is
benchmarks/photos.py's report (docs/data.md). At 32 px the CNN is 3 stages with a pooling
head, so every exporter meets global average pooling; other sizes: test_sizes.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from folders import write_rgb_folder
from test_web import pytestmark as web_marks

from contract import datasets
from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS
from train.__main__ import run
from train.config import TrainConfig

pytestmark = pytest.mark.slow  # trains three models, exports 9 variants (~1.5 min)

SIZE = 32
web_only = web_marks[-1]  # test_web.py's rule: skipped, saying why, without Chromium or npm
# The torch model: its TF formats go through the Keras rebuild (contract/transfer.py), so
# every exporter of both frameworks runs; the rebuild is exact at every size (test_sizes.py).
EXPORTED = ("torch",)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """(folder, checkpoints, {trainer: metrics}): 150 files, 3 classes, trained with every
    default a folder gets but the size (32 px) and the epochs (6)."""
    root = tmp_path_factory.mktemp("photos")
    folder = write_rgb_folder(root / "colours", per_class=50, size=48)
    splits = datasets.load(str(folder), SIZE, 0, seed=0)
    out = root / "checkpoints"
    metrics = {
        t: run(TrainConfig(data=str(folder), out=out, quiet=True), t, splits) for t in TRAINERS
    }
    return folder, out, metrics


def test_a_folder_trains_with_its_defaults_in_every_trainer(photos):
    _, out, metrics = photos
    for trainer, m in metrics.items():
        recorded = json.loads((out / trainer / "spec.json").read_text())
        assert recorded["augment"] == "crop-flip" and recorded["lr"] == 1e-3
        assert recorded["warmup_epochs"] == 1 and recorded["bn_batches"] == 20
        assert recorded["spec"]["channels"] == 3 and recorded["spec"]["head"] == "gap"
        assert recorded["prepared"].endswith("32px-rgb")
        # three plain colours: any model that learned anything tells them all apart
        assert m["test_accuracy"] == 1.0, (trainer, m["test_accuracy"])
    # one init, one order, one augmentation: the Keras trainers' first epochs agree
    first = [metrics[t]["epochs"][0]["loss"] for t in ("keras-fit", "keras-tape")]
    assert first[0] == pytest.approx(first[1], rel=1e-3)


@pytest.fixture(scope="module")
def photo_repo(photos, tmp_path_factory):
    """Every format of the torch model (model_repository, edge beside it)."""
    from export.matrix import export_all

    repo = tmp_path_factory.mktemp("photo-export") / "model_repository"
    export_all(EXPORTED, FORMAT_NAMES, photos[1], repo)
    return repo


def test_every_format_of_a_photo_model_passes_the_gate(photos, photo_repo, tmp_path):
    from harness import parity

    result = parity.run(photo_repo, photos[1], tmp_path / "reports")
    fails = [(r["name"], r["reason"]) for r in result["variants"] if r["verdict"] == "fail"]
    assert not fails
    assert len(result["variants"]) == len(EXPORTED) * (len(FORMAT_NAMES) + 1)


@web_only
def test_the_site_runs_a_photo_model_in_the_browser(photos, photo_repo, tmp_path):
    """The site built from the photo models runs every in-browser variant at 32 px RGB: the
    exact ones pass, none fails. The quantized ones are inconclusive, as on the host: 45
    labelled images are too few for their verdict (docs/parity.md), never a false fail."""
    from harness import parity
    from web import site

    built = tmp_path / "web"
    site.build(photo_repo, built)
    result = parity.run(photo_repo, photos[1], tmp_path / "reports", site=built)
    rows = {r["name"]: r for r in result["variants"]}
    browser = [r for r in rows.values() if r["runtime"]]
    # the four ONNX formats and the three TFLite ones
    assert len(browser) == len(EXPORTED) * 7
    for row in browser:
        host = rows[row["name"].split("@")[0]]
        assert row["verdict"] != "fail" and host["verdict"] != "fail", (row["name"], row["reason"])
        if row["profile"] == "fp32":
            assert row["verdict"] == "pass", (row["name"], row["reason"])
        else:
            assert row["verdict"] in ("pass", "inconclusive"), row
            assert "too few labelled images" in row["reason"] or row["verdict"] == "pass", row


def test_the_checkpoint_reads_the_cache_it_was_trained_on(photos):
    from contract import checkpoint

    folder, out, _ = photos
    ckpt = checkpoint.find("torch", out)
    splits = ckpt.splits()
    assert str(splits.train.prepared) == ckpt.recorded["prepared"]
    again = datasets.load(str(folder), SIZE, 3, seed=0)
    np.testing.assert_array_equal(splits.test.labels, again.test.labels)
