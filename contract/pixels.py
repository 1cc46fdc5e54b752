"""An image as the contract's pixels: the one conversion for training folders
(contract/datasets.py) and served uploads (serve/images.py) alike, so an upload is seen the
way the training images were. The web page repeats it in JavaScript (web/src/pixels.js)."""

from __future__ import annotations

import numpy as np


def to_pixels(im, height: int, width: int, channels: int) -> np.ndarray:
    """One PIL image as float32 (H, W, C), 0..255: grey ("L") or RGB, bilinear resize."""
    from PIL import Image

    im = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32).reshape(height, width, channels)
