"""python -m export: every trained model to every deployment format, in Triton's layout.

python -m export                                  # 3 trainers x 11 formats = 33 variants
python -m export --trainers torch --formats onnx tflite-int8
python -m export --checkpoints /tmp/ck --out /tmp/repo
python -m export --keep-versions 5                # each export is version N+1; keep 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# TensorFlow reads this once, at import (imported lazily by the TF exporters).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from contract.checkpoint import CheckpointError
from contract.datasets import DataError
from contract.formats import EDGE_FORMATS, FORMAT_NAMES
from contract.names import TRAINERS
from contract.paths import CHECKPOINTS, EDGE, add_repository_argument
from export import matrix, repository, versions


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
        choices=FORMAT_NAMES,
        default=list(FORMAT_NAMES),
        metavar="FORMAT",
        help=f"formats to write: {', '.join(FORMAT_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=CHECKPOINTS,
        help=f"checkpoint root, one <trainer>/ folder each (default: {CHECKPOINTS})",
    )
    add_repository_argument(
        parser,
        "--out",
        help="model repository to write: one <trainer>.<format>/ folder per variant",
    )
    parser.add_argument(
        "--edge",
        type=Path,
        default=None,
        help=f"root for the formats Triton cannot load ({', '.join(EDGE_FORMATS)}), "
        f"same layout (default: beside --out, i.e. {EDGE})",
    )
    parser.add_argument(
        "--keep-versions",
        type=int,
        default=versions.KEEP,
        metavar="K",
        help="each export publishes a new version of every variant and keeps the newest K, "
        f"the new one included (default: {versions.KEEP})",
    )
    args = parser.parse_args(argv)
    if args.keep_versions < 1:
        parser.error(f"--keep-versions must be 1 or more, got {args.keep_versions}")
    # Canonical order, no repeats: the same request always writes in the same order.
    args.trainers = [t for t in TRAINERS if t in args.trainers]
    args.formats = [f for f in FORMAT_NAMES if f in args.formats]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    try:
        results = matrix.export_all(
            args.trainers, args.formats, args.checkpoints, args.out, args.edge, args.keep_versions
        )
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(matrix.summary(results, time.perf_counter() - started))
    edge = repository.edge_beside(args.out) if args.edge is None else args.edge
    to_edge = any(f in EDGE_FORMATS for f in args.formats)
    print(f"-> {args.out}" + (f" and {edge}" if to_edge else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
