"""Folders of real image files to train on, made here: no download, any size and count.

    python -m benchmarks.shapes DIR --per-class 750 --size 128     # 3,000 JPEG files

One plain shape per image (a filled circle, a filled square, a filled triangle, or a ring: a
circle drawn as a thin outline) in a random colour, size, place and turn, on a noisy
background of another random colour, saved as JPEG (or PNG). A class is its shape only:
colour says nothing, and the ring differs from the disc by a few pixels' outline, the
detail a CNN shrunk to too few pixels loses. The data and training benchmarks and the
tests of folder training use it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle", "ring")


def draw(shape: str, size: int, rng: np.random.Generator):
    """One image (PIL, RGB) of `shape`."""
    from PIL import Image, ImageDraw

    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 24, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels, "RGB")
    pen = ImageDraw.Draw(im)
    colour = tuple(int(c) for c in (background + rng.integers(80, 176, 3)) % 256)
    radius = rng.uniform(0.15, 0.3) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    turn = rng.uniform(0, 2 * math.pi)
    if shape in ("circle", "ring"):
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        outline = max(2, round(size / 40))
        if shape == "ring":
            pen.ellipse(box, outline=colour, width=outline)
        else:
            pen.ellipse(box, fill=colour)
    else:
        corners = 4 if shape == "square" else 3
        points = [
            (cx + radius * math.cos(turn + 2 * math.pi * k / corners),
             cy + radius * math.sin(turn + 2 * math.pi * k / corners))
            for k in range(corners)
        ]  # fmt: skip
        pen.polygon(points, fill=colour)
    return im


def write_folder(
    root: Path,
    per_class: int,
    size: int = 128,
    seed: int = 0,
    suffix: str = ".jpg",
    classes: tuple[str, ...] = CLASSES,
) -> Path:
    """root/<class>/<i><suffix> for every class; JPEG at quality 90, or PNG."""
    rng = np.random.default_rng(seed)
    for shape in classes:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(shape, size, rng).save(root / shape / f"{i:05d}{suffix}", quality=90)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shapes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folder", type=Path, help="where to write the class sub-folders")
    parser.add_argument("--per-class", type=int, default=750, help="images per class")
    parser.add_argument("--size", type=int, default=128, help="side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="the images drawn")
    parser.add_argument("--png", action="store_true", help="PNG files instead of JPEG")
    args = parser.parse_args(argv)
    suffix = ".png" if args.png else ".jpg"
    write_folder(args.folder, args.per_class, args.size, args.seed, suffix)
    print(f"{args.folder}: {args.per_class * len(CLASSES)} images of {len(CLASSES)} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
