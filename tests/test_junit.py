"""The parity gate in JUnit XML, as CI tools read it: `--junit-xml`, the pytest route, and
the ready workflow file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped
from test_parity import perturbed_copy

from harness import junit, parity
from harness.verdict import FAIL, INCONCLUSIVE, PASS

ROOT = Path(__file__).resolve().parents[1]

# What junit-10.xsd (Jenkins xUnit's schema, which pytest's xunit2 output and GitLab's and
# GitHub's JUnit readers follow) allows of the elements written here:
# element -> (attributes allowed, attributes required, children allowed).
SCHEMA = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp"}
        | {"hostname", "id", "package", "file", "log", "url"},
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": (
        {"name", "time", "classname", "group"},
        {"name"},
        {"skipped", "error", "failure", "system-out", "system-err"},
    ),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}


def check_schema(element: ET.Element) -> None:
    allowed, required, children = SCHEMA[element.tag]
    assert set(element.attrib) <= allowed, (element.tag, set(element.attrib) - allowed)
    assert required <= set(element.attrib), (element.tag, required - set(element.attrib))
    for child in element:
        assert child.tag in children, f"<{child.tag}> inside <{element.tag}>"
        check_schema(child)


def row(name: str, profile: str, verdict: str, reason: str = "", **figures) -> dict:
    return {"name": name, "profile": profile, "verdict": verdict, "reason": reason, **figures}


RESULT = {
    "variants": [
        row("torch.onnx", "fp32", PASS, max_abs_diff=7.6e-6, top1_agreement=1.0),
        row("torch.tflite-int8", "int8", INCONCLUSIVE, "too few labelled images: 120"),
        row("torch.torchscript", "fp32", FAIL, "max abs diff 0.2 > 1e-4\x01", decisive_flips=3),
    ]
}


def cases(path: Path) -> dict[str, object]:
    suites = list(JUnitXml.fromfile(str(path)))
    assert len(suites) == 1
    return {case.name: case for case in suites[0]}


def test_one_case_per_row_failures_and_skips(tmp_path):
    path = junit.write(RESULT, tmp_path / "parity.xml")
    check_schema(ET.parse(path).getroot())
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (3, 1, 0, 1)
    found = cases(path)
    assert list(found) == ["torch.onnx", "torch.tflite-int8", "torch.torchscript"]
    assert found["torch.onnx"].classname == "parity.fp32" and found["torch.onnx"].is_passed
    (skipped,) = found["torch.tflite-int8"].result
    assert isinstance(skipped, Skipped) and skipped.message == "too few labelled images: 120"
    (failure,) = found["torch.torchscript"].result
    assert isinstance(failure, Failure)
    assert failure.message == "max abs diff 0.2 > 1e-4?", "characters XML cannot hold replaced"
    out = found["torch.torchscript"].system_out
    assert "profile=fp32" in out and "decisive_flips=3" in out and "verdict=fail" in out
    assert "max_abs_diff=7.6e-06" in found["torch.onnx"].system_out


def test_strict_makes_inconclusive_a_failure(tmp_path):
    path = junit.write(RESULT, tmp_path / "parity.xml", strict=True)
    check_schema(ET.parse(path).getroot())
    (suite,) = JUnitXml.fromfile(str(path))
    assert (suite.failures, suite.skipped) == (2, 0)
    (failure,) = cases(path)["torch.tflite-int8"].result
    assert isinstance(failure, Failure) and failure.message.startswith("inconclusive: ")


@pytest.fixture(scope="module")
def broken_repo(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoints, repository): torch trained on 400 synthetic RGB images (120 held out:
    too few to judge int8, an inconclusive row), its torchscript (passes), its int8 and an
    ONNX export with one conv kernel 5% off (fails)."""
    from contract import datasets
    from export.matrix import export_all
    from train.__main__ import run
    from train.config import TrainConfig

    root = tmp_path_factory.mktemp("junit")
    # conftest's rgb_checkpoints settings, for torch alone
    settings = dict(data="synthetic", image_size=16, channels=3, synthetic_samples=400)
    cfg = TrainConfig(out=root / "checkpoints", epochs=6, quiet=True, **settings)
    splits = datasets.load(
        cfg.data, cfg.image_size, cfg.channels, cfg.seed, n=cfg.synthetic_samples
    )
    run(cfg, "torch", splits)
    export_all(["torch"], ["torchscript", "onnx", "tflite-int8"], cfg.out, root / "exported")
    repo = root / "repo"
    for name in ("torch.torchscript", "torch.tflite-int8"):
        shutil.copytree(root / "exported" / name, repo / name)
    perturbed_copy(root / "exported", "torch.onnx", repo)
    return cfg.out, repo


