"""Datasets under the I/O contract (NHWC raw pixels 0..255, int64 labels), their one split,
and the batches every trainer takes from them.

Three sources: scikit-learn's digits (embedded, no network), a seeded synthetic generator
(any size, 1 or 3 channels), both held in memory as float32; and a folder with one
sub-folder per class, prepared once into a uint8 file (train/prepare.py) that batches are
read from, so memory does not grow with the folder. Each is split once, stratified and
seeded, into train/val/test: index views, never copies of a prepared folder.

Batches: `batches` is the one order (a function of seed and epoch); `stream` turns an
epoch's order into (images float32, labels) pairs, augmented (train/augment.py) and read
ahead in a background thread; `load_batch` is one of them, for model.fit's PyDataset.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from train import augment
from train.config import PIXEL_MAX
from train.prepare import DataError, prepare

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
    """A prepared folder (train/prepare.py) as a Dataset whose images stay on disk."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    rows = np.asarray(meta["rows"], np.int64)
    shape = (meta["image_size"], meta["image_size"], meta["channels"])
    labels = np.load(Path(folder) / "labels.npy")[rows]
    frames = Frames(Path(folder) / "images.u8", shape, rows)
    return Dataset(frames, labels, list(meta["classes"]), Path(folder).resolve())


def load_folder(
    root: str | Path, image_size: int = AUTO, channels: int = AUTO, quiet: bool = False
) -> Dataset:
    """A folder with one sub-folder per class, prepared once (train/prepare.py)."""
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


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled index batches, the same for every trainer and resumable: the order
    depends only on (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def load_batch(
    split: Dataset,
    batch: np.ndarray,
    policy: str,
    seed: int,
    epoch: int,
    step: int,
    positions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Step `step`'s images (float32, augmented) and labels; `positions`: this part's rows
    of the global batch (all of them by default)."""
    positions = np.arange(len(batch)) if positions is None else positions
    idx = batch[positions]
    params = augment.draw(policy, len(batch), split.image_size, seed, epoch, step)
    images = augment.augment(split.images[idx], policy, params.rows(positions))
    return images, split.labels[idx]


# The settings a run leaves to its data (0, -1 or "auto" in TrainConfig): photos train at a
# gentler peak rate after a warm-up epoch (train/schedule.py says why), augmented; digits and
# synthetic data, whose pixels are the pattern itself, as they always have.
FOR_PHOTOS = {"lr": 1e-3, "warmup_epochs": 1, "augment": "crop-flip", "bn_batches": 20}
FOR_ARRAYS = {"lr": 3e-3, "warmup_epochs": 0, "augment": "none", "bn_batches": 0}


def resolve(cfg, split: Dataset):
    """cfg (a TrainConfig) with what it leaves to the data made concrete; the rest as it is."""
    chosen = FOR_PHOTOS if split.prepared else FOR_ARRAYS
    return replace(
        cfg,
        lr=cfg.lr or chosen["lr"],
        warmup_epochs=chosen["warmup_epochs"] if cfg.warmup_epochs < 0 else cfg.warmup_epochs,
        augment=chosen["augment"] if cfg.augment == "auto" else cfg.augment,
        bn_batches=chosen["bn_batches"] if cfg.bn_batches < 0 else cfg.bn_batches,
    )


def calibration_batches(cfg, split: Dataset, epoch: int) -> list[np.ndarray]:
    """The training batches BatchNorm's statistics are recomputed over after an epoch
    (cfg.bn_batches of them, in an order of their own, unaugmented): the same in every
    trainer, as the training batches are."""
    order = batches(len(split.labels), cfg.batch_size, cfg.seed + 1, epoch)
    return order[: cfg.bn_batches]


def stream(
    split: Dataset,
    order: list[np.ndarray],
    policy: str,
    seed: int,
    epoch: int,
    part: tuple[int, int] = (0, 1),
    convert: Callable = lambda images, labels: (images, labels),
    depth: int = 2,
) -> Iterator:
    """An epoch's batches, `part` = (rank, size)'s contiguous share of each (cluster.shard's
    rule), read and `convert`ed `depth` steps ahead in a background thread."""
    rank, size = part

    def load(step: int):
        positions = np.array_split(np.arange(len(order[step])), size)[rank]
        return convert(*load_batch(split, order[step], policy, seed, epoch, step, positions))

    return prefetch(load, len(order), depth)


def prefetch(load, n: int, depth: int) -> Iterator:
    """load(0), ..., load(n - 1), each computed ahead in a thread; an error there is raised
    here, and a consumer that stops early stops the thread."""
    ahead: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def work() -> None:
        for step in range(n):
            try:
                item = (load(step), None)
            except BaseException as e:
                item = (None, e)
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or item[1] is not None:
                return

    thread = threading.Thread(target=work, name="batches", daemon=True)
    thread.start()
    try:
        for _ in range(n):
            value, error = ahead.get()
            if error is not None:
                raise error
            yield value
    finally:
        stop.set()
        thread.join()


def chunks(split: Dataset, size: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The split in order, `size` images at a time, as float32 (evaluation)."""
    for i in range(0, len(split.labels), size):
        rows = np.arange(i, min(i + size, len(split.labels)))
        yield split.images[rows].astype(np.float32, copy=False), split.labels[rows]
