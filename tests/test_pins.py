"""docker/pins.py: the images install pyproject.toml's pins, read there and nowhere else."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
spec = importlib.util.spec_from_file_location("pins", REPO / "docker" / "pins.py")
pins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pins)


def test_names_are_normalised_and_pinned():
    pinned = pins.pins(PYPROJECT)
    assert pinned["ai-edge-litert"] == "ai-edge-litert==2.3.0"
    assert pins.select(pinned, ["AI_Edge_LiteRT", "numpy"], False, []) == [
        "ai-edge-litert==2.3.0",
        pinned["numpy"],
    ]
    everything = pins.select(pinned, [], True, ["torch"])
    assert len(everything) == len(pinned) - 1 and not any(
        r.startswith("torch=") for r in everything
    )


def test_extras_asked_replace_pyprojects():
    pinned = pins.pins(PYPROJECT)
    assert pinned["tritonclient"] == "tritonclient[http,grpc]==2.73.0"
    assert pins.select(pinned, ["tritonclient[grpc]"], False, []) == ["tritonclient[grpc]==2.73.0"]
    assert "tritonclient[http,grpc]==2.73.0" in pins.select(pinned, [], True, [])


def test_unknown_name_is_an_error():
    message = "not a dependency in pyproject.toml: onnxruntime-gpu"
    with pytest.raises(SystemExit, match=re.escape(message)):
        pins.select(pins.pins(PYPROJECT), ["onnxruntime-gpu"], False, [])


def test_constraints_drop_extras(capsys):
    assert pins.main([str(PYPROJECT), "--constraints"]) == 0
    lines = capsys.readouterr().out.split()
    assert all("==" in line and "[" not in line for line in lines)
    assert len(lines) == len(pins.pins(PYPROJECT))


def test_installed_check_ignores_a_local_label_and_names_a_mismatch():
    import numpy

    assert pins.check_installed({"numpy": f"numpy=={numpy.__version__}"}, ["numpy"]) == []
    (problem,) = pins.check_installed({"numpy": "numpy==0.0.1"}, ["numpy"])
    assert problem == f"numpy {numpy.__version__} is installed; pyproject.toml pins numpy==0.0.1"


@pytest.mark.parametrize("dockerfile", ["serve.Dockerfile", "train.Dockerfile"])
def test_dockerfiles_name_only_pinned_packages(dockerfile):
    text = (REPO / "docker" / dockerfile).read_text().replace("\\\n", " ")
    calls = re.findall(r"docker/pins\.py pyproject\.toml ([^>&\n]*)", text)
    assert calls
    for call in calls:  # pins.py exits with the reason on a name or extra pyproject lacks
        assert pins.main([str(PYPROJECT), *shlex.split(call)]) == 0, call


def test_the_training_image_installs_tensorflow_with_cuda(capsys):
    text = (REPO / "docker" / "train.Dockerfile").read_text().replace("\\\n", " ")
    (call,) = re.findall(r"docker/pins\.py pyproject\.toml (--all[^>&\n]*)", text)
    capsys.readouterr()
    assert pins.main([str(PYPROJECT), *shlex.split(call)]) == 0
    lines = capsys.readouterr().out.split()
    assert "tensorflow[and-cuda]==2.21.0" in lines, lines
    assert not [line for line in lines if line.startswith(("tensorflow-cpu", "torch="))]


def test_an_unknown_extra_is_an_error():
    with pytest.raises(SystemExit, match=r"not an extra in pyproject\.toml: gpus"):
        pins.pins(PYPROJECT, ("gpus",))
