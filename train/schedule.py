"""The learning rate every trainer follows, step by step: a linear warm-up over the first
`warmup` steps (lr x (step + 1) / warmup), then a cosine decay from lr to 0 at `total`
steps. Without warm-up it is torch's CosineAnnealingLR and Keras' CosineDecay.

The warm-up is for photos (data.resolve: one epoch): from a random init, the first full-size
Adam steps on a large image drive BatchNorm's statistics and the ReLUs into a corner the
run may never leave (measured on a folder of shapes at 64 px: a flat loss at chance for
8 epochs at lr 3e-3 without it, 0.99 validation accuracy by epoch 6 with it at 1e-3).
The Keras side is train/keras_match.py:WarmupCosine, the same formula in Keras ops.
"""

from __future__ import annotations

import math


def factor(step: int, total: int, warmup: int) -> float:
    """The learning rate at `step` (0-based, before its update) as a fraction of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def torch_scheduler(optimizer, total: int, warmup: int):
    """A LambdaLR stepping `factor`; call .step() after each optimizer step."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, total, warmup))
