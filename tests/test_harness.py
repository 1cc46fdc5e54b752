"""The harness contract checks, against real runtimes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import harness
from export import repository
from harness.runners import OnnxRunner


def onnx_model(tmp_path, op: str) -> harness.Backend:
    """A real ONNX graph [N,4,4,1] -> [N,2] whose output `op` can make non-finite."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"]),
            helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["two"]),
            helper.make_node(op, ["two", "zero"] if op == "Div" else ["two"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
            helper.make_tensor("ends", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, path)
    return harness.Backend(op, OnnxRunner(path), (4, 4, 1), ["a", "b"], {})


def test_predict_and_classify(tmp_path):
    model = onnx_model(tmp_path, "Identity")
    images = np.zeros((3, 4, 4, 1), np.float32)
    images[:, 0, 1, 0] = [1.0, 5.0, 0.0]
    logits = model.predict(images)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    top = model.classify(images, k=2)
    assert [row[0]["label"] for row in top] == ["b", "b", "a"]
    assert sum(t["probability"] for t in top[0]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 4, 4, 1), np.float64), "float32"),
        ([[[[0.0]]]], "float32"),
        (np.zeros((2, 4, 4), np.float32), r"shape \[N, 4, 4, 1\]"),
        (np.zeros((2, 1, 4, 4), np.float32), "NHWC"),
        (np.zeros((0, 4, 4, 1), np.float32), "N >= 1"),
    ],
    ids=["float64", "list", "3d", "nchw", "empty"],
)
def test_bad_input_is_a_contract_error(tmp_path, images, match):
    with pytest.raises(harness.ContractError, match=match):
        onnx_model(tmp_path, "Identity").predict(images)


def test_non_finite_output_is_caught(tmp_path):
    images = np.ones((2, 4, 4, 1), np.float32)
    with pytest.raises(harness.ContractError, match="non-finite"):
        onnx_model(tmp_path, "Div").predict(images)


def test_not_a_variant(tmp_path):
    with pytest.raises(harness.VariantError, match="make export"):
        harness.load(tmp_path)
    assert repository.variants(tmp_path / "missing") == {}
