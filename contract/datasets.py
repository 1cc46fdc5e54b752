"""The data a checkpoint is trained on, under the I/O contract (NHWC raw pixels 0..255,
int64 labels), and its one split.

Three sources: scikit-learn's digits (embedded, no network) and a seeded synthetic generator
(any size, 1 or 3 channels), both held in memory as float32; and a folder with one
sub-folder per class, prepared once into a uint8 file (contract/folders.py) that images are
read from, so memory does not grow with the folder. Each is split once, stratified and
seeded, into train/val/test: index views, never copies of a prepared folder. The trainers
train on `train`, export calibrates int8 on it, the parity gate judges on `val` + `test`, so
the split lives here, below all of them (the batches the trainers take: train/data.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from contract.folders import DataError, prepare
from contract.names import PIXEL_MAX

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
AUTO = 0  # --image-size / --channels: from the data
__all__ = ["AUTO", "DataError", "Dataset", "Frames", "Splits"]


class Frames:
    """uint8 (N, H, W, C) images in a prepared file, read by rows with pread: the page cache
    holds them, not this process (a memory map's touched pages would count in its RSS).
    `rows` maps this view's rows to the file's."""

    def __init__(self, path: Path, shape: tuple[int, int, int], rows: np.ndarray) -> None:
        self.path, self.frame_shape, self.rows = Path(path), tuple(shape), np.asarray(rows)
        self.frame_bytes = int(np.prod(shape))
        self._fd: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.frame_shape)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:  # a descriptor does not cross processes
        return {**self.__dict__, "_fd": None}

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __getitem__(self, key) -> np.ndarray:
        rows = self.rows[key]
        if np.ndim(rows) == 0:
            return self[np.asarray([key])][0]
        out = np.empty((len(rows), *self.frame_shape), np.uint8)
        fd = self.fd()
        for i, row in enumerate(rows):
            os.preadv(fd, [memoryview(out[i]).cast("B")], int(row) * self.frame_bytes)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def take(self, rows: np.ndarray) -> Frames:
        return Frames(self.path, self.frame_shape, self.rows[rows])


@dataclass
class Dataset:
    images: np.ndarray | Frames  # (N, H, W, C): float32 in memory, or a prepared file's uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    prepared: Path | None = None  # the prepared folder a folder's images come from

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    def take(self, rows: np.ndarray) -> Dataset:
        images = self.images.take(rows) if isinstance(self.images, Frames) else self.images[rows]
        return replace(self, images=images, labels=self.labels[rows])


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits; values 0..16 scaled by 255/16 to 0..255."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images * (PIXEL_MAX / 16.0)).astype(np.float32)[..., None]  # (N, 8, 8, 1)
    return Dataset(images, bunch.target.astype(np.int64), [str(c) for c in bunch.target_names])


def make_synthetic(
    n: int, image_size: int, channels: int, num_classes: int, seed: int = 0
) -> Dataset:
    """Learnable random data: each class is a fixed smooth template, each sample the
    template plus noise. Different per channel, so a layout bug changes the answer."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, PIXEL_MAX, (num_classes, 4, 4, channels))
    reps = -(-image_size // 4)
    templates = np.kron(coarse, np.ones((1, reps, reps, 1)))[:, :image_size, :image_size]
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    noise = rng.normal(0, 40.0, (n, image_size, image_size, channels))
    images = np.clip(templates[labels] + noise, 0, PIXEL_MAX).astype(np.float32)
    return Dataset(images, labels.astype(np.int64), [f"class_{i}" for i in range(num_classes)])


def open_prepared(folder: Path) -> Dataset:
    """A prepared folder (contract/folders.py) as a Dataset whose images stay on disk."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    rows = np.asarray(meta["rows"], np.int64)
    shape = (meta["image_size"], meta["image_size"], meta["channels"])
    labels = np.load(Path(folder) / "labels.npy")[rows]
    frames = Frames(Path(folder) / "images.u8", shape, rows)
    return Dataset(frames, labels, list(meta["classes"]), Path(folder).resolve())


def load_folder(
    root: str | Path, image_size: int = AUTO, channels: int = AUTO, quiet: bool = False
) -> Dataset:
    """A folder with one sub-folder per class, prepared once (contract/folders.py)."""
    return open_prepared(prepare(root, image_size, channels, quiet=quiet))


def split(data: Dataset, seed: int) -> Splits:
    """One fixed, stratified, seeded train/val/test split shared by all trainers."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if counts.min() < 5:
        small = [data.class_names[i] for i in np.flatnonzero(counts < 5)]
        raise DataError(f"classes {small} have fewer than 5 images; add images to split them")
    idx = np.arange(len(data.labels))
    rest, test = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=data.labels, random_state=seed
    )
    train, val = train_test_split(
        rest,
        test_size=VAL_FRACTION / (1 - TEST_FRACTION),
        stratify=data.labels[rest],
        random_state=seed,
    )
    return Splits(data.take(train), data.take(val), data.take(test))


def load(
    source: str, image_size: int, channels: int, seed: int, quiet: bool = True, **synthetic
) -> Splits:
    """Resolve a --data value: "digits", "synthetic" or a folder path (or a prepared
    folder, as a checkpoint records it). AUTO size or channels follow the data."""
    if source == "digits":
        if (image_size, channels) not in {(AUTO, AUTO), (8, 1), (8, AUTO), (AUTO, 1)}:
            raise DataError("digits are 8x8 grey: drop --image-size and --channels")
        data = load_digits()
    elif source == "synthetic":
        n, classes = synthetic.get("n", 2000), synthetic.get("num_classes", 10)
        data = make_synthetic(n, image_size or 8, channels or 1, classes, seed)
    elif (Path(source) / "meta.json").is_file():
        data = open_prepared(Path(source))
    else:
        data = load_folder(source, image_size, channels, quiet)
    return split(data, seed)
