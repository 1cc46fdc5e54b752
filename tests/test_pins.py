"""docker/pins.py: the training image's base holds torch at pyproject.toml's pin."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from scripts import pins

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"


def test_pins_of_dependencies_and_extras_are_read_by_normalised_name():
    pinned = pins.pins(PYPROJECT)
    assert pinned["ai-edge-litert"] == "ai-edge-litert==2.3.0"  # a dependency
    assert pinned["torch"] == "torch==2.13.0"  # the `train` extra


def test_installed_check_ignores_a_local_label_and_names_a_mismatch():
    import numpy

    assert pins.check_installed({"numpy": f"numpy=={numpy.__version__}"}, ["numpy"]) == []
    (problem,) = pins.check_installed({"numpy": "numpy==0.0.1"}, ["numpy"])
    assert problem == f"numpy {numpy.__version__} is installed; pyproject.toml pins numpy==0.0.1"
    (problem,) = pins.check_installed({"numpy": "numpy==0.0.1"}, ["not-a-dist"])
    assert problem == "not-a-dist is not a dependency in pyproject.toml"


def test_the_training_image_checks_its_base_torch(capsys):
    text = (REPO / "docker" / "train.Dockerfile").read_text().replace("\\\n", " ")
    (call,) = re.findall(r"docker/pins\.py pyproject\.toml ([^>&\n]*)", text)
    assert shlex.split(call) == ["torch"]
    assert pins.main([str(PYPROJECT), "torch"]) == 0  # this venv's torch is the pinned release
    assert pins.main([str(PYPROJECT), "torch", "executorch", "onnxruntime-gpu"]) == 1
    assert "onnxruntime-gpu is not a dependency" in capsys.readouterr().err
