"""What every trainer writes beside its weights: spec.json, labels.txt, metrics.json, curves.png.

The torch and Keras loops call the same functions in the same order, so their logs
and files line up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from contract import datasets
from contract.checkpoint import SPEC_FILE
from contract.files import atomic_path, write_json_atomic, write_text_atomic
from contract.names import LABELS_FILE
from contract.spec import CNNSpec
from train.config import TrainConfig

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"


def start(
    cfg: TrainConfig, spec: CNNSpec, splits: datasets.Splits, init: dict
) -> tuple[Path, list[dict]]:
    """Create the run folder (or reopen it to resume); return it and the epochs done so far.
    init: train.initial's record of the initial weights (source, drawn_by, sha256)."""
    labels = splits.train.class_names
    prepared = splits.train.prepared  # cfg is resolved (data.resolve): its values are concrete
    run_dir = cfg.run_dir()
    history: list[dict] = []
    if cfg.resume:
        if not (run_dir / METRICS_FILE).exists():
            raise SystemExit(
                f"--resume: no checkpoint in {run_dir} to resume from; drop --resume to start"
            )
        saved = json.loads((run_dir / SPEC_FILE).read_text())
        if CNNSpec.from_dict(saved["spec"]) != spec:
            raise SystemExit(
                f"cannot resume {run_dir}: it was trained with a different spec or data; "
                "drop --resume to start again"
            )
        if saved.get("init") != init:
            raise SystemExit(
                f"cannot resume {run_dir}: it started from other initial weights "
                f"({saved.get('init')}, this run's: {init}); drop --resume to start again"
            )
        history = json.loads((run_dir / METRICS_FILE).read_text())["epochs"]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        run_dir / SPEC_FILE,
        {
            "trainer": cfg.trainer,
            "data": cfg.data,
            # a folder's prepared images, the exact files it was trained on (contract/folders.py)
            "prepared": str(prepared) if prepared else None,
            "augment": cfg.augment,
            "lr": cfg.lr,
            "warmup_epochs": cfg.warmup_epochs,
            "bn_batches": cfg.bn_batches,
            "seed": cfg.seed,
            # what datasets.load needs to rebuild the exact split (synthetic data only)
            "synthetic": {"n": cfg.synthetic_samples, "num_classes": cfg.synthetic_classes},
            "spec": spec.to_dict(),
            "cost": spec.cost(),  # weights, multiply-adds per image
            "init": init,
        },
    )
    write_text_atomic(run_dir / LABELS_FILE, "\n".join(labels) + "\n")
    return run_dir, history


def finished(run_dir: Path) -> bool:
    """A run that reached its end: the curves are drawn last, so a killed run has none."""
    return (Path(run_dir) / CURVES_FILE).is_file()


def epoch_line(trainer: str, row: dict) -> str:
    return (
        f"[{trainer}] epoch {row['epoch']:3d}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  "
        f"{row['images_per_s']:.0f} img/s"
    )


def end_epoch(
    cfg: TrainConfig,
    history: list[dict],
    epoch: int,
    loss: float,
    accuracy: float,
    val: tuple[float, float],
    n_images: int,
    started: float,
) -> dict:
    seconds = time.perf_counter() - started
    row = {
        "epoch": epoch + 1,
        "loss": float(loss),
        "accuracy": float(accuracy),
        "val_loss": float(val[0]),
        "val_accuracy": float(val[1]),
        "seconds": round(seconds, 3),
        "images_per_s": n_images / max(seconds, 1e-9),
    }
    history.append(row)
    if not cfg.quiet:
        print(epoch_line(cfg.trainer, row), flush=True)
    write_metrics(cfg, history, extra={})
    return row


def write_metrics(cfg: TrainConfig, history: list[dict], extra: dict) -> dict:
    # The init as start() recorded it, so that metrics.json stands on its own.
    init = json.loads((cfg.run_dir() / SPEC_FILE).read_text())["init"]
    metrics = {"trainer": cfg.trainer, "init": init, "epochs": history, **extra}
    write_json_atomic(cfg.run_dir() / METRICS_FILE, metrics)
    return metrics


def finish(cfg: TrainConfig, history: list[dict], test: tuple[float, float], device: str) -> dict:
    """Write the final metrics (with test_accuracy in 0..1) and the curves plot."""
    metrics = write_metrics(
        cfg,
        history,
        {"test_loss": float(test[0]), "test_accuracy": float(test[1]), "device": device},
    )
    plot(history, cfg.run_dir() / CURVES_FILE, title=cfg.trainer)
    if not cfg.quiet:
        print(f"[{cfg.trainer}] test_accuracy {test[1]:.4f}  -> {cfg.run_dir()}", flush=True)
    return metrics


def plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r["loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_acc.plot(epochs, [r["accuracy"] for r in history], label="train")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in history], label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
