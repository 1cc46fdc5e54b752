"""python -m benchmarks.gpu_check (make gpu-check): everything the project does on a GPU, in one
run of a few minutes on a machine with one NVIDIA GPU, written to one JSON file.

    make gpu-check            # make setup GPU=1 first (TensorFlow's CUDA wheels), then this

- a folder of photos (benchmarks/shapes.py, 2,000 JPEG files) prepared at 64 px;
- each trainer for one epoch on it with --device cuda: fp32, --bf16 and --compile (a run
  that cannot, a Keras trainer where TensorFlow sees no GPU say, is a row with its error);
- the bench's CUDA section (benchmarks/trainers.py: the torch trainer beside its ceiling).

Writes artifacts/reports/gpu_check.json (`--out`); exits 1 when any run failed, 2 without a
GPU. Nothing else in the project needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.files import write_json_atomic
from contract.names import TRAINERS
from contract.paths import REPORTS

FLAGS = {"fp32": (), "bf16": ("--bf16",), "compile": ("--compile",)}
RUN_TIMEOUT_S = 150  # one trainer, one epoch, its imports and compilation included


def train_once(folder: Path, out: Path, trainer: str, flags: tuple[str, ...]) -> dict:
    cmd = [sys.executable, "-m", "train", "--trainer", trainer, "--data", str(folder)]
    cmd += ["--epochs", "1", "--device", "cuda", "--out", str(out), "--quiet", *flags]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"over {RUN_TIMEOUT_S} s"}
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-600:], "seconds": seconds}
    metrics = json.loads((out / trainer / "metrics.json").read_text())
    return {
        "images_per_s": round(metrics["epochs"][-1]["images_per_s"], 1),
        "test_accuracy": metrics["test_accuracy"],
        "device": metrics.get("device"),
        "seconds": seconds,
    }


def check(out_file: Path) -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: torch sees none here (gpu-check needs one)", file=sys.stderr)
        return 2
    from benchmarks import shapes, trainers
    from contract import folders

    started = time.perf_counter()
    report: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "runs": []}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        folder = shapes.write_folder(tmp / "photos", 500, 128)
        t0 = time.perf_counter()
        prepared = folders.prepare(folder, 64, 3, quiet=True, cache=tmp / "cache")
        report["prepare_seconds"] = round(time.perf_counter() - t0, 1)
        for trainer in TRAINERS:
            for name, flags in FLAGS.items():
                row = train_once(prepared, tmp / f"{trainer}-{name}", trainer, flags)
                report["runs"].append({"trainer": trainer, "flags": name, **row})
                print(f"[gpu-check] {trainer} {name}: {row}", flush=True)
    report["cuda_section"] = trainers.cuda_section(quick=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_file, report)
    print(f"-> {out_file}; {report['seconds']} s")
    return 1 if any("error" in r for r in report["runs"]) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=REPORTS / "gpu_check.json", help="the JSON file"
    )
    return check(parser.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
