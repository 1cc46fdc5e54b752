"""Each image gets every package and data file its programs need, checked in seconds.

Without Docker: the build context is what Docker would send (the docker SDK reads
.dockerignore as the engine does), each Dockerfile's COPY lines are replayed from it into a
folder, the project is built into a wheel from that folder as the image builds it, and the
wheel must hold every first-party module the image's programs import (tests/imports.py) and
every package-data file pyproject.toml names. tests/test_docker.py builds the real images.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from imports import closure, module_file, packages

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
# The programs each image runs. The serving image's entrypoint execs `python -m serve`; the
# training image is the whole toolkit (train, export, the parity gate, the bench).
ENTRIES = {
    "serve.Dockerfile": [
        "docker/serve_entrypoint.py",
        "docker/healthcheck.py",
        "serve/__main__.py",
    ],
    "train.Dockerfile": sorted(
        str(p.relative_to(REPO)) for name in packages(REPO) for p in (REPO / name).rglob("*.py")
    ),
}


def context(root: Path = REPO) -> set[str]:
    """The files Docker sends as the build context: root less what .dockerignore excludes."""
    lines = (root / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {p for p in exclude_paths(str(root), patterns) if (root / p).is_file()}


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, arguments) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    found = re.findall(r"^\s*([A-Z]+)\s+(.*)$", text, re.M)
    return [(word, args.strip()) for word, args in found]


def replay(dockerfile: str, files: set[str], root: Path, into: Path) -> Path:
    """Copy what the Dockerfile's context COPYs place before its `pip install ... .` into
    `into` (the WORKDIR it installs from); return that folder."""
    for word, args in instructions(dockerfile):
        if word == "RUN" and re.search(r"pip install\b.*\s\.(\s|$)", args):
            return into
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        for source in sources:
            pattern = source.rstrip("/")
            for name in sorted(files):
                if pattern == ".":
                    target = into / dest / name
                elif name == pattern or fnmatch.fnmatch(name, pattern):
                    target = into / dest / Path(name).name
                elif name.startswith(pattern + "/"):
                    target = into / dest / Path(name).relative_to(pattern)
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, target)
    raise AssertionError("the Dockerfile never installs the project (`pip install ... .`)")


def wheel_files(folder: Path, out: Path) -> set[str]:
    """The files of the wheel pip builds from `folder` as the image does (no isolation)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run([*cmd, "-w", str(out), str(folder)], capture_output=True, text=True)
    assert built.returncode == 0, f"the image's install fails:\n{built.stderr[-2000:]}"
    (wheel,) = out.glob("*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def missing(dockerfile: str, entries: list[str], root: Path, tmp: Path) -> list[str]:
    """What the image's programs import, or pyproject's package data names, that the wheel
    built inside the image lacks."""
    files = wheel_files(replay(dockerfile, context(root), root, tmp / "src"), tmp / "wheel")
    needed = closure([root / e for e in entries], root)
    gone = [m for m in sorted(needed) if str(module_file(root, m).relative_to(root)) not in files]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, globs in data.get("package-data", {}).items():
        if package in {m.split(".")[0] for m in needed}:
            gone += [f"{package}/{g}" for g in globs if not fnmatch.filter(files, f"{package}/{g}")]
    return gone


@pytest.mark.parametrize("dockerfile", sorted(ENTRIES))
def test_image_holds_what_its_programs_import(dockerfile, tmp_path):
    text = (DOCKER / dockerfile).read_text()
    assert missing(text, ENTRIES[dockerfile], REPO, tmp_path) == []


def test_a_package_the_serving_image_does_not_copy_is_caught(tmp_path):
    text = (DOCKER / "serve.Dockerfile").read_text()
    dropped = text.replace("COPY harness/ harness/\n", "")
    assert dropped != text
    gone = missing(dropped, ENTRIES["serve.Dockerfile"], REPO, tmp_path)
    assert "harness.backend" in gone and "harness" in gone, gone


def test_a_package_the_context_leaves_out_breaks_the_training_image(tmp_path):
    """pyproject finds every package; one missing from the context (an ignore line too many,
    as a hand-kept list would drift) is a package the image lacks."""
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(".*", "artifacts", "node_modules"))
    shutil.copy(REPO / ".dockerignore", root / ".dockerignore")
    with (root / ".dockerignore").open("a") as ignore:
        ignore.write("deploy\n")
    text = (DOCKER / "train.Dockerfile").read_text()
    gone = missing(text, ENTRIES["train.Dockerfile"], root, tmp_path)
    assert "deploy.manifests" in gone and "deploy/*.yaml" in gone, gone


@pytest.mark.parametrize(
    ("dockerfile", "lock"),
    [("serve.Dockerfile", "serve-image"), ("train.Dockerfile", "train-image")],
)
def test_images_install_their_lock_with_hashes(dockerfile, lock):
    text = re.sub(r"\\\n\s*", "", (DOCKER / dockerfile).read_text())
    install = rf"pip install [^\n]*--require-hashes[^\n]*-r requirements/{lock}\.txt"
    assert re.search(install, text), f"{dockerfile} does not install requirements/{lock}.txt"
