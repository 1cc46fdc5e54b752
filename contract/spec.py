"""What the one CNN is: `CNNSpec`, from which both frameworks build it
(contract/torch_cnn.py, contract/keras_cnn.py) and which every checkpoint and manifest
records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class CNNSpec:
    """The one CNN: VGG-style stages of (conv3x3-BN-ReLU) x convs_per_stage + maxpool 2x2,
    then flatten -> dropout -> dense(hidden)-ReLU -> dropout -> dense(num_classes).

    mean/std are per channel on the 0..1 scale; the graph computes (x / 255 - mean) / std.
    BN momentum is PyTorch's convention (weight of the new batch); Keras gets 1 - momentum.
    """

    image_size: int = 8
    channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64)
    convs_per_stage: int = 2
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
                f"(one 2x2 max-pool per stage of widths={self.widths})"
            )

    @property
    def feature_side(self) -> int:
        """Spatial side after the last pool: image_size / 2**stages."""
        return self.image_size >> len(self.widths)

    @property
    def flat_features(self) -> int:
        return self.widths[-1] * self.feature_side**2

    @classmethod
    def for_data(cls, image_size: int, channels: int, num_classes: int, **kw) -> CNNSpec:
        return cls(
            image_size=image_size,
            channels=channels,
            num_classes=num_classes,
            mean=(0.5,) * channels,
            std=(0.5,) * channels,
            **kw,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CNNSpec:
        d = dict(d)
        for key in ("widths", "mean", "std"):
            d[key] = tuple(d[key])
        return cls(**d)
