"""Model versions on disk: each export is version N+1 beside the newest K, a rollback pins an
older one live in config.pbtxt, and neither carries a tampered file forward.

Real exports of the session's digits checkpoints (tests/conftest.py) into a repository of
this module's own; the runtimes load what the manifest says is live.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

import harness
from contract import checkpoint
from export import repository, versions
from export.matrix import export_variant
from export.rollback import main as rollback_main
from export.source import Source

pytestmark = pytest.mark.slow
NAME = "torch.onnx"


def export(checkpoints: Path, repo: Path, fmt: str = "onnx", keep: int = versions.KEEP) -> dict:
    source = Source(checkpoint.find("torch", checkpoints), repo / ".tmp-source")
    try:
        export_variant(source, fmt, repo, keep)
    finally:
        source.close()
    return repository.verify(repo / f"torch.{fmt}")


def policy(folder: Path) -> pb.ModelVersionPolicy:
    text = (folder / repository.CONFIG_FILE).read_text()
    return text_format.Parse(text, pb.ModelConfig()).version_policy


@pytest.fixture(scope="module")
def published(digits_checkpoints, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoints, repository) after four exports of torch.onnx, keeping 3: versions 2-4."""
    checkpoints, _ = digits_checkpoints
    repo = tmp_path_factory.mktemp("versions") / "model_repository"
    repo.mkdir()
    for _ in range(4):
        export(checkpoints, repo)
    return checkpoints, repo


def test_each_export_is_the_next_version_and_the_newest_k_are_kept(published, capsys):
    _, repo = published
    folder = repo / NAME
    manifest = repository.verify(folder)  # every version's files, none unlisted
    assert versions.numbered(folder) == [2, 3, 4]
    assert list(manifest["model_versions"]) == ["2", "3", "4"]
    assert manifest["version"] == "4" and manifest["artifact"] == "4/model.onnx"
    assert manifest["version_policy"] == {"latest": 1}
    assert policy(folder).latest.num_versions == 1
    for version, record in manifest["model_versions"].items():
        assert set(record["files"]) == {f"{version}/model.onnx"}
        assert record["artifact"] == f"{version}/model.onnx"
        assert record["run"]["data"] == "digits"
    live = [f for f in manifest["files"] if not f[0].isdigit() or f.startswith("4/")]
    size = sum((folder / f).stat().st_size for f in live)  # the kept versions not counted
    assert versions.deployed_size(folder) == size + (folder / "manifest.json").stat().st_size
    model = harness.load(folder)
    assert model.manifest["version"] == "4"
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 1)).astype(np.float32)
    assert model.predict(images).shape == (3, 10)


def test_rollback_pins_the_previous_version_and_the_next_export_moves_on(published, tmp_path):
    checkpoints, source = published
    repo = tmp_path / "model_repository"
    shutil.copytree(source, repo)
    folder = repo / NAME
    before = repository.verify(folder)["files"]
    assert rollback_main([NAME, "--repository", str(repo)]) == 0
    manifest = repository.verify(folder)
    assert set(manifest["files"]) == set(before)  # config.pbtxt, labels, warmup/, versions
    assert "warmup/image" in before
    assert (manifest["version"], manifest["artifact"]) == ("3", "3/model.onnx")
    assert list(policy(folder).specific.versions) == [3]
    assert harness.load(folder).manifest["version"] == "3"
    assert versions.numbered(folder) == [2, 3, 4]  # nothing deleted: 4 can come back
    assert rollback_main([NAME, "--repository", str(repo), "--to", "2"]) == 0
    assert repository.verify(folder)["version"] == "2"
    # The next export is a new version under the `latest` policy again.
    manifest = export(checkpoints, repo)
    assert (manifest["version"], list(manifest["model_versions"])) == ("5", ["3", "4", "5"])
    assert policy(folder).latest.num_versions == 1


def test_rollback_says_why_it_cannot(published, tmp_path, capsys):
    _, source = published
    repo = tmp_path / "model_repository"
    shutil.copytree(source, repo)
    assert rollback_main(["torch.nothing", "--repository", str(repo)]) == 2
    assert "no variant 'torch.nothing'" in capsys.readouterr().err
    assert rollback_main([NAME, "--repository", str(repo), "--to", "1"]) == 2
    assert "no version '1'; it holds 2, 3, 4" in capsys.readouterr().err
    for to in ("3", "2"):
        assert rollback_main([NAME, "--repository", str(repo), "--to", to]) == 0
    assert rollback_main([NAME, "--repository", str(repo)]) == 2
    assert "no older version is kept" in capsys.readouterr().err


def test_a_tampered_version_is_neither_rolled_back_to_nor_carried(published, tmp_path, capsys):
    checkpoints, source = published
    repo = tmp_path / "model_repository"
    shutil.copytree(source, repo)
    folder = repo / NAME
    with (folder / "3" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    before = (folder / repository.MANIFEST_FILE).read_bytes()
    assert rollback_main([NAME, "--repository", str(repo)]) == 2
    assert "3/model.onnx has sha256" in capsys.readouterr().err
    assert (folder / repository.MANIFEST_FILE).read_bytes() == before  # nothing published
    manifest = export(checkpoints, repo)
    assert list(manifest["model_versions"]) == ["5"]  # the next number all the same
    assert "no earlier version kept: torch.onnx: 3/model.onnx" in capsys.readouterr().out


def test_versions_of_other_tensors_are_dropped_not_mixed(published, tmp_path, capsys):
    checkpoints, source = published
    repo = tmp_path / "model_repository"
    shutil.copytree(source, repo)
    path = repo / NAME / repository.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["model_versions"]["3"]["labels"] = [f"class {i}" for i in range(10)]
    path.write_text(json.dumps(manifest))  # the manifest lists the files, it is not listed
    manifest = export(checkpoints, repo)
    assert list(manifest["model_versions"]) == ["2", "4", "5"]  # the newest 2 that fit
    out = capsys.readouterr().out
    assert "version(s) 3 dropped (--keep-versions 3; 3 take other tensors or labels)" in out


def test_an_export_from_before_versions_is_carried_as_version_1(digits_checkpoints, tmp_path):
    checkpoints, _ = digits_checkpoints
    repo = tmp_path / "model_repository"
    repo.mkdir()
    export(checkpoints, repo)
    path = repo / NAME / repository.MANIFEST_FILE
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in versions.VARIANT_KEYS}
    old["files"] = repository.file_hashes(repo / NAME)  # as exports wrote it then
    path.write_text(json.dumps(old))
    assert versions.live(repository.verify(repo / NAME)) == "1"
    manifest = export(checkpoints, repo)
    assert list(manifest["model_versions"]) == ["1", "2"]
    was = old["files"]["1/model.onnx"]
    assert manifest["model_versions"]["1"]["files"] == {"1/model.onnx": was}


def test_tflite_versions_keep_their_fixed_batch_files(digits_checkpoints, tmp_path):
    checkpoints, _ = digits_checkpoints
    repo = tmp_path / "model_repository"
    repo.mkdir()
    export(checkpoints, repo, "tflite")
    manifest = export(checkpoints, repo, "tflite", keep=2)
    assert manifest["fixed_batch"] == {"1": "2/model.b1.tflite", "64": "2/model.b64.tflite"}
    old = manifest["model_versions"]["1"]
    assert old["fixed_batch"] == {"1": "1/model.b1.tflite", "64": "1/model.b64.tflite"}
    assert set(old["files"]) == {"1/model.tflite", "1/model.b1.tflite", "1/model.b64.tflite"}
