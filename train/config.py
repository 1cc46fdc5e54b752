"""Every fact the pipeline shares, defined once: the CNN spec, training settings, names, paths.

Both frameworks build the CNN from `CNNSpec`; all three trainers read `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# Each trainer and the framework it trains in, which decides its weights file.
TRAINER_FRAMEWORK = {"torch": "torch", "keras-fit": "keras", "keras-tape": "keras"}
TRAINERS = tuple(TRAINER_FRAMEWORK)
WEIGHTS_FILE = {"torch": "model.pt", "keras": "model.keras"}
LABELS_FILE = "labels.txt"  # one class name per line, in a checkpoint and in a variant
INPUT_NAME = "images"  # float32 [N, H, W, C], raw pixels 0..255
OUTPUT_NAME = "logits"  # float32 [N, num_classes]
PIXEL_MAX = 255.0
# Who draws the initial weights: one framework for all three trainers (copied exactly into
# the other by train/transfer.py), or "own": each framework its own default init.
INIT_SOURCES = ("torch", "keras", "own")

# Deployment formats (the export matrix, docs/export.md) and the precision each one carries.
FORMATS = (
    "torchscript",
    "pt2",
    "onnx",
    "onnx-tf",
    "savedmodel",
    "tflite",
    "tflite-fp16",
    "tflite-int8",
    "pte",
)
PRECISION = {f: "fp32" for f in FORMATS} | {"tflite-fp16": "fp16", "tflite-int8": "int8"}

ARTIFACTS = Path("artifacts")
CHECKPOINTS = ARTIFACTS / "checkpoints"
MODEL_REPOSITORY = ARTIFACTS / "model_repository"
EDGE = ARTIFACTS / "edge"  # variants Triton cannot load (ExecuTorch), same layout
WEB = ARTIFACTS / "web"  # the static in-browser site
REPORTS = ARTIFACTS / "reports"


def variant_name(trainer: str, fmt: str) -> str:
    """`<trainer>.<format>`, e.g. `torch.tflite-int8`: folder, registry key and test id."""
    return f"{trainer}.{fmt}"


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


@dataclass
class TrainConfig:
    """Settings shared by all three trainers (same split, seed, optimiser, schedule)."""

    trainer: str = "torch"
    data: str = "digits"  # "digits" | "synthetic" | a folder path
    image_size: int = 0  # folder and synthetic data; 0: from the data (digits are 8x8)
    channels: int = 0  # folder and synthetic data; 0: from the data (digits are grey)
    augment: str = "auto"  # none | flip | crop-flip; auto: crop-flip for folders only
    synthetic_classes: int = 10
    synthetic_samples: int = 2000
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.0  # Adam's peak, cosine-decayed to 0 per step; 0: from the data (data.resolve)
    warmup_epochs: int = -1  # linear warm-up to the peak first; -1: from the data
    bn_batches: int = -1  # BatchNorm statistics recomputed over N batches per epoch; -1: data
    adam_eps: float = 1e-7  # Keras' default; torch's is 1e-8, so set both
    dropout: float = CNNSpec.dropout  # 0 switches off the one randomness not shared
    init: str = "torch"  # INIT_SOURCES: who draws the one set of initial weights
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bf16 compute, float32 weights and logits (autocast / mixed_bfloat16)
    channels_last: bool = False  # torch's memory format; Keras is NHWC already (refused there)
    compile: bool = False  # the model compiled: torch.compile (torch), XLA (Keras)
    fused_adam: bool = False  # torch's fused Adam kernel (one launch per step); Keras refuses
    resume: bool = False
    stop_after: int = 0  # >0: stop once this many epochs are done (resume later)
    out: Path = CHECKPOINTS
    max_steps: int = 0  # >0 stops each epoch early: the quick mode tests use
    quiet: bool = False
    skip_trained: bool = False  # leave trainers whose run already finished alone
    describe: bool = False  # print the CNN the data gives (layers, weights, multiply-adds), exit
    replicas: int = 1  # Keras: devices of this host in sync (MirroredStrategy)

    def last_epoch(self) -> int:
        """Epochs this run trains up to: all of them, or --stop-after for a split job."""
        return min(self.epochs, self.stop_after) if self.stop_after else self.epochs

    def run_dir(self) -> Path:
        return Path(self.out) / self.trainer


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON via a temp file + rename so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
