"""The one CNN in PyTorch, built from CNNSpec. Input NHWC 0..255, logits out.

Imports torch: import this module only where a torch model is built."""

from __future__ import annotations

import torch
from torch import nn

from contract.names import PIXEL_MAX
from contract.spec import CNNSpec


class CNN(nn.Module):
    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.spec = spec
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        layers: list[nn.Module] = []
        c_in = spec.channels
        for width in spec.widths:
            for _ in range(spec.convs_per_stage):
                layers += [
                    nn.Conv2d(c_in, width, 3, padding=1),  # == Keras padding="same"
                    nn.BatchNorm2d(width, eps=spec.bn_eps, momentum=spec.bn_momentum),
                    nn.ReLU(inplace=True),
                ]
                c_in = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        # flatten: (N, C*H*W) in NCHW order, transfer permutes it to Keras' HWC; gap: (N, C).
        # One module either way: the dense layers keep their state_dict keys (head.2, head.5).
        pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Flatten() if spec.head == "flatten" else pool,
            nn.Dropout(spec.dropout),
            nn.Linear(spec.flat_features, spec.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, spec.num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        x = (x / PIXEL_MAX - self.mean) / self.std
        return self.head(self.features(x))

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    def norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.features if isinstance(m, nn.BatchNorm2d)]

    def denses(self) -> list[nn.Linear]:
        return [m for m in self.head if isinstance(m, nn.Linear)]


def build(spec: CNNSpec, seed: int = 0) -> CNN:
    torch.manual_seed(seed)
    return CNN(spec)