@pytest.mark.slow
def test_make_parity_junit_xml(broken_repo, tmp_path):
    """`make parity ARGS="--junit-xml PATH"`: the gate's rows, one case each, as judged."""
    checkpoints, repo = broken_repo
    path = tmp_path / "ci" / "parity.xml"
    args = ["--repository", str(repo), "--checkpoints", str(checkpoints)]
    assert parity.main([*args, "--reports", str(tmp_path), "--junit-xml", str(path)]) == 1
    check_schema(ET.parse(path).getroot())
    report = json.loads((tmp_path / "parity.json").read_text())["variants"]
    found = cases(path)
    assert list(found) == [v["name"] for v in report]
    verdicts = {v["name"]: v["verdict"] for v in report}
    assert verdicts == {
        "torch.torchscript": PASS,
        "torch.onnx": FAIL,
        "torch.tflite-int8": INCONCLUSIVE,
        "torch.eager-keras": PASS,
    }
    (failure,) = found["torch.onnx"].result
    assert isinstance(failure, Failure) and "max abs diff" in failure.message
    assert "first divergence at block0" in failure.message  # the kernel it perturbs
    (skipped,) = found["torch.tflite-int8"].result
    assert isinstance(skipped, Skipped) and "too few labelled images" in skipped.message
    assert "every layer within its budget" in skipped.message
    assert found["torch.torchscript"].is_passed and found["torch.eager-keras"].is_passed
    assert found["torch.tflite-int8"].classname == "parity.int8"


def pytest_route(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`pytest --pyargs harness.test_parity_gate ...` from a folder of the user's."""
    command = [sys.executable, "-m", "pytest", "--pyargs", "harness.test_parity_gate"]
    command += ["-p", "no:cacheprovider", "-o", "junit_logging=system-out", *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_pytest_route(broken_repo, tmp_path):
    checkpoints, repo = broken_repo
    path = tmp_path / "pytest.xml"
    done = pytest_route(
        tmp_path,
        *("--parity-repository", str(repo), "--parity-checkpoints", str(checkpoints)),
        *("--parity-reports", str(tmp_path / "reports"), "--junit-xml", str(path)),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    check_schema(ET.parse(path).getroot())
    found = {name.split("[")[1].rstrip("]"): case for name, case in cases(path).items()}
    names = {"torch.torchscript", "torch.onnx", "torch.tflite-int8", "torch.eager-keras"}
    assert set(found) == names
    (failure,) = found["torch.onnx"].result
    assert isinstance(failure, Failure) and "max abs diff" in failure.message
    assert isinstance(found["torch.tflite-int8"].result[0], Skipped)
    assert "profile=fp32" in found["torch.torchscript"].system_out


def test_pytest_route_without_a_repository_runs_nothing(tmp_path):
    done = pytest_route(tmp_path, "-rs")
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout + done.stderr
    assert "no --parity-repository" in done.stdout


def test_workflow_runs_the_gate_and_uploads_the_report():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "parity.yml").read_text())
    (job,) = workflow["jobs"].values()
    runs = " ; ".join(step.get("run", "") for step in job["steps"])
    for target in ("make setup", "make train", "make export", "make parity"):
        assert target in runs, target
    assert "--junit-xml" in runs
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"].startswith("artifacts/reports")
    assert uploads[0]["if"] == "always()", "the report is what a failed gate leaves to read"


def test_pytest_route_with_an_empty_repository_says_so(tmp_path):
    (tmp_path / "repo").mkdir()
    done = pytest_route(tmp_path, "--parity-repository", str(tmp_path / "repo"))
    assert done.returncode not in (0, 1), done.stdout + done.stderr  # an error, not a verdict
    assert "no variants in" in done.stdout + done.stderr
