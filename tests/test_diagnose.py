"""Layer-level diagnosis: each runtime's probe points equal the eager model's on healthy
variants, within the budget with a wide margin; the command names variants, says which
runtimes keep their inside closed, and writes its report. The bugs it localises are in
tests/test_parity_bugs.py (and the JUnit message in tests/test_junit.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from contract import checkpoint
from contract.spec import CNNSpec
from harness import diagnose, probes
from harness.verdict import BLEND, RANDOM

pytestmark = pytest.mark.slow

HEALTHY = [
    "torch.onnx",  # torch's exporter
    "keras-fit.onnx-tf",  # tf2onnx
    "torch.tflite",  # LiteRT from a transferred Keras model
    "keras-tape.tflite-fp16",
    "keras-fit.tflite-int8",  # dequantized with each tensor's own scale
    "torch.onnx-int8",  # QDQ: each tensor after its DequantizeLinear, ReLUs folded in
    "keras-tape.onnx-fp16",  # float16 tensors
    "torch.eager-keras",  # the transfer row
    "keras-fit.torchscript",  # the file's own modules, called in order
]


def test_to_contract_puts_every_layout_in_nhwc():
    probe = CNNSpec().probes()[0]  # block0: (8, 8, 32)
    nhwc = np.random.default_rng(0).normal(size=(2, 8, 8, 32)).astype(np.float32)
    assert np.array_equal(probes.to_contract(nhwc.transpose(0, 3, 1, 2), probe, "NCHW"), nhwc)
    assert np.array_equal(probes.to_contract(nhwc, probe, "NHWC"), nhwc)
    with pytest.raises(probes.ProbeError, match=r"block0: .*\[2, 32, 8, 8\] \(NHWC\)"):
        probes.to_contract(nhwc.transpose(0, 3, 1, 2), probe, "NHWC")


def test_the_probes_follow_the_spec():
    names = [p.name for p in CNNSpec.for_data(64, 3, 4).probes()]
    # 64 px: 4 stages of 2 convs, each with its pool, then the hidden layer and the logits
    assert names[:3] == ["block0", "block1", "pool0"] and names[-2:] == ["fc0", "logits"]
    assert len(names) == 4 * 3 + 2
    assert probes.unreachable("onnx") == "" and probes.unreachable("tflite-int8") == ""
    assert "compiled" in probes.unreachable("pt2")


def test_healthy_variants_stay_far_within_every_layer_budget(digits_repo, tmp_path, capsys):
    checkpoints, repo = digits_repo
    args = [*HEALTHY, "torch.pt2", "--repository", str(repo), "--checkpoints", str(checkpoints)]
    assert diagnose.main([*args, "--reports", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "diagnose.json").read_text())["variants"]
    results = {r["name"]: r for r in report}
    for name in HEALTHY:
        r = results[name]
        assert r["first_divergence"] is None and r["layers"], r
        # every runtime's tensors are the eager ones: a wrong layout or scale would be an
        # error near 1 of the range, 100000x float32's budget (healthy: about 0.1 of it);
        # the quantized rows are held to their budget above (healthy int8: about 0.3 of it)
        if r["profile"] in ("fp32", "transfer"):
            assert max(x["error"] / x["budget"] for x in r["layers"]) < 0.5, r
        assert [x["probe"] for x in r["layers"]] == [p.name for p in CNNSpec().probes()]
    assert "not reachable: an AOTInductor package" in capsys.readouterr().out
    assert results["torch.pt2"]["layers"] == []
    assert (tmp_path / "diagnose.png").stat().st_size > 0


def test_the_rows_probed_fit_the_memory_at_every_size():
    """All of digits' golden rows; at 224 px only what PROBE_BYTES holds, labelled first, and
    int8 without the uniform-noise rows."""
    labels = np.concatenate([np.arange(540) % 10, np.full(64, RANDOM), np.full(64, BLEND)])
    digits = CNNSpec()
    assert len(diagnose.rows(labels, "fp32", digits)) == 256 + 128
    assert len(diagnose.rows(labels, "int8", digits)) == 256 + 64
    large = CNNSpec.for_data(224, 3, 5)
    picked = diagnose.rows(labels, "fp32", large)
    per_row = 4 * sum(int(np.prod(p.shape)) for p in large.probes())
    assert len(picked) >= diagnose.MIN_ROWS and len(picked) * per_row <= diagnose.PROBE_BYTES
    assert (labels[picked[: len(picked) * 2 // 3]] >= 0).all() and (labels[picked[-1]] < 0)


def test_an_unknown_variant_names_what_there_is(digits_repo, tmp_path):
    _, repo = digits_repo
    with pytest.raises(
        SystemExit, match=r"no variant 'torch.onx'; in the repository: .*torch.onnx"
    ):
        diagnose.main(["torch.onx", "--repository", str(repo), "--reports", str(tmp_path)])


def test_a_graph_that_is_not_the_spec_is_refused(digits_repo, tmp_path):
    """An ONNX graph missing a ReLU (another model than its manifest's spec) is a clear error,
    not a diagnosis of the wrong tensors."""
    checkpoints, repo = digits_repo
    model = onnx.load(repo / "torch.onnx" / "1" / "model.onnx")
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    spec = checkpoint.find("torch", checkpoints).spec
    with pytest.raises(probes.ProbeError, match=r"4 Relu and 2 MaxPool nodes; .* has 5 and 2"):
        probes.onnx_tensors(model.graph, spec)


def test_a_qdq_file_is_probed_where_the_next_layer_reads(digits_repo):
    """onnx-int8 has no Relu node: the quantizer folded each into the QuantizeLinear after
    its Conv or Gemm. The probes are those pairs' DequantizeLinear outputs: non-negative,
    as after a ReLU, while the Conv's own output (the name the ReLU had) is not."""
    checkpoints, repo = digits_repo
    model = onnx.load(repo / "torch.onnx-int8" / "1" / "model.onnx")
    assert not [n for n in model.graph.node if n.op_type == "Relu"]
    spec = checkpoint.find("torch", checkpoints).spec
    names = probes.onnx_tensors(model.graph, spec)
    made_by = {n.output[0]: n.op_type for n in model.graph.node}
    assert [made_by[n] for n in names[:-1]] == ["DequantizeLinear"] * (len(names) - 1)
    images = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 1)).astype(np.float32)
    found = probes.onnx_probes(repo / "torch.onnx-int8" / "1" / "model.onnx", spec, images)
    assert min(float(found[p.name].min()) for p in spec.probes()[:-1]) >= 0
    conv = next(n for n in model.graph.node if n.op_type == "Conv").output[0]
    model.graph.output.append(onnx.ValueInfoProto(name=conv))
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run([conv], {"images": images})[0].min() < 0  # before the folded ReLU
