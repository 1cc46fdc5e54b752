"""The data a checkpoint is trained on, under the I/O contract: float32 NHWC raw pixels
0..255, int64 labels, and its one split.

Three sources: scikit-learn's digits (embedded, no network), a folder with one
sub-folder per class, and a seeded synthetic generator (any size, 1 or 3 channels).
All are split once, stratified and seeded, into train/val/test: the trainers train on
`train`, export calibrates int8 on it, the parity gate judges on `val` + `test`, so the
split lives here, below all of them (the order of training batches: train/data.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.names import PIXEL_MAX
from contract.pixels import to_pixels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1


class DataError(ValueError):
    """Bad user data: the message says what is wrong and what to do."""


@dataclass
class Dataset:
    images: np.ndarray  # (N, H, W, C) float32, 0..255
    labels: np.ndarray  # (N,) int64
    class_names: list[str]

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    @property
    def channels(self) -> int:
        return self.images.shape[3]


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


def load_folder(root: str | Path, image_size: int, channels: int) -> Dataset:
    """A folder with one sub-folder per class of PNG/JPEG images, resized to image_size."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass a folder of class sub-folders")
    if channels not in (1, 3):
        raise DataError(f"--channels must be 1 (grey) or 3 (RGB), got {channels}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {
        c: sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for c in classes
    }
    files = {c: f for c, f in files.items() if f}
    if len(files) < 2:
        raise DataError(
            f"{root} has {len(files)} class sub-folder(s) with PNG/JPEG images; "
            "a classifier needs at least 2: put each class's images in its own sub-folder"
        )
    images, labels = [], []
    for label, name in enumerate(files):
        for path in files[name]:
            try:
                with Image.open(path) as im:
                    images.append(to_pixels(im, image_size, image_size, channels))
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise DataError(f"cannot read image {path}: {e}; fix or remove the file") from e
            labels.append(label)
    return Dataset(np.stack(images), np.asarray(labels, np.int64), list(files))


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

    def take(i: np.ndarray) -> Dataset:
        return Dataset(data.images[i], data.labels[i], data.class_names)

    return Splits(take(train), take(val), take(test))


def load(source: str, image_size: int, channels: int, seed: int, **synthetic) -> Splits:
    """Resolve a --data value: "digits", "synthetic" or a folder path."""
    if source == "digits":
        data = load_digits()
    elif source == "synthetic":
        data = make_synthetic(
            synthetic.get("n", 2000),
            image_size,
            channels,
            synthetic.get("num_classes", 10),
            seed,
        )
    else:
        data = load_folder(source, image_size, channels)
    return split(data, seed)
