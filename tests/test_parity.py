"""The parity gate over every variant, and proof that it can fail."""

from __future__ import annotations

import hashlib
import json
import shutil

import onnx
import pytest
from onnx import numpy_helper

import harness
from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS
from export.repository import MANIFEST_FILE
from harness import golden, parity
from harness.verdict import FAIL, INCONCLUSIVE, PASS, PROFILES


@pytest.fixture(scope="module")
def digits_result(digits_repo, tmp_path_factory):
    checkpoints, repo = digits_repo
    reports = tmp_path_factory.mktemp("reports")
    return parity.run(repo, checkpoints, reports), reports


def test_every_variant_passes(digits_result):
    result, reports = digits_result
    rows = {v["name"]: v for v in result["variants"]}
    expected = {f"{t}.{f}" for t in TRAINERS for f in FORMAT_NAMES}
    assert expected <= set(rows), f"missing variants: {expected - set(rows)}"
    # The `make train` models are confident and the held-out set (val + test, 540 images) is
    # large enough for a verdict, so every row passes, quantized ones included.
    not_passed = {n: v["reason"] for n, v in rows.items() if v["verdict"] != PASS}
    assert result["passed"] and not not_passed, not_passed
    assert result["counts"] == {PASS: len(rows), INCONCLUSIVE: 0, FAIL: 0}
    for name in expected:
        v = rows[name]
        assert v["labelled_images"] == 540 and v["version"] == "1", name
        if v["profile"] == "fp32":
            assert v["max_abs_diff"] <= PROFILES["fp32"].max_abs_diff, name
            assert v["top1_agreement"] == 1.0, name
        else:
            assert v["decisive_flips"] == 0, name
    for t in TRAINERS:  # the cross-framework rows: same weights, other framework
        assert any(v["trainer"] == t and v["profile"] == "transfer" for v in rows.values())
    for f in ("onnx", "onnx-tf"):
        assert rows[f"torch.{f}"]["oracle_max_abs_diff"] <= PROFILES["oracle"].max_abs_diff
    for name in ("parity.json", "parity.md", "parity.png", "golden.npz"):
        assert (reports / name).stat().st_size > 0
    assert json.loads((reports / "parity.json").read_text())["passed"] is True
    assert "torch.tflite-int8" in (reports / "parity.md").read_text()


def test_replay_matches(digits_repo, digits_result, tmp_path):
    _, repo = digits_repo
    _, reports = digits_result
    shutil.copy(reports / "golden.npz", tmp_path / "golden.npz")
    replayed = parity.run(repo, tmp_path / "no-checkpoints", tmp_path, replay=True)
    assert replayed["passed"] and replayed["counts"][PASS] == len(replayed["variants"])
    first = {v["name"]: v["max_abs_diff"] for v in digits_result[0]["variants"]}
    for v in replayed["variants"]:
        assert v["max_abs_diff"] == pytest.approx(first[v["name"]], abs=1e-7), v["name"]


def test_a_version_from_another_checkpoint_is_unproven_not_failed(digits_repo, digits_result):
    # After a rollback to a model trained before, the live version's eager model is gone.
    checkpoints, repo = digits_repo
    _, reports = digits_result
    goldens, references = golden.load_or_build(
        ["torch"], checkpoints, reports / "golden.npz", replay=True
    )
    row = parity.check_variant(repo / "torch.onnx", goldens, references, {"torch": "0" * 64})
    assert row.verdict == INCONCLUSIVE
    assert "exported from checkpoint" in row.reason and "000000000000" in row.reason
    same = golden.Saved(reports / "golden.npz").checkpoint("torch")
    row = parity.check_variant(repo / "torch.onnx", goldens, references, {"torch": same})
    assert row.verdict == PASS


def resign(variant) -> None:
    """Recompute the manifest's sha256 values, as an exporter of a broken model would."""
    manifest = json.loads((variant / MANIFEST_FILE).read_text())
    for rel in manifest["files"]:
        manifest["files"][rel] = hashlib.sha256((variant / rel).read_bytes()).hexdigest()
    (variant / MANIFEST_FILE).write_text(json.dumps(manifest))


def perturbed_copy(repo, name, dest, scale: float = 1.05):
    """A correctly signed variant whose first conv kernel is off by a few percent."""
    variant = dest / name
    shutil.copytree(repo / name, variant)
    path = variant / "1" / "model.onnx"
    model = onnx.load(path)
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    onnx.save(model, path)
    resign(variant)
    return variant


def test_broken_variant_is_reported(digits_repo, tmp_path, capsys):
    checkpoints, repo = digits_repo
    broken = tmp_path / "repo"
    shutil.copytree(repo / "keras-fit.onnx", broken / "keras-fit.onnx")
    perturbed_copy(repo, "torch.onnx", broken)
    reports = tmp_path / "reports"
    code = parity.main(
        ["--repository", str(broken), "--checkpoints", str(checkpoints), "--reports", str(reports)]
    )
    assert code == 1
    rows = {v["name"]: v for v in json.loads((reports / "parity.json").read_text())["variants"]}
    assert rows["keras-fit.onnx"]["verdict"] == PASS
    bad = rows["torch.onnx"]
    assert bad["verdict"] == FAIL and bad["max_abs_diff"] > PROFILES["fp32"].max_abs_diff
    assert "max abs diff" in bad["reason"]
    err = capsys.readouterr().err
    assert "FAIL torch.onnx" in err and "max abs diff" in err
    assert "FAIL" in (reports / "parity.md").read_text()


def test_tampered_file_is_refused(digits_repo, tmp_path):
    checkpoints, repo = digits_repo
    variant = tmp_path / "repo" / "torch.tflite"
    shutil.copytree(repo / "torch.tflite", variant)
    blob = bytearray((variant / "1" / "model.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (variant / "1" / "model.tflite").write_bytes(bytes(blob))
    with pytest.raises(Exception, match=r"model\.tflite"):
        harness.load(variant)
    result = parity.run(tmp_path / "repo", checkpoints, tmp_path / "reports")
    (row,) = result["variants"][:1]
    assert not result["passed"] and row["verdict"] == FAIL and "sha256" in row["reason"]


def test_rgb_variants_never_fail(rgb_repo, tmp_path):
    """3-channel images, where NHWC/NCHW and flatten-order bugs hide, in every format. The
    exact rows pass; 120 held-out images are too few to judge a quantized variant, so those
    rows are inconclusive (not a pass, not a failure): exit 0, and 1 with --strict."""
    checkpoints, repo = rgb_repo
    args = ["--repository", str(repo), "--checkpoints", str(checkpoints)]
    assert parity.main([*args, "--reports", str(tmp_path / "r")]) == 0
    result = json.loads((tmp_path / "r" / "parity.json").read_text())
    rows = {v["name"]: v for v in result["variants"]}
    assert len([v for v in rows.values() if v["format"] in FORMAT_NAMES]) == len(TRAINERS) * len(
        FORMAT_NAMES
    )
    for name, v in rows.items():
        if v["profile"] in ("fp16", "int8"):
            assert v["verdict"] == INCONCLUSIVE and v["labelled_images"] == 120, (name, v)
            assert v["decisive_flips"] == 0 and "too few labelled images" in v["reason"]
        else:
            assert v["verdict"] == PASS, (name, v["reason"])
    # 33 variants and 3 transfer rows; the 12 quantized variants (3 trainers x onnx and
    # tflite x fp16, int8) inconclusive, the 24 others pass.
    assert result["counts"] == {PASS: 24, INCONCLUSIVE: 12, FAIL: 0}
    assert parity.main([*args, "--reports", str(tmp_path / "s"), "--strict"]) == 1
