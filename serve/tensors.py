"""Tensor contents -> float32 images under the pixel contract, for every protocol (V2 REST
and gRPC, TF Serving's REST): raw little-endian FP32 bytes or JSON numbers, counted against
the declared shape, each value in 0..PIXEL_MAX. Errors say which input and what is wrong.

The checks a small request takes are Python passes over its values rather than numpy
reductions: a reduction costs a running server's request tens of microseconds, numpy's
machinery cold between requests (benchmarks/stages.py measures where the time goes).
"""

from __future__ import annotations

import math

import numpy as np

from contract.names import PIXEL_MAX
from harness.backend import SMALL
from serve.errors import ProtocolError


def numbers(data: object, what: str) -> np.ndarray:
    """A JSON (nested) list of numbers as float32; strings and booleans are refused."""
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):
        raise ProtocolError(f"{what} must be a (nested) list of numbers") from None
    # dtype=float32 would convert "1.5" and true silently: check the kind first.
    if values.dtype.kind not in "iuf":
        raise ProtocolError(f"{what} must hold numbers only (FP32), got {values.dtype} values")
    return values.astype(np.float32, copy=False)


def pixels(images: np.ndarray, what: str) -> np.ndarray:
    """The contract's pixel range: a float32 in 0..PIXEL_MAX reads as an unsigned integer
    no larger than PIXEL_MAX's bits (one pass; Python's max for a small image, cheaper than
    a cold numpy reduction); the rest, -0.0 too, gets the exact check, which says why."""
    if 0 < images.size <= SMALL and images.flags.c_contiguous:  # a view cannot cast empty
        top = max(memoryview(images).cast("B").cast("I"))
    else:
        top = np.maximum.reduce(images.view(np.uint32), axis=None, initial=0)
    if top <= _PIXEL_BITS:
        return images
    if not (images.min() >= 0.0 and images.max() <= PIXEL_MAX):
        if not np.isfinite(images).all():
            raise ProtocolError(f"{what} contains NaN or Inf; pixels must be finite")
        raise ProtocolError(f"{what} has values outside 0..{PIXEL_MAX:g}: send raw pixels")
    return images


_PIXEL_BITS = int(np.float32(PIXEL_MAX).view(np.uint32))


def json_pixels(data: object, count: int) -> np.ndarray | None:
    """The usual small JSON tensor, a flat list of `count` (at most SMALL) numbers in the
    pixel range, as float32 in one numpy call; None for anything else, which `numbers` and
    `pixels` decide and explain. Python's min and max compare every value, so a string
    among numbers fails them, and a boolean at either end is left to the exact path. A
    JSON list holds no NaN (`load_json` refuses it), the one value they would let pass."""
    if type(data) is not list or not 0 < count <= SMALL or len(data) != count:
        return None
    try:
        low, high = min(data), max(data)
    except TypeError:
        return None
    if type(low) in _REAL and type(high) in _REAL and low >= 0 and high <= PIXEL_MAX:
        return np.array(data, _FP32)
    return None


_REAL, _FP32 = (float, int), np.dtype("<f4")  # FP32 on the wire: little-endian


def decode(data: object, shape: list[int], name: str, where: str = "data") -> np.ndarray:
    """Tensor contents -> float32 images of `shape`, pixels checked, for REST and gRPC alike.
    `data` is raw little-endian FP32 (bytes or memoryview) or a (nested) list of numbers."""
    count = math.prod(shape)
    if isinstance(data, bytes | memoryview):
        if len(data) != 4 * count:
            raise ProtocolError(
                f"input {name}: {len(data)} bytes in {where}, shape {shape} needs "
                f"{4 * count} (FP32)"
            )
        images = np.frombuffer(data, _FP32, count).reshape(shape)
    elif (images := json_pixels(data, count)) is not None:
        return images.reshape(shape)
    else:
        images = numbers(data, f"input {name}: {where}")
        if images.size != count:
            raise ProtocolError(
                f"input {name}: {images.size} values in {where}, shape {shape} needs {count}"
            )
        images = images.reshape(shape)
    return pixels(images, f"input {name}")
