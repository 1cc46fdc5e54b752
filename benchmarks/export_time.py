"""The export section: seconds per format and in total, exporting the trained checkpoints
into a scratch repository (the real one is left alone).

    python -m benchmarks.export_time --out FILE [--trainers torch] [--formats onnx tflite]

Run by the bench in a process of its own, so that the exporters start as `make export`
starts them (no runtime of the other sections loaded, default threads).
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
from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS
from contract.paths import CHECKPOINTS
from export import matrix

QUICK_FORMATS = ("torchscript", "onnx", "tflite")


def export_times(trainers: list[str], formats: list[str], checkpoints: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        started = time.perf_counter()
        results = matrix.export_all(trainers, formats, checkpoints, Path(tmp) / "repository")
        total = time.perf_counter() - started
    per_format: dict[str, dict] = {}
    for r in results:
        fmt = r.name.split(".", 1)[1]
        row = per_format.setdefault(fmt, {"seconds": 0.0, "variants": 0, "bytes": 0})
        row["seconds"] = round(row["seconds"] + r.seconds, 2)
        row["variants"] += 1
        row["bytes"] += r.size
    return {
        "trainers": trainers,
        "formats": per_format,
        "variants": [{"variant": r.name, "seconds": round(r.seconds, 2)} for r in results],
        "total_seconds": round(total, 1),
    }


def section(quick: bool, checkpoints: Path = CHECKPOINTS) -> dict:
    """The export timed in a subprocess; quick: the torch checkpoint, three formats."""
    args = ["--checkpoints", str(checkpoints)]
    if quick:
        args += ["--trainers", "torch", "--formats", *QUICK_FORMATS]
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        out = Path(tmp) / "export.json"
        cmd = [sys.executable, "-m", "benchmarks.export_time", "--out", str(out), *args]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"skipped": f"export failed: {done.stderr[-1500:]}"}
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--formats", nargs="+", choices=FORMAT_NAMES, default=list(FORMAT_NAMES))
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="checkpoint root")
    args = parser.parse_args(argv)
    trainers = [t for t in TRAINERS if t in args.trainers]
    formats = [f for f in FORMAT_NAMES if f in args.formats]
    write_json_atomic(args.out, export_times(trainers, formats, args.checkpoints))
    return 0


if __name__ == "__main__":
    sys.exit(main())
