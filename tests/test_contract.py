"""The bottom package: one record per format, and each format's code where its stage keeps
it. Adding a format is its record (contract/formats.py), its exporter (export/matrix.py's
EXPORTERS) and, unless an existing runtime runs it, its runner (harness/runners.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from contract.formats import EDGE_FORMATS, FORMAT_NAMES, FORMATS
from export.matrix import EXPORTERS
from harness.runners import RUNNERS
from harness.verdict import PROFILES

ENGINES = Path(__file__).resolve().parents[1] / "web" / "src" / "engines.js"


def test_every_format_has_an_exporter_and_nothing_else_has_one():
    assert tuple(EXPORTERS) == FORMAT_NAMES


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_has_a_runner_and_a_profile(fmt):
    record = FORMATS[fmt]
    assert record.name == fmt
    assert record.runner in RUNNERS, f"{fmt}: no runner {record.runner!r} in harness/runners.py"
    assert record.precision in PROFILES, f"{fmt}: no parity profile {record.precision!r}"
    assert "/" not in record.artifact, "the file inside a version folder (<variant>/<N>/)"


def test_every_runner_runs_some_format():
    assert set(RUNNERS) == {f.runner for f in FORMATS.values()}


def test_every_browser_runtime_is_an_engine_of_the_page():
    text = ENGINES.read_text()
    engines = re.search(r"export const ENGINES = \{(.*?)\};", text).group(1)
    names = {key.strip().strip('"') for key, _ in re.findall(r"([\w\"-]+):\s*(\w+)", engines)}
    assert {f.browser for f in FORMATS.values() if f.browser} == names


def test_the_edge_is_what_no_triton_backend_loads():
    assert EDGE_FORMATS == ("pte",)
    assert FORMATS["pt2"].triton_platform and FORMATS["pt2"].triton_backend  # pt2 names both


@pytest.mark.parametrize("first", ["contract", "train", "harness"])
def test_tensorflow_then_triton_loads(tmp_path, first):
    """The GPU install holds torch's triton and a TensorFlow that loads its LLVM globally;
    any stage imported first (contract/__init__.py) keeps `import triton` from crashing."""
    if not importlib.util.find_spec("triton"):
        pytest.skip("no triton here: only torch's CUDA build brings it (make setup GPU=1)")
    code = f"import {first}, tensorflow, triton"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
