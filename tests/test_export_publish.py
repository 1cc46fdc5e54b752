"""The export stage's publishing and CLI: verify() refuses tampering, a SIGKILL leaves no
partial variant, stale leftovers are cleaned, subsets, and clear errors for bad requests.

Real checkpoints and repositories from the session fixtures (tests/conftest.py); no mocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS, variant_name
from export import repository
from export.__main__ import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def repos(digits_repo, rgb_repo) -> dict[str, tuple[Path, Path]]:
    return {"digits": digits_repo, "rgb": rgb_repo}


def test_verify_refuses_tampered_variant(repos, tmp_path):
    source = repos["rgb"][1] / variant_name("torch", "savedmodel")
    nested = "1/model.savedmodel/variables/variables.index"

    def fresh_copy() -> Path:
        folder = tmp_path / source.name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder)
        return folder

    folder = fresh_copy()
    with open(folder / nested, "ab") as f:
        f.write(b"\0")
    with pytest.raises(repository.IntegrityError, match=re.escape(nested)):
        repository.verify(folder)
    folder = fresh_copy()
    (folder / repository.LABELS_FILE).unlink()
    with pytest.raises(repository.IntegrityError, match=re.escape("labels.txt is missing")):
        repository.verify(folder)
    folder = fresh_copy()
    (folder / "1" / "extra.bin").write_bytes(b"x")
    with pytest.raises(repository.IntegrityError, match=re.escape("1/extra.bin is not listed")):
        repository.verify(folder)
    renamed = folder.rename(tmp_path / "renamed")
    with pytest.raises(repository.IntegrityError, match="Triton requires"):
        repository.verify(renamed)


def test_verify_refuses_a_symlink_out_and_names_no_path(repos, tmp_path):
    """A symlink leaving the variant is refused, never followed; messages say
    <variant>/<file>, never where the repository lies (the server's clients read them)."""
    source = repos["digits"][1] / variant_name("torch", "onnx")
    folder = shutil.copytree(source, tmp_path / source.name)
    (folder / "rootdir").symlink_to("/", target_is_directory=True)
    with pytest.raises(repository.IntegrityError, match="rootdir is a symlink that leaves") as e:
        repository.verify(folder)
    said = [str(e.value)]
    (folder / "rootdir").unlink()
    (folder / "1" / "model.onnx").write_bytes(b"changed")
    with pytest.raises(repository.IntegrityError, match=r"^torch\.onnx: 1/model\.onnx has") as e:
        repository.verify(folder)
    said.append(str(e.value))
    (folder / repository.MANIFEST_FILE).write_text("{")
    with pytest.raises(repository.IntegrityError, match=r"^torch\.onnx/manifest\.json: ") as e:
        repository.verify(folder)
    said.append(str(e.value))
    assert not any(str(tmp_path) in message for message in said), said


KILL_FORMATS = ("torchscript", "onnx", "savedmodel", "tflite")


def test_sigkill_leaves_no_partial_variant(rgb_checkpoints, tmp_path):
    out = tmp_path / "repository"
    cmd = [sys.executable, "-m", "export", "--trainers", "torch", "--formats", *KILL_FORMATS]
    cmd += ["--checkpoints", str(rgb_checkpoints[0]), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        # Mid-way: one variant published and the next one half-built.
        while not (repository.variants(out) and list(out.glob(".tmp-torch.*"))):
            assert proc.poll() is None, "export finished before it could be killed"
            assert time.monotonic() < deadline, "export made no progress"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 0 < len(visible) < len(KILL_FORMATS)
    for folder in visible:
        repository.verify(folder)
    assert list(out.glob(".tmp-*")), "the killed export should have left its staging folder"

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(variant_name("torch", f) for f in KILL_FORMATS), names
    for folder in out.iterdir():
        repository.verify(folder)


def test_clean_stale_removes_dead_leftovers_and_restores_aside_variant(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = os.getppid()
    for name in (
        f".tmp-torch.onnx-{dead.pid}",
        f".tmp-source-torch-{dead.pid}",
        f".old-torch.tflite-{dead.pid}",
        f".tmp-torch.savedmodel-{alive}",
    ):
        (tmp_path / name / "1").mkdir(parents=True)
    repository.clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".tmp-torch.savedmodel-{alive}",  # another export still running: left alone
        "torch.tflite",  # renamed aside by a killed export, put back
    ]
    assert repository.variants(tmp_path) == {}  # no manifest: not a variant


def test_subset_export_writes_exactly_one_variant(repos, tmp_path, capsys):
    out = tmp_path / "repository"
    argv = ["--trainers", "torch", "--formats", "onnx", "--checkpoints", str(repos["digits"][0])]
    assert main([*argv, "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["torch.onnx"]
    repository.verify(out / "torch.onnx")
    assert "total" in capsys.readouterr().out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "export", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_missing_checkpoint_is_one_line_naming_make_train(tmp_path):
    result = run_cli("--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "repo"))
    assert result.returncode == 2
    assert "make train" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("flag", "valid"),
    [("--formats", FORMAT_NAMES), ("--trainers", TRAINERS)],
    ids=["format", "trainer"],
)
def test_unknown_name_lists_valid_ones(flag, valid):
    result = run_cli(flag, "nonesuch")
    assert result.returncode == 2
    assert "nonesuch" in result.stderr
    for name in valid:
        assert name in result.stderr
