"""python -m train.lockstep: the three trainers side by side, step by step.

torch, keras-fit and keras-tape train on digits from the one init with dropout off (the
one randomness the two frameworks cannot share). After every step (--every N: every Nth,
and the last) each pair is compared: the max abs difference of their weights (canonical
torch layout, BatchNorm statistics included), of their logits on the test split, and
their top-1 agreement there. Writes <reports>/lockstep.json, lockstep.md, lockstep.png.

The reference line is torch against itself run with another thread count: the same code,
only the order of float32 sums differs. It is how far float32 rounding alone carries a
trajectory, the yardstick for the torch vs Keras pairs.

python -m train.lockstep              # 2 epochs, every step
python -m train.lockstep --quick      # CI: 8 steps
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

# TensorFlow reads this once, at import (imported by the Keras trainers).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from contract import datasets
from contract.names import TRAINER_FRAMEWORK, TRAINERS
from contract.paths import REPORTS
from contract.spec import CNNSpec
from train import data, initial, lockstep_report
from train.__main__ import HELP, run
from train.config import INIT_SOURCES, TrainConfig

PAIRS = list(itertools.combinations(TRAINERS, 2))
QUICK = {"epochs": 1, "max_steps": 8}


class Trace:
    """A trainer's on_step: its weights and test logits at the steps asked for."""

    def __init__(self, trainer: str, spec: CNNSpec, images: np.ndarray, at: set[int]) -> None:
        self.framework = TRAINER_FRAMEWORK[trainer]
        self.spec, self.images, self.at = spec, images, at
        self.calls = 0
        self.weights: dict[int, np.ndarray] = {}
        self.logits: dict[int, np.ndarray] = {}

    def __call__(self, model) -> None:
        step, self.calls = self.calls, self.calls + 1
        if step in self.at:
            snap = torch_snapshot if self.framework == "torch" else keras_snapshot
            self.weights[step], self.logits[step] = snap(model, self.spec, self.images)


def torch_snapshot(net, spec: CNNSpec, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights, logits); spec unused, for one signature with keras_snapshot."""
    import torch

    was_training = net.training
    net.eval()  # eval logits use the running statistics; the loop resumes in train mode
    with torch.no_grad():
        device = next(net.parameters()).device
        logits = net(torch.from_numpy(images).to(device)).cpu().numpy()
    net.train(was_training)
    return initial.flat_weights(net), logits


def keras_snapshot(model, spec: CNNSpec, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights in torch's layout, through the exact transfer; logits)."""
    return initial.keras_flat_weights(model, spec), np.asarray(model.predict_on_batch(images))


def config(args: argparse.Namespace, out: Path) -> TrainConfig:
    """Every setting but these is TrainConfig's default, as `make train` uses it. The CPU,
    so torch and TensorFlow round on the same hardware."""
    return TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        dropout=args.dropout,
        init=args.init,
        seed=args.seed,
        device="cpu",
        out=out,
        quiet=True,
    )


def steps_run(cfg: TrainConfig, n_train: int) -> int:
    per_epoch = -(-n_train // cfg.batch_size)
    return cfg.epochs * (min(cfg.max_steps, per_epoch) if cfg.max_steps else per_epoch)


@contextlib.contextmanager
def other_thread_count():
    """torch on 1 thread (2 where it had 1), restored afterwards; yields the count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1 if before > 1 else 2)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def train_all(args: argparse.Namespace, reference: bool = True) -> dict:
    """Train the three in turn, each traced; compare every pair at every traced step.
    reference: also torch again on another thread count (rounding only)."""
    splits = datasets.load("digits", 8, 1, args.seed)  # TrainConfig's default data
    train = splits.train
    spec = CNNSpec.for_data(
        train.image_size, train.channels, len(train.class_names), dropout=args.dropout
    )
    with tempfile.TemporaryDirectory(prefix="lockstep-") as out:
        total = steps_run(config(args, Path(out)), len(train.labels))
        at = set(range(0, total + 1, max(args.every, 1))) | {total}
        traces, metrics = {}, {}
        for trainer in TRAINERS:
            traces[trainer] = Trace(trainer, spec, splits.test.images, at)
            metrics[trainer] = run(config(args, Path(out)), trainer, splits, traces[trainer])
        result = summarise(config(args, Path(out)), sorted(at), traces, metrics, splits)
        if reference:
            result["reference"] = rounding_reference(args, Path(out), splits, traces["torch"])
    return result


def rounding_reference(
    args: argparse.Namespace, out: Path, splits: datasets.Splits, torch_trace: Trace
) -> dict:
    """torch against itself on another thread count: float32 rounding alone."""
    trace = Trace("torch", torch_trace.spec, torch_trace.images, torch_trace.at)
    with other_thread_count() as threads:
        run(config(args, out), "torch", splits, trace)
    name = f"torch vs torch on {threads} thread{'s' if threads > 1 else ''}"
    return {"name": name, **compare(torch_trace, trace, sorted(trace.at))}


def compare(a: Trace, b: Trace, steps: list[int]) -> dict[str, list[float]]:
    return {
        "weights": [float(np.abs(a.weights[s] - b.weights[s]).max()) for s in steps],
        "logits": [float(np.abs(a.logits[s] - b.logits[s]).max()) for s in steps],
        "top1": [float((a.logits[s].argmax(1) == b.logits[s].argmax(1)).mean()) for s in steps],
    }


def summarise(
    cfg: TrainConfig,
    steps: list[int],
    traces: dict[str, Trace],
    metrics: dict[str, dict],
    splits: datasets.Splits,
) -> dict:
    import keras
    import tensorflow as tf
    import torch

    cfg = data.resolve(cfg, splits.train)  # the learning rate the trainers took
    return {
        "settings": {
            "data": cfg.data,
            "epochs": cfg.epochs,
            "max_steps": cfg.max_steps,
            "steps_per_epoch": steps_run(cfg, len(splits.train.labels)) // cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "adam_eps": cfg.adam_eps,
            "dropout": cfg.dropout,
            "init": cfg.init,
            "seed": cfg.seed,
            "device": cfg.device,
            "test_images": len(splits.test.labels),
        },
        "init": {t: m["init"] for t, m in metrics.items()},
        "test_accuracy": {t: m["test_accuracy"] for t, m in metrics.items()},
        "steps": steps,
        "pairs": {f"{a} vs {b}": compare(traces[a], traces[b], steps) for a, b in PAIRS},
        "versions": {
            "torch": torch.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.lockstep", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # The training flags mean what they mean to `python -m train`; lockstep's defaults.
    flags = {"epochs": 2, "max_steps": 0, "dropout": 0.0, "init": "torch", "seed": 0}
    helps = {**HELP, "epochs": "epochs to train", "max_steps": "steps per epoch, 0 = all"}
    for name, default in flags.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            choices=INIT_SOURCES if name == "init" else None,
            help=f"{helps[name]} (default: {default})",
        )
    parser.add_argument("--every", type=int, default=1, help="compare every N steps (default: 1)")
    parser.add_argument("--quick", action="store_true", help=f"for CI: {QUICK['max_steps']} steps")
    parser.add_argument(
        "--reports", type=Path, default=REPORTS, help=f"report folder (default: {REPORTS})"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.max_steps = QUICK["epochs"], QUICK["max_steps"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = train_all(args)
    paths = lockstep_report.write(result, args.reports)
    print(lockstep_report.table(result))
    print("-> " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
