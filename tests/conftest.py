"""Shared fixtures: real models trained once per session, on real data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from train import data
from train.__main__ import run
from train.config import TRAINERS, TrainConfig

QUICK = dict(epochs=2, batch_size=32, max_steps=6, quiet=True)


def train_all(out, **overrides) -> dict[str, dict]:
    cfg = TrainConfig(out=out, **{**QUICK, **overrides})
    splits = data.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed, n=cfg.synthetic_samples)
    return {t: run(TrainConfig(**{**vars(cfg)}), t, splits) for t in TRAINERS}


@pytest.fixture(scope="session")
def digits_checkpoints(tmp_path_factory):
    """All three trainers, default settings (the `make train` run), on digits."""
    out = tmp_path_factory.mktemp("digits")
    cfg = TrainConfig(out=out, quiet=True)
    splits = data.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed)
    metrics = {t: run(TrainConfig(**vars(cfg)), t, splits) for t in TRAINERS}
    return out, metrics


@pytest.fixture(scope="session")
def rgb_checkpoints(tmp_path_factory):
    """All three trainers, quick mode, on 3-channel 16x16 synthetic images."""
    out = tmp_path_factory.mktemp("rgb")
    metrics = train_all(out, data="synthetic", image_size=16, channels=3, synthetic_samples=400)
    return out, metrics
