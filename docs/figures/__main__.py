"""python -m docs.figures [--check | --refresh]: see docs/figures/__init__.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from docs import figures
from docs.figures import refresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m docs.figures", description=figures.__doc__.split("\n")[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if a page differs from its snapshots"
    )
    mode.add_argument(
        "--refresh",
        action="store_true",
        help="take the reports of a real run into the snapshots first, then rewrite the pages",
    )
    parser.add_argument(
        "--reports", type=Path, default=Path("artifacts/reports"), help="for --refresh"
    )
    parser.add_argument(
        "--checkpoints", type=Path, default=Path("artifacts/checkpoints"), help="for --refresh"
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as problem:  # a page or snapshot the blocks cannot be rendered from
        print(f"error: {problem}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    if args.check:
        problems = figures.check()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("the figures differ from their snapshots: run `make figures`", file=sys.stderr)
            return 1
        print(f"figures: every block equals its snapshot ({len(figures.BLOCKS)} blocks)")
        return 0
    if args.refresh:
        out = figures.ROOT / figures.HERE
        for line in refresh.take(figures.ROOT, args.reports, args.checkpoints, out):
            print(line)
    for path in figures.write():
        print(f"wrote {path.relative_to(figures.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
