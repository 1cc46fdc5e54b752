"""What the page tests do to the two pages that carry the drawing pad (the server's,
tests/test_serve_page.py, and the in-browser site's, tests/test_web.py), and the image
files they and the upload tests send."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from contract.datasets import load_digits


def draw_a_one(page) -> None:
    """A vertical stroke down the middle of the pad (#pad): a "1"."""
    box = page.locator("#pad").bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + 40
    page.mouse.move(x, top)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, top + step * 17)
    page.mouse.up()


def image_file(pixels: np.ndarray, size: int = 64, fmt: str = "PNG") -> bytes:
    """Pixels (H, W) grey or (H, W, 3) RGB, 0..255, as a PNG or JPEG file of size x size
    (nearest neighbour: a digit's 8x8 pixels come back unchanged at 8x8)."""
    image = Image.fromarray(pixels.astype(np.uint8)).resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def digit_file(index: int = 21, fmt: str = "PNG") -> bytes:
    """One of the embedded digits, as an upload."""
    return image_file(load_digits().images[index, :, :, 0], fmt=fmt)


def upload(page, data: bytes, name: str = "d.png", mime: str = "image/png") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
