"""python -m train: train the one CNN with one or all trainers.

python -m train                         # all three on the embedded digits
python -m train --trainer torch --device cuda --bf16 --channels-last
python -m train --trainer keras-fit --device cuda --bf16 --compile
python -m train --data path/to/folder --image-size 32 --channels 3
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from contract import datasets
from contract.folders import DEFAULT_SIZE
from contract.names import TRAINERS
from contract.spec import CNNSpec
from train import augment, cluster, data, record
from train.config import INIT_SOURCES, TrainConfig

HELP = {
    "trainer": "which trainer to run, or all",
    "data": "digits (embedded), synthetic, or a folder with one sub-folder per class",
    "image_size": "side in pixels that folder/synthetic images are resized to; 0: from the "
    "data (folders: 64, or their median side if smaller; synthetic: 8)",
    "channels": "1 (grey) or 3 (RGB) for folder/synthetic data; 0: from the data (folders: RGB "
    "when any image holds colour; synthetic: 1)",
    "augment": "augmentation, the same pixels for every trainer: none, flip, crop-flip (random "
    "resized crop and flip), or auto (crop-flip for a folder, none for digits and synthetic)",
    "synthetic_classes": "number of classes of synthetic data",
    "synthetic_samples": "number of synthetic images",
    "epochs": "epochs to train (with --resume: the total, counting those done)",
    "batch_size": "images per step",
    "lr": "peak Adam learning rate, cosine-decayed per step to 0; 0: from the data (3e-3 for "
    "digits and synthetic data, 1e-3 for a folder)",
    "warmup_epochs": "epochs of linear warm-up to the peak rate; -1: from the data (1 for a "
    "folder, 0 otherwise)",
    "bn_batches": "after each epoch, recompute BatchNorm's statistics as the average over this "
    "many training batches (exact, not a moving average that lags the weights); -1: from the "
    "data (20 for a folder, 0 otherwise)",
    "adam_eps": "Adam epsilon (set on both frameworks)",
    "dropout": "dropout rate of both dropout layers; 0 switches dropout off, the one source "
    "of randomness the two frameworks cannot share",
    "init": "who draws the initial weights: torch or keras (once, copied exactly into the "
    "other framework, so every trainer starts from the same weights), or own (each its own)",
    "seed": "seed for the split, the init, dropout and the batch order",
    "device": "auto (GPU when there is one), cpu or cuda",
    "bf16": "bfloat16 mixed precision, float32 weights and logits: torch's bf16 autocast, "
    "Keras' mixed_bfloat16 policy (CPU or GPU)",
    "channels_last": "torch only: the channels_last memory format (Keras is NHWC already)",
    "compile": "compile the model: torch.compile (torch; needs a C++ compiler on the CPU), "
    "XLA jit_compile (Keras)",
    "fused_adam": "torch only: Adam's fused kernel, one launch for every parameter's update "
    "(Keras has none; --compile fuses its whole step)",
    "resume": "continue from the checkpoint's last saved epoch",
    "stop_after": "stop once this many epochs are done, to --resume later (0 = run to --epochs)",
    "out": "checkpoint root; each trainer writes <out>/<trainer>/",
    "max_steps": "quick mode: at most this many steps per epoch (0 = all)",
    "quiet": "no progress bars or epoch lines",
    "skip_trained": "skip trainers whose run in --out already finished (make export uses it)",
    "describe": "print the CNN this data gives (its stages, head, weights and multiply-adds "
    "per image) and exit without training",
    "replicas": "Keras trainers: train on this many devices of this host in sync "
    "(tf.distribute.MirroredStrategy; N logical devices on a CPU); for torch use torchrun",
}


CHOICES = {
    "trainer": [*TRAINERS, "all"],
    "augment": ["auto", *augment.POLICIES],
    "device": ["auto", "cpu", "cuda"],
    "init": list(INIT_SOURCES),
}


def parse(argv: list[str] | None = None) -> tuple[TrainConfig, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    defaults = TrainConfig(trainer="all")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP[f.name])
            continue
        kind = Path if f.name == "out" else str if f.name == "data" else type(default)
        parser.add_argument(
            flag,
            type=kind,
            default=default,
            choices=CHOICES.get(f.name),
            help=f"{HELP[f.name]} (default: {default})",
        )
    args = vars(parser.parse_args(argv))
    trainers = list(TRAINERS) if args["trainer"] == "all" else [args["trainer"]]
    return TrainConfig(**args), trainers


# The registry: trainer name -> the module whose `train(cfg, splits, spec, on_step=None)`
# runs it; on_step(model), when given, is called before the first step and after each one.
# Imported only when chosen: the torch trainer never pays for TensorFlow, nor the reverse.
TRAINER_MODULES = {
    "torch": "train.torch_loop",
    "keras-fit": "train.keras_fit",
    "keras-tape": "train.keras_tape",
}
assert tuple(TRAINER_MODULES) == TRAINERS, "one module per trainer, in TRAINERS order"
# Flags some trainers cannot honour, and why: asking one of them is an error, never ignored.
# What a flag needs of the machine (a bf16 GPU, a C++ compiler) each trainer checks itself.
REFUSED = {
    "channels_last": (
        ("keras-fit", "keras-tape"),
        "a PyTorch memory format; Keras keeps images channels-last (NHWC) already",
    ),
    "fused_adam": (
        ("keras-fit", "keras-tape"),
        "a PyTorch optimizer kernel; Keras' Adam has none (--compile XLA-fuses its whole step)",
    ),
}


def run(
    cfg: TrainConfig, trainer: str, splits: datasets.Splits, on_step: Callable | None = None
) -> dict:
    """Train one trainer; an unknown name is an error, never a silent default."""
    if trainer not in TRAINER_MODULES:
        raise ValueError(f"unknown trainer {trainer!r}; valid trainers: {', '.join(TRAINERS)}")
    cfg.trainer = trainer
    spec = spec_for(cfg, splits)
    module = importlib.import_module(TRAINER_MODULES[trainer])
    # In a distributed run only the chief writes cfg.out; the others, a temporary folder.
    with cluster.own_output(cfg, cluster.process(trainer)) as mine:
        return module.train(mine, splits, spec, on_step=on_step)


def spec_for(cfg: TrainConfig, splits: datasets.Splits) -> CNNSpec:
    """The CNN the data asks for (CNNSpec.for_data scales it with the image size)."""
    train = splits.train
    return CNNSpec.for_data(
        train.image_size, train.channels, len(train.class_names), dropout=cfg.dropout
    )


def describe(spec: CNNSpec) -> str:
    cost = spec.cost()
    stages = " -> ".join(f"{w}x{spec.convs_per_stage}" for w in spec.widths)
    side = spec.feature_side
    return (
        f"CNN for {spec.image_size}x{spec.image_size}x{spec.channels} images, "
        f"{spec.num_classes} classes:\n"
        f"  stages (conv3x3 width x count, then 2x2 max-pool): {stages}\n"
        f"  head: {spec.head} of the last {side}x{side}x{spec.widths[-1]} map -> "
        f"{spec.flat_features} -> dense {spec.hidden} -> dense {spec.num_classes}\n"
        f"  {cost['weights']:,} weights ({cost['weights'] * 4 / 2**20:.2f} MiB as float32), "
        f"{cost['macs'] / 1e6:,.1f} M multiply-adds per image"
    )


def refused_flags(cfg: TrainConfig, trainers: list[str]) -> str:
    """Why these flags cannot be honoured by these trainers; empty when they can."""
    for flag, (refusing, why) in REFUSED.items():
        cannot = [t for t in trainers if t in refusing]
        if getattr(cfg, flag) and cannot:
            able = [t for t in TRAINERS if t not in refusing]
            return (
                f"--{flag.replace('_', '-')}: {why}, so {', '.join(cannot)} cannot honour it; "
                f"pass --trainer {' or '.join(able)}, or drop the flag"
            )
    return ""


def data_line(cfg: TrainConfig, splits: datasets.Splits) -> str:
    """What the run trains on, and which of it came from the data rather than a flag."""
    train = splits.train
    n = sum(len(s.labels) for s in (splits.train, splits.val, splits.test))
    size = f"{train.image_size}x{train.image_size} px"
    colour = "RGB" if train.channels == 3 else "grey"
    if not cfg.image_size and train.prepared:
        size += (
            f" (for folders: {DEFAULT_SIZE}, or the images' median side if less; --image-size N)"
        )
    if not cfg.channels and train.prepared:
        colour += " (from the images' modes: RGB when any holds colour; --channels 1 or 3)"
    settled = data.resolve(cfg, train)
    where = f", prepared in {train.prepared}" if train.prepared else ""
    return (
        f"data: {cfg.data}: {n} images of {len(train.class_names)} classes{where}\n"
        f"      {size}, {colour}\n"
        f"      augment {settled.augment} (--augment), lr {settled.lr:g} (--lr), "
        f"{settled.warmup_epochs} warm-up epoch(s) (--warmup-epochs)"
    )


def main(argv: list[str] | None = None) -> int:
    cfg, trainers = parse(argv)
    refused = refused_flags(cfg, trainers) or cluster.refused(cfg, trainers)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if cfg.skip_trained:
        trainers = [t for t in trainers if not record.finished(Path(cfg.out) / t)]
        if not trainers:
            print(f"every trainer has a finished run in {cfg.out}; nothing to train")
            return 0
    try:
        splits = datasets.load(
            cfg.data,
            cfg.image_size,
            cfg.channels,
            cfg.seed,
            quiet=cfg.quiet,
            n=cfg.synthetic_samples,
            num_classes=cfg.synthetic_classes,
        )
    except datasets.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cfg.quiet and cluster.process(trainers[0]).chief:
        print(data_line(cfg, splits))
    if cfg.describe:
        print(describe(spec_for(cfg, splits)))
        return 0
    summary = []
    started = time.perf_counter()
    for trainer in trainers:
        t0 = time.perf_counter()
        metrics = run(cfg, trainer, splits)
        summary.append((trainer, metrics["test_accuracy"], time.perf_counter() - t0))
    if not cluster.process(trainers[0]).chief:
        return 0  # one summary per job: the chief's
    print("\ntrainer      test_accuracy   seconds")
    for trainer, acc, seconds in summary:
        print(f"{trainer:<12} {acc:>13.4f} {seconds:>9.1f}")
    print(f"total {time.perf_counter() - started:.1f} s for {len(trainers)} trainer(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
