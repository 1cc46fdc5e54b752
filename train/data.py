"""The batches every trainer takes, in the one order, from the data contract/datasets.py
holds: `batches` is the order (a function of seed and epoch); `stream` turns an epoch's order
into (images float32, labels) pairs, augmented (train/augment.py) and read ahead in a
background thread; `load_batch` is one of them, for model.fit's PyDataset; `chunks`, a split
in order for evaluation. `resolve` makes concrete the settings a run leaves to its data.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from contract.datasets import Dataset
from train import augment


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
    part: tuple[int, int] | tuple[int, int, int] = (0, 1),
    convert: Callable = lambda images, labels: (images, labels),
    depth: int = 2,
) -> Iterator:
    """An epoch's batches, read and `convert`ed `depth` steps ahead in a background thread:
    of each, the rows of `part`, (rank, size) or (first, count, size): parts first ..
    first + count - 1 of `size` contiguous parts (cluster.shard's rule), which a process
    holding several replicas (tf.distribute across workers) reads together."""
    first, count, size = part if len(part) == 3 else (part[0], 1, part[1])

    def load(step: int):
        parts = np.array_split(np.arange(len(order[step])), size)[first : first + count]
        positions = np.concatenate(parts)
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


# Images per evaluation step. The forward pass's activations, not the images, set the peak
# memory (at 64 px the first stage's output is 256 KiB an image): a fixed size keeps it the
# same however many images a split holds.
EVAL_CHUNK = 256


def chunks(split: Dataset, size: int = EVAL_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The split in order, `size` images at a time, as float32 (evaluation)."""
    for i in range(0, len(split.labels), size):
        rows = np.arange(i, min(i + size, len(split.labels)))
        yield split.images[rows].astype(np.float32, copy=False), split.labels[rows]
