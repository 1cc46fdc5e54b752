"""Training settings shared by all three trainers: `TrainConfig`, and who draws the
initial weights. What every stage shares (names, paths, formats, the CNN's spec) is in
`contract`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract.paths import CHECKPOINTS
from contract.spec import CNNSpec

# Who draws the initial weights: one framework for all three trainers (copied exactly into
# the other by contract/transfer.py), or "own": each framework its own default init.
INIT_SOURCES = ("torch", "keras", "own")


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
