"""python -m train.prepare DIR: a folder of class sub-folders, decoded once into a cache
(contract/folders.py says how, and where it goes).

    python -m train.prepare path/to/photos                 # size and channels from the data
    python -m train.prepare path/to/photos --image-size 96 --channels 3 --skip-bad
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contract.folders import DataError, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.prepare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folder", type=Path, help="one sub-folder of images per class")
    parser.add_argument(
        "--image-size", type=int, default=0, help="side in pixels (default: from the data)"
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=0,
        choices=[0, 1, 3],
        help="1 grey, 3 RGB (default: from the data)",
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="leave out files that cannot be read (counted)"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="decoding processes (default: one per core)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        folder = prepare(
            args.folder, args.image_size, args.channels, args.skip_bad, args.workers, args.quiet
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = json.loads((folder / "meta.json").read_text())
    print(
        f"{folder}: {len(meta['rows'])} images of {len(meta['classes'])} classes at "
        f"{meta['image_size']} px, {meta['channels']} channel(s); {len(meta['skipped'])} skipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
