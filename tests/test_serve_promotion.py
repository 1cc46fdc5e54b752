"""The promotion gate: a new version takes over from the live one only if it passes its own
check and is not decisively less accurate on the labelled golden images.

`compare` on counted answers (exact, no runtime), then the registry on real variants: a
version trained for one step, from another run than the golden batch's reference, passes
its own check as unproven and is refused against the live version; the live one serves on.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from contract import checkpoint, datasets
from export.matrix import export_variant
from export.source import Source
from harness.golden import Saved
from harness.verdict import FAIL, INCONCLUSIVE, PASS
from serve import models
from serve.config import ServeConfig
from serve.registry import Registry
from train.__main__ import run
from train.config import TrainConfig

NAME = "torch.onnx"


def servable(version: str, right: int, n: int = 700, wrong_first: bool = False) -> models.Servable:
    """A READY servable whose answers get `right` of n labelled images (the last ones, or
    the first ones)."""
    labels = np.zeros(n, np.int64)
    answers = np.ones(n, np.int64)
    hit = slice(0, right) if wrong_first else slice(n - right, n)
    answers[hit] = 0
    s = models.Servable(NAME, None, state=models.READY, version=version)
    s.answers = (answers, labels)
    return s


@pytest.mark.parametrize(
    ("fresh", "verdict"),
    [
        (servable("2", 690), PASS),  # the same answers
        (servable("2", 689), PASS),  # 1 more miss in 700: within 1% at 95%
        (servable("2", 640), FAIL),  # 50 more misses: decisively worse
        (servable("2", 700), PASS),  # better
        # As accurate on other images: each miss it adds counts net of one it fixes.
        (servable("2", 690, wrong_first=True), PASS),
        (servable("2", 650, wrong_first=True), FAIL),  # 50 lost, 10 fixed: 40 net
    ],
)
def test_compare_counts_net_new_misses_with_a_wilson_bound(fresh, verdict):
    live = servable("1", 690)
    got, reason = models.compare(fresh, live)
    assert got == verdict, reason
    if verdict == FAIL:
        assert "misses" in reason and "allowed 1%" in reason


def test_too_few_labelled_images_to_tell_is_not_a_refusal():
    live, fresh = servable("1", 50, n=50), servable("2", 49, n=50)
    assert models.compare(fresh, live)[0] == INCONCLUSIVE  # promoted: only FAIL refuses


def test_answers_on_another_golden_batch_are_not_compared():
    live, fresh = servable("1", 690), servable("2", 0)  # all wrong, on the same labels: fail
    assert models.compare(fresh, live)[0] == FAIL
    answers, labels = fresh.answers
    fresh.answers = (answers, labels + 1)  # a golden batch remade since the live one loaded
    assert models.compare(fresh, live) == (PASS, "")


@pytest.mark.slow
def test_a_version_from_another_run_is_checked_but_unproven(serve_root, tmp_path):
    saved = dict(np.load(serve_root / "golden.npz"))
    saved["checkpoint_torch"] = np.array("0" * 64)  # the reference of another training run
    np.savez(tmp_path / "golden.npz", **saved)
    s = models.Servable(NAME, serve_root / "repo" / NAME)
    models.load(s, Saved(tmp_path / "golden.npz"), 1, 8, 0.0)
    assert s.ready and s.parity["verdict"] == INCONCLUSIVE
    assert "comes from another training run" in s.parity["reason"]
    assert "contract and batching checked" in s.parity["reason"]
    assert s.answers is not None  # still counted, for the comparison with the live one
    s.batcher.close()


@pytest.mark.slow
def test_a_less_accurate_version_is_refused_and_the_live_one_serves_on(
    serve_root, digits_repo, tmp_path
):
    repo = tmp_path / "repo"
    shutil.copytree(serve_root / "repo" / NAME, repo / NAME)
    registry = Registry(ServeConfig(repository=repo, golden=serve_root / "golden.npz"))
    registry.load_all()
    live = registry.models[NAME]
    assert live.ready and live.version == "1"
    # Version 2: the same CNN after one training step, exported as every version is.
    cfg = TrainConfig(out=tmp_path / "ckpt", epochs=1, max_steps=1, quiet=True)
    splits = datasets.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed)
    run(cfg, "torch", splits)
    source = Source(checkpoint.find("torch", tmp_path / "ckpt"), tmp_path / "scratch")
    export_variant(source, "onnx", repo)
    source.close()
    fresh = registry.reload(NAME)
    assert not fresh.ready and fresh.version == "2"
    assert "version 2 misses" in fresh.reason and "than version 1" in fresh.reason
    assert registry.models[NAME] is live and live.ready  # still serving, still version 1
    assert live.refused == {"version": "2", "reason": fresh.reason}
    assert live.stats.rollouts == {"refused": 1}
    assert registry.serving(NAME, "1") is live
    registry.close()


@pytest.mark.slow
def test_a_version_tampered_while_serving_is_refused_and_the_live_one_serves_on(
    serve_root, tmp_path
):
    repo = tmp_path / "repo"
    shutil.copytree(serve_root / "repo" / NAME, repo / NAME)
    registry = Registry(ServeConfig(repository=repo, golden=serve_root / "golden.npz"))
    registry.load_all()
    live = registry.models[NAME]
    with (repo / NAME / "1" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    fresh = registry.reload(NAME)
    assert not fresh.ready and "1/model.onnx has sha256" in fresh.reason
    assert registry.serving(NAME) is live and live.refused["reason"] == fresh.reason
    x = np.zeros((2, 8, 8, 1), np.float32)
    assert live.model.predict(x).shape == (2, 10)  # the loaded model is untouched
    registry.close()
