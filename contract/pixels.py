"""One image file as pixels under the contract: uint8 (H, W, C), 0..255, grey or RGB.

The one conversion for training folders (contract/folders.py) and served uploads
(serve/images.py), so an upload is seen as the training images were (the web page repeats
it in JavaScript: web/src/pixels.js):
- EXIF orientation applied: a phone stores a portrait photo sideways, with a tag saying so;
- palette images read through their palette; transparency composited onto white, what a
  page shows behind a transparent image;
- 16-bit images scaled to 8 bits;
- grey is ITU-R 601 luma (PIL's "L"), colour is RGB;
- resized to height x width (squashed, not cropped: nothing at the edges is lost) with PIL's
  bilinear filter, which averages over the whole footprint when it shrinks; a JPEG far
  larger than that is decoded at 1/2, 1/4 or 1/8 scale first (libjpeg's DCT scaling, PIL's
  `draft`, as its thumbnails do), which costs a fraction of a full decode.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
FORMATS = ("PNG", "JPEG", "WEBP")  # what Image.open may parse: nothing else is even tried
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})  # more than 8 bits
WHITE = (255, 255, 255, 255)


def is_colour(im: Image.Image) -> bool:
    """Whether an image holds colour, by its mode (and palette): read from the header."""
    if im.mode in GREY_MODES:
        return False
    if im.mode in ("P", "PA"):
        palette = np.asarray(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
        return bool((palette != palette[:, :1]).any())
    return True


def flatten(im: Image.Image) -> Image.Image:
    """An 8-bit "L" or "RGB" image of what `im` shows: palette resolved, alpha composited
    onto white, 16-bit scaled down."""
    if im.mode in WIDE_MODES:
        values = np.asarray(im, np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0  # 16-bit: 65535 -> 255
        return Image.fromarray(np.clip(values / scale, 0, 255).round().astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        backdrop = Image.new("RGBA", im.size, WHITE)
        backdrop.alpha_composite(im.convert("RGBA"))
        return backdrop.convert("RGB")
    return im if im.mode in ("L", "RGB") else im.convert("RGB")


def to_pixels(im: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """An opened image as uint8 (height, width, channels): 1 (grey) or 3 (RGB)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    mode = "L" if channels == 1 else "RGB"
    if im.format == "JPEG":  # a square target: orientation cannot change what scale fits
        im.draft(mode if im.mode in ("L", "RGB") else None, (max(width, height),) * 2)
    im = flatten(ImageOps.exif_transpose(im))
    im = im.convert(mode).resize((width, height), Image.BILINEAR)
    return np.asarray(im, np.uint8).reshape(height, width, channels)
