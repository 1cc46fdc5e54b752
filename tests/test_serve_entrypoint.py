"""docker/serve_entrypoint.py: which folders of a mounted repository the serving image
serves, and that it serves a repository in place when nothing must be left out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from export import repository

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("entry", REPO / "docker" / "serve_entrypoint.py")
entry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(entry)
SLIM = ["onnx", "tflite-int8"]


def variant(root: Path, name: str, fmt: str) -> None:
    (root / name).mkdir(parents=True)
    manifest = {"name": name, "format": fmt}
    (root / name / repository.MANIFEST_FILE).write_text(json.dumps(manifest))


def test_split_names_every_folder_left_out(tmp_path):
    variant(tmp_path, "torch.onnx", "onnx")
    variant(tmp_path, "torch.tflite-int8", "tflite-int8")
    variant(tmp_path, "torch.torchscript", "torchscript")
    (tmp_path / "notes").mkdir()
    (tmp_path / ".tmp-torch.onnx-123").mkdir()  # an export in progress: not a folder to serve
    chosen, left_out = entry.split(tmp_path, SLIM)
    assert list(chosen) == ["torch.onnx", "torch.tflite-int8"]
    assert left_out == {
        "notes": "not a variant (no manifest.json)",
        "torch.torchscript": "format torchscript is not served by this image",
    }


@pytest.mark.parametrize("extra", [False, True], ids=["in-place", "copied"])
def test_main_serves_in_place_or_a_copy(tmp_path, monkeypatch, extra):
    variant(tmp_path, "torch.onnx", "onnx")
    if extra:
        variant(tmp_path, "torch.savedmodel", "savedmodel")
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("FORMATS", " ".join(SLIM))
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setattr(entry.sys, "argv", ["entrypoint", "--max-batch", "8"])
    executed = []
    monkeypatch.setattr(entry.os, "execv", lambda path, args: executed.append(args))
    entry.main()
    (args,) = executed
    served = Path(args[args.index("--repository") + 1])
    if extra:  # a copy holding the served variant alone
        assert served != tmp_path and [p.name for p in served.iterdir()] == ["torch.onnx"]
    else:
        assert served == tmp_path
    assert args[args.index("--port") + 1] == "9000" and args[-2:] == ["--max-batch", "8"]


def test_main_refuses_unknown_formats_and_empty_repositories(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("FORMATS", "onnx bogus")
    assert entry.main() == 2
    monkeypatch.setenv("FORMATS", "onnx")
    assert entry.main() == 2
