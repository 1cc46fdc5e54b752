"""Folders of real image files the tests write: one sub-folder per class."""

from __future__ import annotations

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (10, 30, 230)}


def write_rgb_folder(root, per_class: int = 6, size: int = 20):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 10, (size, size, 3)), 0, 255)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}{suffix}")
    return root
