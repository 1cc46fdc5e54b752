"""The data section: a folder of JPEG photos through train/prepare.py and into the trainers.

- prepare: images/s decoding the folder into its cache (64 px RGB) with 1 worker and with one
  per core, beside the ceiling of one core: a plain loop of PIL open + the same conversion
  (train/pixels.py), nothing else;
- trainers: each trainer's images/s at 64 px reading its batches from the prepared file,
  against the same trainer on the same images held in memory as float32 arrays (goal >=
  0.95: the data path is never the bottleneck); augmentation off in both, then the cost of
  crop-flip on top; the best of two rounds, in alternating order;
- memory: the torch trainer's peak RSS over one epoch of a folder N times larger, which
  stays where it was when batches stream from the file.

The folders are made here (benchmarks/shapes.py: 256 px JPEG files), in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stages import fmt

SIZE = 64  # the folders' default training size
SOURCE_SIZE = 256  # px of the JPEG files: decoding them costs what a photo's thumbnail does


def settings(quick: bool) -> dict:
    """Quick (CI): the torch trainer only, a few steps, small folders, one round."""
    if quick:
        return {"per_class": 100, "memory": (50, 200), "steps": 6, "epochs": 2, "trainers": 1,
                "rounds": 1}  # fmt: skip
    return {"per_class": 750, "memory": (750, 7500), "steps": 0, "epochs": 2, "trainers": 3,
            "rounds": 2}  # fmt: skip


def best_of(folder: Path, trainer: str, cfg: dict) -> dict[str, float]:
    """{variant: images/s}, the best of cfg["rounds"] rounds, each variant once a round in
    turn (the order reversed every other round): a trainer's pace on a shared machine
    drifts by more than what is measured, and best-of-rounds is what the server section
    does too."""
    variants = {"from_cache": (False, "none"), "in_memory": (True, "none"),
                "crop_flip": (False, "crop-flip")}  # fmt: skip
    best: dict[str, float] = {}
    for round_ in range(cfg["rounds"]):
        for name in list(variants)[:: -1 if round_ % 2 else 1]:
            figure = child(folder, trainer, *variants[name], cfg)["images_per_s"]
            best[name] = max(best.get(name, 0.0), figure)
    return best


def decode_ceiling(folder: Path, limit: int = 400) -> float:
    """Images/s of one core doing nothing but open + convert (train/pixels.py)."""
    from PIL import Image

    from contract import pixels

    files = sorted(folder.rglob("*.jpg"))[:limit]
    started = time.perf_counter()
    for path in files:
        with Image.open(path) as im:
            pixels.to_pixels(im, SIZE, SIZE, 3)
    return len(files) / (time.perf_counter() - started)


def prepare_speed(folder: Path, workers: int, cache: Path) -> float:
    from contract import folders

    started = time.perf_counter()
    prepared = folders.prepare(folder, SIZE, 3, workers=workers, quiet=True, cache=cache)
    seconds = time.perf_counter() - started
    rows = len(json.loads((prepared / "meta.json").read_text())["rows"])
    return rows / seconds


def child(folder: Path, trainer: str, in_memory: bool, augment: str, cfg: dict) -> dict:
    """One trainer run in a process of its own: images/s of its last epoch, peak RSS."""
    cmd = [sys.executable, "-m", "benchmarks.data_path", "--child", str(folder), trainer]
    cmd += ["--augment", augment, "--settings", json.dumps(cfg)]
    cmd += ["--in-memory"] if in_memory else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(folder: Path, trainer: str, in_memory: bool, augment: str, cfg: dict) -> dict:
    import numpy as np

    from contract import datasets
    from train.__main__ import run
    from train.config import TrainConfig

    with tempfile.TemporaryDirectory(prefix="bench-data-") as out:
        config = TrainConfig(
            data=str(folder), epochs=cfg["epochs"], max_steps=cfg["steps"], augment=augment,
            out=Path(out), quiet=True,
        )  # fmt: skip
        splits = datasets.load(str(folder), SIZE, 3, config.seed)
        if in_memory:  # the same images, decoded, as float32 arrays in this process
            for split in (splits.train, splits.val, splits.test):
                split.images = np.asarray(split.images, np.float32)
        metrics = run(config, trainer, splits)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_s": metrics["epochs"][-1]["images_per_s"], "peak_rss_mb": peak}


def section(quick: bool) -> dict:
    from benchmarks import shapes
    from contract import datasets, folders
    from contract.names import TRAINERS

    cfg = settings(quick)
    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bench-folder-") as tmp:
        tmp = Path(tmp)
        folder = shapes.write_folder(tmp / "photos", cfg["per_class"], SOURCE_SIZE)
        ceiling = decode_ceiling(folder)
        prepared = {w: prepare_speed(folder, w, tmp / f"cache-{w}") for w in sorted({1, cores})}
        cached = folders.prepare(folder, SIZE, 3, quiet=True, cache=tmp / f"cache-{cores}")
        rows = []
        for trainer in TRAINERS[: cfg["trainers"]]:
            best = best_of(cached, trainer, cfg)
            ratio = round(best["from_cache"] / best["in_memory"], 3)
            rows.append({"trainer": trainer, **{k: round(v, 1) for k, v in best.items()},
                         "ratio": ratio})  # fmt: skip
        memory = []
        for per_class in cfg["memory"]:
            big = shapes.write_folder(tmp / f"memory-{per_class}", per_class, 128, seed=1)
            made = folders.prepare(big, SIZE, 3, quiet=True, cache=tmp / "cache-memory")
            one = child(made, "torch", False, "crop-flip", {"epochs": 1, "steps": 0})
            n = len(datasets.open_prepared(made).labels)
            memory.append({"images": n, "peak_rss_mb": round(one["peak_rss_mb"], 1)})
    return {
        "image": [SIZE, SIZE, 3],
        "source": f"{SOURCE_SIZE} px JPEG files (benchmarks/shapes.py)",
        "cores": cores,
        "decode_ceiling_per_core": round(ceiling, 1),
        "prepare_images_per_s": {str(w): round(v, 1) for w, v in prepared.items()},
        "prepare_over_ceiling": {str(w): round(v / ceiling, 2) for w, v in prepared.items()},
        "rounds": cfg["rounds"],
        "trainers": rows,
        "memory": memory,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_path")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "TRAINER"), required=True)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--augment", default="none")
    parser.add_argument("--settings", type=json.loads, required=True)
    args = parser.parse_args(argv)
    folder, trainer = args.child
    print(json.dumps(run_child(Path(folder), trainer, args.in_memory, args.augment, args.settings)))
    return 0


def markdown(s: dict) -> list[str]:
    """The section in bench.md (benchmarks/report.py)."""
    size = "x".join(map(str, s["image"]))
    out = [
        f"## Data ({s['source']} -> {size}, {s['cores']} cores)",
        "",
        "Decode ceiling, one core (PIL open + contract/pixels.py): "
        f"{fmt(s['decode_ceiling_per_core'])} images/s.",
        "",
        "| prepare workers | images/s | / ceiling |",
        "|---|---|---|",
    ]
    for workers, figure in s["prepare_images_per_s"].items():
        out.append(f"| {workers} | {fmt(figure)} | {fmt(s['prepare_over_ceiling'][workers], 2)} |")
    out += [
        "",
        "Trainers at the data's size, images/s of the last epoch (best of "
        f"{s.get('rounds', 1)} round(s)), no augmentation unless said (goal: from the cache / "
        "in memory >= 0.95):",
        "",
        "| trainer | from the cache | in memory | cache / memory | crop-flip, from the cache |",
        "|---|---|---|---|---|",
    ]
    for r in s["trainers"]:
        out.append(
            f"| {r['trainer']} | {fmt(r['from_cache'])} | {fmt(r['in_memory'])} | "
            f"{fmt(r['ratio'], 3)} | {fmt(r['crop_flip'])} |"
        )
    out += ["", "| images in the folder | torch trainer's peak RSS, MiB |", "|---|---|"]
    out += [f"| {m['images']} | {fmt(m['peak_rss_mb'])} |" for m in s["memory"]]
    return [*out, ""]


if __name__ == "__main__":
    sys.exit(main())
