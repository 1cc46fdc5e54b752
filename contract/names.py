"""The names every stage shares: the I/O contract's tensors and pixels, the trainers, and
how a variant is named.

The contract: input `images`, float32 [N, H, W, C], raw pixels 0..PIXEL_MAX (scaling,
normalisation and the NHWC -> NCHW permute live inside every graph); output `logits`,
float32 [N, num_classes].
"""

from __future__ import annotations

INPUT_NAME = "images"  # float32 [N, H, W, C], raw pixels 0..255
OUTPUT_NAME = "logits"  # float32 [N, num_classes]
PIXEL_MAX = 255.0
LABELS_FILE = "labels.txt"  # one class name per line, in a checkpoint and in a variant

# Each trainer and the framework it trains in, which decides its weights file.
TRAINER_FRAMEWORK = {"torch": "torch", "keras-fit": "keras", "keras-tape": "keras"}
TRAINERS = tuple(TRAINER_FRAMEWORK)


def variant_name(trainer: str, fmt: str) -> str:
    """`<trainer>.<format>`, e.g. `torch.tflite-int8`: folder, registry key and test id."""
    return f"{trainer}.{fmt}"
