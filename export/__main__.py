"""python -m export: every trained model to every deployment format, in Triton's layout.

python -m export                                  # 3 trainers x 9 formats = 27 variants
python -m export --trainers torch --formats onnx tflite-int8
python -m export --checkpoints /tmp/ck --out /tmp/repo
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# TensorFlow reads this once, at import (imported lazily by the TF exporters).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export import matrix, repository
from train import data
from train.checkpoint import CheckpointError
from train.config import CHECKPOINTS, EDGE, FORMATS, MODEL_REPOSITORY, TRAINERS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--trainers",
        nargs="+",
        choices=TRAINERS,
        default=list(TRAINERS),
        metavar="TRAINER",
        help=f"trainers whose checkpoints to export: {', '.join(TRAINERS)} (default: all)",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(FORMATS),
        metavar="FORMAT",
        help=f"formats to write: {', '.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=CHECKPOINTS,
        help=f"checkpoint root, one <trainer>/ folder each (default: {CHECKPOINTS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=MODEL_REPOSITORY,
        help=f"model repository root, one <trainer>.<format>/ folder each "
        f"(default: {MODEL_REPOSITORY})",
    )
    parser.add_argument(
        "--edge",
        type=Path,
        default=None,
        help=f"root for the formats Triton cannot load ({', '.join(repository.EDGE_FORMATS)}), "
        f"same layout (default: beside --out, i.e. {EDGE})",
    )
    args = parser.parse_args(argv)
    # Canonical order, no repeats: the same request always writes in the same order.
    args.trainers = [t for t in TRAINERS if t in args.trainers]
    args.formats = [f for f in FORMATS if f in args.formats]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    try:
        results = matrix.export_all(
            args.trainers, args.formats, args.checkpoints, args.out, args.edge
        )
    except (CheckpointError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(matrix.summary(results, time.perf_counter() - started))
    edge = repository.edge_beside(args.out) if args.edge is None else args.edge
    to_edge = any(f in repository.EDGE_FORMATS for f in args.formats)
    print(f"-> {args.out}" + (f" and {edge}" if to_edge else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
