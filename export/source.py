"""One trained checkpoint as every exporter needs it, each form built at most once.

Torch formats read `torch_net`, TF formats `keras_model` or `saved_model`; the other
framework's model comes from exact weight transfer (contract/checkpoint.py).
"""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

from contract import checkpoint, datasets
from contract.checkpoint import Checkpoint
from contract.spec import CNNSpec
from export.repository import sha256_file
from export.saved_model import write_saved_model

CALIBRATION_IMAGES = 300  # int8 representative dataset: a few hundred training images


class Source:
    def __init__(self, ckpt: Checkpoint, scratch: Path) -> None:
        self.ckpt = ckpt
        self.scratch = Path(scratch)  # removed by close()

    @property
    def trainer(self) -> str:
        return self.ckpt.trainer

    @property
    def spec(self) -> CNNSpec:
        return self.ckpt.spec

    @cached_property
    def torch_net(self):
        return checkpoint.load_torch(self.ckpt)

    @cached_property
    def keras_model(self):
        return checkpoint.load_keras(self.ckpt)

    @cached_property
    def saved_model(self) -> Path:
        """A scratch SavedModel: the savedmodel format copies it, the TFLite converter reads it."""
        path = self.scratch / "model.savedmodel"
        write_saved_model(self.keras_model, self.spec, path)
        return path

    def fixed_batch_saved_model(self, batch: int) -> Path:
        """A scratch SavedModel whose signature takes exactly `batch` images."""
        path = self.scratch / f"model.b{batch}.savedmodel"
        if not path.exists():
            write_saved_model(self.keras_model, self.spec, path, batch)
        return path

    @cached_property
    def weights_sha256(self) -> str:
        return sha256_file(self.ckpt.weights)

    @cached_property
    def calibration_images(self) -> np.ndarray:
        """The first training images of the data and split the checkpoint was trained on."""
        spec = self.spec
        splits = self.ckpt.splits()
        count = min(CALIBRATION_IMAGES, len(splits.train.labels))
        images = np.asarray(splits.train.images[np.arange(count)], np.float32)
        want = (spec.image_size, spec.image_size, spec.channels)
        if images.shape[1:] != want:
            raise datasets.DataError(
                f"calibration data {self.ckpt.recorded['data']!r} gives images of shape "
                f"{images.shape[1:]}, "
                f"but the {self.trainer} checkpoint expects {want}"
            )
        return images

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def example_images(spec: CNNSpec, n: int = 2, seed: int = 0) -> np.ndarray:
    """Seeded random pixels for tracing: (n, H, W, C) float32 in 0..255. n=2 rather than 1
    so no tracer can mistake the batch dimension for a constant 1."""
    shape = (n, spec.image_size, spec.image_size, spec.channels)
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
