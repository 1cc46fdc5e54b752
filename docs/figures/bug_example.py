"""python -m docs.figures.bug_example: the parity page's "When parity fails" walk-through,
run for real, so its table and picture come from a run rather than from a hand.

The torch model of `make demo` (artifacts/checkpoints) is exported through tf2onnx (the
`onnx-tf` format) after a bug of the kind a converter or a weight-loading step makes: the
kernel of the second stage's first convolution scaled by 1.5. `make parity`'s gate runs on
it and diagnoses the failing row (harness/diagnose.py). Writes
artifacts/reports/bug_example.json (the row) and bug_example.png (its error per layer);
`python -m docs.figures --refresh` takes both into the docs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from contract import checkpoint
from contract.checkpoint import CheckpointError
from contract.files import write_json_atomic
from contract.paths import CHECKPOINTS, REPORTS
from export import matrix
from export.source import Source
from harness import parity

TRAINER, FORMAT = "torch", "onnx-tf"
CONV, SCALE = 2, 1.5  # the second stage's first convolution (2 convolutions per stage)


def scale_kernel(source: Source) -> None:
    convs = [layer for layer in source.keras_model.layers if type(layer).__name__ == "Conv2D"]
    kernel, bias = convs[CONV].get_weights()
    convs[CONV].set_weights([kernel * np.float32(SCALE), bias])


def run(checkpoints: Path, reports: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        source = Source(checkpoint.find(TRAINER, checkpoints), scratch / "source")
        try:
            scale_kernel(source)
            matrix.export_variant(source, FORMAT, scratch / "repository")
        finally:
            source.close()
        result = parity.run(scratch / "repository", checkpoints, scratch / "reports", replay=False)
        (row,) = [v for v in result["variants"] if v["format"] == FORMAT]
        reports.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scratch / "reports" / "diagnose.png", reports / "bug_example.png")
    example = {"bug": f"conv{CONV} kernel x{SCALE}", "row": row}
    write_json_atomic(reports / "bug_example.json", example)
    return example


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m docs.figures.bug_example", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="`make demo`'s")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the files go")
    args = parser.parse_args(argv)
    try:
        example = run(args.checkpoints, args.reports)
    except CheckpointError as e:
        print(f"error: {e} (run `make demo` first)", file=sys.stderr)
        return 2
    row = example["row"]
    print(f"{row['name']}: {row['verdict']}: {row['reason']}\n  {row['diagnosis']}")
    print(f"-> {args.reports / 'bug_example.json'}, bug_example.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
