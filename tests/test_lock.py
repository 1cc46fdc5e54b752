"""requirements/: every install the project makes comes from a lock file made from
pyproject.toml, every file hashed; this venv holds exactly its lock."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

import pytest
from scripts import lock

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", lock.LOCKS)
def test_lock_was_made_from_pyproject(name):
    assert lock.problems(name) == []


def test_a_pin_changed_without_make_lock_is_caught(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = (REPO / "pyproject.toml").read_text()
    pyproject.write_text(text.replace('"numpy==2.4.6"', '"numpy==2.4.5"'))
    assert pyproject.read_text() != text
    for name in ("dev-cpu", "serve-image", "train-image"):
        (problem,) = lock.problems(name, pyproject)
        stale = "was not made from the current inputs: run make lock"
        assert problem == f"requirements/{name}.txt {stale}"


def test_a_hand_edited_lock_is_caught(tmp_path, monkeypatch):
    for name in ("serve-image", "peers"):
        shutil.copy(lock.path(name), tmp_path / f"{name}.txt")
    shutil.copy(lock.HERE / "peers.in", tmp_path / "peers.in")
    monkeypatch.setattr(lock, "HERE", tmp_path)
    edited = lock.path("serve-image")
    edited.write_text(edited.read_text().replace("\nnumpy==2.4.6 \\", "\nnumpy==2.4.5 \\"))
    assert lock.problems("serve-image") == [
        "requirements/serve-image.txt has numpy 2.4.5, wants numpy==2.4.6"
    ]
    peers = lock.path("peers")
    text = peers.read_text()
    start = text.index("\nlitserve==")
    via = text.index("\n    # via", start)
    peers.write_text(text[: start + 1] + "litserve==0.2.19\n" + text[via + 1 :])
    assert lock.problems("peers") == ["requirements/peers.txt: litserve==0.2.19 has no hash"]


def installed_lock() -> str:
    """The lock `make setup` installed here: TensorFlow's CPU wheel or its CUDA one."""
    try:
        importlib.metadata.version("tensorflow-cpu")
        return "dev-cpu"
    except importlib.metadata.PackageNotFoundError:
        return "dev-gpu"


@pytest.mark.skipif(
    Path(sys.prefix) != REPO / ".venv", reason=f"runs in {REPO / '.venv'}, not {sys.prefix}"
)
def test_this_venv_holds_exactly_its_lock():
    assert lock.venv_problems(installed_lock()) == []


def test_the_venv_check_names_each_difference(monkeypatch):
    want = lock.locked(installed_lock())
    numpy = want["numpy"]
    want = {**want, "numpy": "0.0.1", "not-a-package": "1.0"}
    del want["pillow"]
    monkeypatch.setattr(lock, "locked", lambda name: want)
    problems = lock.venv_problems("dev-cpu")
    assert f"numpy {numpy} is installed, the lock has 0.0.1" in problems
    assert "not-a-package 1.0 is missing" in problems
    assert any(p.startswith("pillow ") and p.endswith(" is not in the lock") for p in problems)


def test_the_venv_check_reads_the_venvs_own_packages(tmp_path, monkeypatch):
    """What else is on sys.path (setuptools puts its vendored packages there when something
    builds in process, as AOTInductor does) is not this venv's."""
    info = tmp_path / "stray-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stray\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not [p for p in lock.venv_problems(installed_lock()) if p.startswith("stray ")]
