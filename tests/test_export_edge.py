"""What the phone and browser targets need from the export stage: ExecuTorch programs in the
edge root (Triton cannot load them), fixed-batch TFLite files for LiteRT.js, and a .pte
whose batch range survives the XNNPACK lowering.

Real checkpoints and repositories from the session fixtures (tests/conftest.py); no mocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import harness
from contract import checkpoint
from contract.formats import EDGE_FORMATS, FORMAT_NAMES, FORMATS
from contract.names import TRAINERS, variant_name
from export import matrix, repository, tf_formats, torch_formats
from export.__main__ import main
from export.source import Source

pytestmark = pytest.mark.slow

TFLITE = [name for name, f in FORMATS.items() if f.runner == "litert"]


def test_edge_formats_live_beside_the_repository(digits_repo):
    _, repo = digits_repo
    edge = repository.edge_beside(repo)
    in_repo = {p.name for p in repository.variants(repo).values()}
    at_edge = set(repository.variants(edge))
    assert at_edge == {variant_name(t, f) for t in TRAINERS for f in EDGE_FORMATS}
    assert not in_repo & at_edge
    assert len(in_repo) == len(TRAINERS) * (len(FORMAT_NAMES) - len(EDGE_FORMATS))
    for name in at_edge:  # same layout and manifest, no config.pbtxt: no Triton backend
        manifest = repository.verify(edge / name)
        assert not (edge / name / repository.CONFIG_FILE).exists()
        assert {"torch", "executorch"} <= set(manifest["versions"])


@pytest.mark.parametrize("fmt", TFLITE)
def test_fixed_batch_tflite_equals_the_dynamic_file(digits_repo, fmt):
    ckpts, repo = digits_repo
    variant = repo / variant_name("keras-fit", fmt)
    manifest = repository.verify(variant)  # the extra files are listed and signed
    batches = tf_formats.FIXED_BATCHES
    live = manifest["version"]
    assert manifest["fixed_batch"] == {
        str(b): f"{live}/{repository.fixed_batch_file(fmt, b)}" for b in batches
    }
    images = checkpoint.find("keras-fit", ckpts).splits().test.images
    dynamic = harness.load(variant)
    for batch in batches:
        interpreter = Interpreter(model_path=str(variant / manifest["fixed_batch"][str(batch)]))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        assert list(inp["shape_signature"]) == [batch, 8, 8, 1], "batch must be fixed"
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], images[:batch])
        interpreter.invoke()
        logits = interpreter.get_tensor(out["index"])
        # Same conversion, same calibration: int8 gets the same quantization parameters.
        diff = np.abs(logits - dynamic.predict(images[:batch])).max()
        assert diff <= 1e-5, f"{fmt} batch {batch}: {diff}"


def test_pte_needs_its_batch_range_restored(rgb_checkpoints, tmp_path, monkeypatch):
    """Without restore_batch_range the XNNPACK lowering leaves a program that refuses a
    batch of 64; with it (the exporter) the same program runs 1, 7, 64 and, in chunks, more
    than its planned maximum."""
    ckpts, _ = rgb_checkpoints
    source = Source(checkpoint.find("torch", ckpts), tmp_path / "scratch")
    images = np.random.default_rng(0).uniform(0, 255, (1100, 16, 16, 3)).astype(np.float32)
    reference = harness.eager("torch", checkpoints=ckpts).predict(images)
    try:
        fixed = matrix.export_variant(source, "pte", tmp_path / "fixed")
        monkeypatch.setattr(torch_formats, "restore_batch_range", lambda *args: None)
        narrowed = matrix.export_variant(source, "pte", tmp_path / "narrowed")
    finally:
        source.close()
    model = harness.load(tmp_path / "fixed" / fixed.name)
    assert model.runner.max_batch == torch_formats.PTE_MAX_BATCH
    for n in (1, 7, 64, len(images)):
        assert np.abs(model.predict(images[:n]) - reference[:n]).max() <= 1e-4, n
    model.runner.execute(images[:64])  # one call, as a phone app makes it
    broken = harness.load(tmp_path / "narrowed" / narrowed.name).runner
    assert broken.max_batch < 64
    with pytest.raises(RuntimeError):
        broken.execute(images[:64])


def test_export_cli_writes_pte_to_the_edge_root(digits_checkpoints, tmp_path, capsys):
    ckpts, _ = digits_checkpoints
    out, edge = tmp_path / "repository", tmp_path / "phone"
    argv = ["--trainers", "keras-tape", "--formats", "pte", "--checkpoints", str(ckpts)]
    assert main([*argv, "--out", str(out), "--edge", str(edge)]) == 0
    assert list(repository.variants(out)) == []
    assert list(repository.variants(edge)) == ["keras-tape.pte"]
    assert f"and {edge}" in capsys.readouterr().out
