"""The order every trainer sees its training images in. What the data is and how it is
split: contract/datasets.py."""

from __future__ import annotations

import numpy as np


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled index batches, the same for every trainer and resumable: the order
    depends only on (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
