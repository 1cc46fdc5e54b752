"""ONNX Runtime's int8 quantizer under each of its options, judged like `onnx-int8`.

    python -m harness.quant_options                          # every trainer, every option
    python -m harness.quant_options --trainers torch --calibrations MinMax Entropy

Each option (calibration MinMax, Entropy or Percentile x weights per channel or per
tensor) quantizes the trainer's torch.onnx file with export/onnx_quant.py's quantize_int8,
on the same calibration images as the variant, and the int8 profile judges it on the
parity gate's golden set against the eager model. Writes quant_options.json and
quant_options.md into --reports: which options change the verdict, and the figures of the
default (export/onnx_quant.py's INT8) beside the others.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from contract import checkpoint
from contract.files import write_json_atomic, write_text_atomic
from contract.names import TRAINERS
from contract.paths import CHECKPOINTS, REPORTS
from export.onnx_quant import INT8, quantize_int8
from export.source import Source
from harness.backend import eager
from harness.golden import golden_set
from harness.runners import OnnxRunner
from harness.verdict import judge

CALIBRATIONS = ("MinMax", "Entropy", "Percentile")
FIGURES = ("max_abs_diff", "top1_agreement", "unlabelled_max_abs_diff", "bound")


def compare(
    trainers: list[str], checkpoints: Path, calibrations: list[str], scratch: Path
) -> list[dict]:
    rows = []
    for trainer in trainers:
        golden = golden_set(trainer, checkpoints)
        reference = eager(trainer, checkpoints=checkpoints).predict(golden.images)
        source = Source(checkpoint.find(trainer, checkpoints), scratch / trainer)
        try:
            for calibration in calibrations:
                for per_channel in (True, False):
                    started = time.perf_counter()
                    out = source.scratch / f"{calibration}.{per_channel}.onnx"
                    quantize_int8(source, out, calibration, per_channel)
                    logits = OnnxRunner(out).run(golden.images)
                    result = judge(reference, logits, golden.labels, "int8")
                    default = (calibration, per_channel) == (
                        INT8["calibration"],
                        INT8["per_channel"],
                    )
                    rows.append(
                        {
                            "trainer": trainer,
                            "calibration": calibration,
                            "per_channel": per_channel,
                            "default": default,
                            "verdict": result["verdict"],
                            "reason": result["reason"],
                            **{k: result.get(k) for k in FIGURES},
                            "seconds": round(time.perf_counter() - started, 2),
                        }
                    )
        finally:
            source.close()
    return rows


def changes(rows: list[dict]) -> dict[str, bool]:
    """Per trainer: does any option give another verdict than the others?"""
    verdicts: dict[str, set[str]] = {}
    for r in rows:
        verdicts.setdefault(r["trainer"], set()).add(r["verdict"])
    return {trainer: len(found) > 1 for trainer, found in verdicts.items()}


def markdown(rows: list[dict]) -> str:
    lines = [
        "# ONNX Runtime int8: the quantizer's options",
        "",
        "Static QDQ, int8 weights and activations, judged by the int8 profile on the parity "
        "gate's golden set. * marks the default (export/onnx_quant.py).",
        "",
        "| trainer | calibration | weights | max abs diff | unlabelled max | bound | "
        "top-1 agree | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        star = " *" if r["default"] else ""
        unlabelled = r["unlabelled_max_abs_diff"]
        lines.append(
            f"| {r['trainer']} | {r['calibration']}{star} | "
            f"{'per channel' if r['per_channel'] else 'per tensor'} | {r['max_abs_diff']:.3g} | "
            f"{'-' if unlabelled is None else f'{unlabelled:.3g}'} | {r['bound']:.3g} | "
            f"{r['top1_agreement']:.2%} | {r['verdict']} |"
        )
    lines.append("")
    for trainer, changed in changes(rows).items():
        said = "changes the verdict" if changed else "changes no verdict"
        lines.append(f"- {trainer}: the choice of option {said}.")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.quant_options", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--calibrations", nargs="+", choices=CALIBRATIONS, default=CALIBRATIONS)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the report goes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.reports.mkdir(parents=True, exist_ok=True)
    scratch = args.reports / ".quant-options-scratch"
    try:
        rows = compare(args.trainers, args.checkpoints, list(args.calibrations), scratch)
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_json_atomic(args.reports / "quant_options.json", {"rows": rows, "changes": changes(rows)})
    text = markdown(rows)
    write_text_atomic(args.reports / "quant_options.md", text)
    print(text)
    print(f"-> {args.reports / 'quant_options.json'}, quant_options.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
