"""Shared fixtures: real models trained once per session, on real data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from contract import datasets
from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS
from train.__main__ import run
from train.config import TrainConfig

QUICK = dict(epochs=2, batch_size=32, max_steps=6, quiet=True)


def train_all(out, **overrides) -> dict[str, dict]:
    cfg = TrainConfig(out=out, **{**QUICK, **overrides})
    splits = datasets.load(
        cfg.data, cfg.image_size, cfg.channels, cfg.seed, n=cfg.synthetic_samples
    )
    return {t: run(TrainConfig(**{**vars(cfg)}), t, splits) for t in TRAINERS}


@pytest.fixture(scope="session", autouse=True)
def prepared_data(tmp_path_factory):
    """Folders a test prepares (train/prepare.py) go to the session's temporary folder, and so
    do those of the processes it starts, never to the checkout's artifacts/."""
    os.environ["TANDEM_DATA"] = str(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="session", autouse=True)
def inductor_cache(tmp_path_factory):
    """AOTInductor (the pt2 format) caches compiled kernels under /tmp by default; a session
    starts from an empty cache, as on a fresh CI machine, and shares it between its exports."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("inductor"))


@pytest.fixture(scope="session")
def digits_checkpoints(tmp_path_factory):
    """All three trainers, default settings (the `make train` run), on digits."""
    out = tmp_path_factory.mktemp("digits")
    cfg = TrainConfig(out=out, quiet=True)
    splits = datasets.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed)
    metrics = {t: run(TrainConfig(**vars(cfg)), t, splits) for t in TRAINERS}
    return out, metrics


@pytest.fixture(scope="session")
def rgb_checkpoints(tmp_path_factory):
    """All three trainers on 3-channel 16x16 synthetic images, trained until confident (6
    full epochs, ~2 s each): a layout bug then flips answers decisively, while rounding
    differences between CPUs flip none."""
    out = tmp_path_factory.mktemp("rgb")
    metrics = train_all(
        out,
        data="synthetic",
        image_size=16,
        channels=3,
        synthetic_samples=400,
        epochs=6,
        max_steps=0,
    )
    return out, metrics


def export_repo(checkpoints, tmp_path_factory, name: str):
    """Every trainer x format: <tmp>/model_repository, and <tmp>/edge beside it."""
    from export.matrix import export_all

    repo = tmp_path_factory.mktemp(name) / "model_repository"
    export_all(TRAINERS, FORMAT_NAMES, checkpoints, repo)
    return repo


@pytest.fixture(scope="session")
def digits_repo(digits_checkpoints, tmp_path_factory):
    """(checkpoints, repository): every variant of the `make train` models (the edge
    formats in the edge root beside the repository). Read-only: a test that breaks a
    variant copies it first."""
    checkpoints, _ = digits_checkpoints
    return checkpoints, export_repo(checkpoints, tmp_path_factory, "digits-repo")


@pytest.fixture(scope="session")
def rgb_repo(rgb_checkpoints, tmp_path_factory):
    """(checkpoints, repository): every variant of the 3-channel models. Read-only."""
    checkpoints, _ = rgb_checkpoints
    return checkpoints, export_repo(checkpoints, tmp_path_factory, "rgb-repo")


@pytest.fixture(scope="session")
def serve_root(digits_repo, tmp_path_factory):
    """<root>/repo: the digits model repository; <root>/golden.npz: the parity stage's golden
    inputs and reference logits, which the server replays at start-up. Read-only."""
    from harness import golden

    checkpoints, repo = digits_repo
    root = tmp_path_factory.mktemp("serve")
    (root / "repo").symlink_to(repo, target_is_directory=True)
    golden.load_or_build(TRAINERS, checkpoints, root / "golden.npz", replay=False)
    return root


@pytest.fixture(scope="module")
def pair(serve_root, tmp_path_factory):
    """A repository of copies of two variants (serve_live.PAIR), for the servers a module's
    tests abuse (limits, connections)."""
    from serve_live import PAIR, subset

    return subset(serve_root / "repo", tmp_path_factory.mktemp("pair") / "repo", list(PAIR))


@pytest.fixture(scope="session")
def digits_site(digits_repo, tmp_path_factory):
    """(site folder, {path: bytes}): the static site built from the digits repository with
    the npm packages of web/package-lock.json (web/node_modules). Read-only."""
    from web import site

    out = tmp_path_factory.mktemp("site") / "web"
    return out, site.build(digits_repo[1], out)
