"""python -m benchmarks.photos: what the defaults give on a folder of photos.

    python -m benchmarks.photos                      # make the folder, train, report (~10 min)
    python -m benchmarks.photos --checkpoints DIR    # report a run made already, the same way

The folder: benchmarks/shapes.py's 3,000 JPEG files (a filled circle, square, triangle or a
thin ring per 128 px image, 750 each, random colour, size and place, on a noisy background).
The run: `python -m train --data DIR`, no other flag, all three trainers. The report,
artifacts/reports/photos.json: each trainer's test accuracy, validation accuracy after each
epoch, images/s and seconds, with the settings the data chose (spec.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from contract.files import write_json_atomic
from contract.names import TRAINERS
from contract.paths import REPORTS

PER_CLASS, SOURCE_SIZE = 750, 128


def collect(checkpoints: Path) -> dict:
    trainers = {}
    for trainer in TRAINERS:
        metrics = json.loads((checkpoints / trainer / "metrics.json").read_text())
        recorded = json.loads((checkpoints / trainer / "spec.json").read_text())
        trainers[trainer] = {
            "test_accuracy": metrics["test_accuracy"],
            "val_accuracy": [round(e["val_accuracy"], 4) for e in metrics["epochs"]],
            "images_per_s": round(metrics["epochs"][-1]["images_per_s"], 1),
            "seconds": round(sum(e["seconds"] for e in metrics["epochs"]), 1),
        }
    settings = {k: recorded[k] for k in ("augment", "lr", "warmup_epochs", "bn_batches")}
    spec = recorded["spec"]
    return {
        "folder": f"{PER_CLASS * 4} JPEG files, {SOURCE_SIZE} px, 4 classes (benchmarks/shapes.py)",
        "command": "python -m train --data DIR",
        "image": [spec["image_size"], spec["image_size"], spec["channels"]],
        "cnn": {"widths": spec["widths"], "head": spec["head"], **recorded["cost"]},
        "settings": settings,
        "trainers": trainers,
    }


def train(folder: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "train", "--data", str(folder), "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import shapes

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.photos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoints", type=Path, help="report this run instead of training")
    parser.add_argument("--out", type=Path, default=REPORTS / "photos.json", help="the report")
    args = parser.parse_args(argv)
    if args.checkpoints:
        report = collect(args.checkpoints)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
            folder = shapes.write_folder(Path(tmp) / "shapes", PER_CLASS, SOURCE_SIZE)
            train(folder, Path(tmp) / "checkpoints")
            report = collect(Path(tmp) / "checkpoints")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    for name, row in report["trainers"].items():
        print(f"{name:<11} test {row['test_accuracy']:.4f}  val {row['val_accuracy']}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
