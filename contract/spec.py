"""What the one CNN is: `CNNSpec`, from which both frameworks build it
(contract/torch_cnn.py, contract/keras_cnn.py) and which every checkpoint and manifest
records; `layout`, how its stages and head scale with the image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

HEADS = ("flatten", "gap")  # what turns the last feature map into the dense layer's input
WIDEST = 128  # channels of the widest stage
FLATTEN_MAX = 1024  # features a flatten head may hand its dense layer; beyond, average-pool


def layout(image_size: int) -> tuple[tuple[int, ...], str]:
    """(widths, head) of the default CNN for an image size: one stage per halving of the
    side while it is even and above 4 (at least 2), widths doubling from 32 (16 above 32 px,
    where the first stages' cost grows with the side squared) up to WIDEST; a flatten head
    while the last map is small, else global average pooling, so the head stays small
    whatever the size (224 px: 5 stages, 7x7 -> 128 features)."""
    side, stages = image_size, 0
    while side % 2 == 0 and side > 4:
        side, stages = side // 2, stages + 1
    stages = max(stages, 2)
    first = 32 if image_size <= 32 else 16
    widths = tuple(min(first * 2**i, WIDEST) for i in range(stages))
    flat = widths[-1] * (image_size >> stages) ** 2
    return widths, "flatten" if flat <= FLATTEN_MAX else "gap"


@dataclass(frozen=True)
class Probe:
    """A point inside the CNN where every runtime's tensor means the same (CNNSpec.probes):
    its name, what ends there (block | pool | dense | logits) and its shape per image,
    (H, W, C) for a feature map, the contract's NHWC whatever the runtime holds inside."""

    name: str
    kind: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CNNSpec:
    """The one CNN: VGG-style stages of (conv3x3-BN-ReLU) x convs_per_stage + maxpool 2x2,
    then the head: flatten (or global average pooling) -> dropout -> dense(hidden)-ReLU ->
    dropout -> dense(num_classes). `for_data` scales the stages and the head with the
    image (`layout`).

    mean/std are per channel on the 0..1 scale; the graph computes (x / 255 - mean) / std.
    BN momentum is PyTorch's convention (weight of the new batch); Keras gets 1 - momentum.
    """

    image_size: int = 8
    channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64)
    convs_per_stage: int = 2
    head: str = "flatten"
    hidden: int = 128
    dropout: float = 0.25
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need one value per channel ({self.channels}); "
                f"got mean={self.mean} std={self.std}"
            )
        side = self.image_size >> len(self.widths)
        if side < 1 or self.image_size % (2 ** len(self.widths)):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**{len(self.widths)} "
                f"(one 2x2 max-pool per stage of widths={self.widths}): use a multiple of 4"
            )
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")

    @property
    def feature_side(self) -> int:
        """Spatial side after the last pool: image_size / 2**stages."""
        return self.image_size >> len(self.widths)

    @property
    def flat_features(self) -> int:
        """The first dense layer's inputs: the flattened map, or one mean per channel."""
        return self.widths[-1] * (self.feature_side**2 if self.head == "flatten" else 1)

    def probes(self) -> list[Probe]:
        """The probe points, in the order the input reaches them: each conv block's output
        after its ReLU, each stage's pool, the hidden dense layer after its ReLU, the logits.
        Boundaries that every converter keeps (a fused conv+BN+ReLU still ends at the
        block's output), so each runtime can show them (harness/probes.py)."""
        out, side, i = [], self.image_size, 0
        for stage, width in enumerate(self.widths):
            for _ in range(self.convs_per_stage):
                out.append(Probe(f"block{i}", "block", (side, side, width)))
                i += 1
            side //= 2
            out.append(Probe(f"pool{stage}", "pool", (side, side, width)))
        out.append(Probe("fc0", "dense", (self.hidden,)))
        out.append(Probe("logits", "logits", (self.num_classes,)))
        return out

    def cost(self) -> dict[str, int]:
        """Weights and multiply-adds per image (convolutions and dense layers; BN, pooling
        and activations, a few per pixel, left out)."""
        weights, macs, side, c_in = 0, 0, self.image_size, self.channels
        for width in self.widths:
            for _ in range(self.convs_per_stage):
                weights += 9 * c_in * width + width + 2 * width  # kernel, bias, BN's scale/shift
                macs += 9 * c_in * width * side * side
                c_in = width
            side //= 2
        for n_in, n_out in ((self.flat_features, self.hidden), (self.hidden, self.num_classes)):
            weights += n_in * n_out + n_out
            macs += n_in * n_out
        return {"weights": weights, "macs": macs}

    @classmethod
    def for_data(cls, image_size: int, channels: int, num_classes: int, **kw) -> CNNSpec:
        widths, head = layout(image_size)
        return cls(
            image_size=image_size,
            channels=channels,
            num_classes=num_classes,
            mean=(0.5,) * channels,
            std=(0.5,) * channels,
            **{"widths": widths, "head": head, **kw},
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CNNSpec:
        d = dict(d)
        for key in ("widths", "mean", "std"):
            d[key] = tuple(d[key])
        return cls(**d)
