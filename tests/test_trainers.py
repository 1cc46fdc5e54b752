"""The three trainers: accuracy on digits, determinism, resume, files written."""

from __future__ import annotations

import json

import pytest
from conftest import QUICK

from contract import datasets
from contract.names import TRAINERS
from train.__main__ import run
from train.config import TrainConfig


def quick(out, trainer, **kw) -> dict:
    cfg = TrainConfig(out=out, **{**QUICK, **kw})
    splits = datasets.load("digits", 8, 1, cfg.seed)
    return run(cfg, trainer, splits)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_digits_accuracy(digits_checkpoints, trainer):
    """`make train`'s settings reach >= 95% test accuracy with every trainer."""
    out, metrics = digits_checkpoints
    assert metrics[trainer]["test_accuracy"] >= 0.95
    run_dir = out / trainer
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics[trainer]["test_accuracy"]
    assert len(saved["epochs"]) == TrainConfig().epochs
    for name in ("spec.json", "labels.txt", "curves.png"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.parametrize("trainer", TRAINERS)
def test_same_seed_same_first_epoch_loss(tmp_path, trainer):
    a = quick(tmp_path / "a", trainer, epochs=1)["epochs"][0]["loss"]
    b = quick(tmp_path / "b", trainer, epochs=1)["epochs"][0]["loss"]
    c = quick(tmp_path / "c", trainer, epochs=1, seed=1)["epochs"][0]["loss"]
    assert a == pytest.approx(b, rel=1e-6, abs=0)
    assert a != pytest.approx(c, rel=1e-3), "a different seed should change the loss"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_resume_continues_from_saved_epoch(tmp_path, trainer):
    """Stop after 2 of 3 epochs, then resume: equals 3 epochs straight
    (weights, optimiser, schedule, batch order and dropout masks all restored)."""
    straight = quick(tmp_path / "straight", trainer, epochs=3)["epochs"]
    quick(tmp_path / "resumed", trainer, epochs=3, stop_after=2)
    resumed = quick(tmp_path / "resumed", trainer, epochs=3, resume=True)["epochs"]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed[2]["loss"] == pytest.approx(straight[2]["loss"], rel=1e-4)
    assert resumed[2]["val_loss"] == pytest.approx(straight[2]["val_loss"], rel=1e-4)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="drop --resume"):
        quick(tmp_path, "torch", resume=True)


def test_checkpoint_rebuilds_its_own_split(rgb_checkpoints):
    """Export calibration and parity's golden set use the exact data a model was trained on,
    synthetic settings included (400 images here, not the default 2000)."""
    from contract import checkpoint

    out, _ = rgb_checkpoints
    splits = checkpoint.find("torch", out).splits()
    assert sum(len(s.labels) for s in (splits.train, splits.val, splits.test)) == 400
    assert splits.test.images.shape[1:] == (16, 16, 3)


def test_speed_flags_mean_one_thing_in_every_trainer():
    """--bf16 and --compile are honoured by all three; --channels-last (a PyTorch memory
    format) and --fused-adam (a PyTorch optimizer kernel) by torch alone: asked of a Keras
    trainer each is an error that says why."""
    from train.__main__ import refused_flags

    assert refused_flags(TrainConfig(bf16=True, compile=True), list(TRAINERS)) == ""
    assert refused_flags(TrainConfig(channels_last=True), ["torch"]) == ""
    why = refused_flags(TrainConfig(channels_last=True), list(TRAINERS))
    assert "--channels-last" in why and "NHWC" in why and "keras-fit, keras-tape" in why
    assert refused_flags(TrainConfig(fused_adam=True), ["torch"]) == ""
    why = refused_flags(TrainConfig(fused_adam=True), ["keras-fit"])
    assert "--fused-adam" in why and "keras-fit cannot honour it" in why


def test_refused_flag_exits_before_any_work(tmp_path, capsys):
    from train.__main__ import main

    code = main(["--trainer", "keras-tape", "--channels-last", "--out", str(tmp_path)])
    assert code == 2 and "NHWC" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing trained, nothing written"


def gpu_visible(trainer: str) -> bool:
    if trainer == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_device_cuda_without_a_gpu_says_so(tmp_path, trainer):
    if gpu_visible(trainer):
        pytest.skip("a GPU is visible here")
    with pytest.raises(SystemExit, match=r"--device cuda: .* sees no (CUDA )?GPU") as e:
        quick(tmp_path, trainer, device="cuda")
    if trainer != "torch":
        import tensorflow as tf

        # tensorflow-cpu can never see one: the message names the install that can
        assert ("make setup GPU=1" in str(e.value)) != tf.test.is_built_with_cuda()
