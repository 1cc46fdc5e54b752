"""An uploaded PNG, JPEG or WebP as one image under the contract: float32 [1, H, W, C], 0..255.

The conversion is the training folders' (contract/pixels.py: orientation, transparency,
grey "L" or "RGB", bilinear resize), so an upload is seen the way the training images were.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from contract.names import PIXEL_MAX
from contract.pixels import FORMATS, to_pixels

# Checked from the header, before any pixel is decoded: a small file that inflates to
# gigapixels (a decompression bomb) is refused for the cost of reading its header.
MAX_PIXELS = 4096 * 4096


class ImageError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode(data: bytes, shape: tuple[int, int, int], invert: bool = False) -> np.ndarray:
    """`shape` is the model's (H, W, C); `invert` turns dark ink on paper into the
    light-on-dark digits the embedded data set holds."""
    height, width, channels = shape
    if channels not in (1, 3):
        raise ImageError(f"the model takes {channels} channels; uploads give 1 or 3", 422)
    if not data:
        raise ImageError("the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"image is {w}x{h} = {w * h} pixels, over the {MAX_PIXELS} limit", 413
                )
            pixels = to_pixels(im, height, width, channels)[None].astype(np.float32)
    except UnidentifiedImageError:
        raise ImageError(f"not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image", 415) from None
    except Image.DecompressionBombError as e:
        raise ImageError(str(e), 413) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"cannot decode the image: {e}") from None
    return PIXEL_MAX - pixels if invert else pixels
