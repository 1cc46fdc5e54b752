"""python -m harness.quant_options: ONNX Runtime's quantizer under its options, each file
judged by the int8 profile; the default is the onnx-int8 variant's own file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export.onnx_quant import INT8
from harness import quant_options

pytestmark = pytest.mark.slow


def test_options_are_judged_and_the_default_is_the_variants_file(digits_repo, tmp_path):
    checkpoints, repo = digits_repo
    args = ["--trainers", "torch", "--calibrations", "MinMax", "Percentile"]
    assert (
        quant_options.main([*args, "--checkpoints", str(checkpoints), "--reports", str(tmp_path)])
        == 0
    )
    report = json.loads((tmp_path / "quant_options.json").read_text())
    rows = report["rows"]
    assert [(r["calibration"], r["per_channel"]) for r in rows] == [
        ("MinMax", True),
        ("MinMax", False),
        ("Percentile", True),
        ("Percentile", False),
    ]
    (default,) = [r for r in rows if r["default"]]
    assert (default["calibration"], default["per_channel"]) == (INT8["calibration"], True)
    # Measured on digits: every option within the int8 bound by 2x or more.
    assert {r["verdict"] for r in rows} == {"pass"} and report["changes"] == {"torch": False}
    assert all(r["max_abs_diff"] < r["bound"] / 2 for r in rows), rows
    # The options make different files: a per-tensor and a per-channel scale differ.
    assert len({r["unlabelled_max_abs_diff"] for r in rows}) > 1
    text = (tmp_path / "quant_options.md").read_text()
    assert "| torch | MinMax * | per channel |" in text and "changes no verdict" in text
    # The variant in the repository is the default's file: per-channel weight scales.
    model = onnx.load(repo / "torch.onnx-int8" / "1" / "model.onnx")
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv_scale = next(v for k, v in scales.items() if "weight_scale" in k)
    assert conv_scale.ndim == 1 and len(np.unique(conv_scale)) > 1
    assert not (tmp_path / ".quant-options-scratch").exists()


def test_missing_checkpoints_are_a_clear_error(tmp_path, capsys):
    args = ["--trainers", "torch", "--checkpoints", str(tmp_path / "none")]
    assert quant_options.main([*args, "--reports", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
