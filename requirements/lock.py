"""The lock files: every package of every install the project makes, at one version, with hashes.

    python requirements/lock.py               # write every lock from pyproject.toml (make lock)
    python requirements/lock.py --check       # exit 1 when a lock no longer matches its inputs
    python requirements/lock.py --venv dev-cpu   # exit 1 unless this interpreter holds exactly
                                                 # that lock, and `pip check` is clean

pyproject.toml pins the direct dependencies; a lock adds what they pull in, resolved once by
uv for CPython 3.11 on Linux x86_64 (the machines CI and the images run on), so an install
gives the same set on any day. Each lock's first line is a digest of its inputs (the
requirement lists it was made from, and how): `--check` recomputes it, offline, so a pin
changed in pyproject.toml without `make lock` fails CI.

The CPU build of torch (`torch==<pin>+cpu`, dev-cpu) is not on PyPI: it is read from
TORCH_CPU_WHEELS, a folder or an index URL (default: pip's PIP_FIND_LINKS where set, else
PyTorch's CPU index, https://download.pytorch.org/whl/cpu).

Standard library only (uv runs as a program): the checks run before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYPROJECT = REPO / "pyproject.toml"
PYTHON = "3.11"
# glibc 2.28 or newer: Debian 12 (2.36) and the CUDA base's Ubuntu 22.04 (2.35) alike.
PLATFORM = "x86_64-manylinux_2_28"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Removes torch (and what only torch pulls in) from a resolution: the training image keeps
# its CUDA base's torch. uv drops a requirement whose override's marker never holds.
NO_TORCH = 'torch ; python_version < "0"'
# uv reads only the lower bound of a package's Requires-Python, where pip honours both: a
# release that excludes Python 3.11 must be kept out by hand, or pip finds no file to install.
UPPER_BOUNDS = ("backports-strenum<1.3",)  # 1.3.1: Python < 3.11 (ai-edge-litert needs it)
# A name and version on a lock line: `torch==2.13.0+cpu \`.
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s|$)", re.M)


@dataclass(frozen=True)
class Lock:
    """One install: the extras of pyproject.toml it takes (or a requirements file of its own)
    and how torch resolves in it."""

    extras: tuple[str, ...] = ()
    torch: str = "pypi"  # "pypi" (CUDA build on Linux), "cpu" (+cpu wheel) or "base" (none)
    source: str | None = None  # a requirements file under requirements/ instead of pyproject
    platform: str = PLATFORM
    what: str = ""


LOCKS = {
    "dev-cpu": Lock(("train", "cpu", "dev"), "cpu", what="make setup"),
    "dev-gpu": Lock(("train", "gpu", "dev"), "pypi", what="make setup GPU=1"),
    "serve-image": Lock((), what="docker/serve.Dockerfile"),
    "train-image": Lock(("train", "gpu"), "base", what="docker/train.Dockerfile (torch: its base)"),
    # PyTriton's wheels are built for glibc 2.35 (Debian 12 has 2.36)
    "peers": Lock(source="peers.in", platform="x86_64-manylinux_2_35", what="benchmarks/peers.py"),
}


def path(name: str) -> Path:
    return HERE / f"{name}.txt"


def canonical(name: str) -> str:
    """PEP 503: `AI_Edge_LiteRT` -> `ai-edge-litert`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text())


def requirements(lock: Lock, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines a lock is resolved from: its file, or pyproject's dependencies,
    its extras and the build backend (the project installs without build isolation)."""
    if lock.source:
        lines = (HERE / lock.source).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    meta = project(pyproject)
    optional = meta["project"]["optional-dependencies"]
    unknown = [e for e in lock.extras if e not in optional]
    if unknown:
        raise SystemExit(f"not an extra in pyproject.toml: {', '.join(unknown)}")
    extras = [line for e in lock.extras for line in optional[e]]
    return [*meta["project"]["dependencies"], *extras, *meta["build-system"]["requires"]]


def overrides(lock: Lock, pyproject: Path = PYPROJECT) -> list[str]:
    if lock.torch == "base":
        return [NO_TORCH]
    if lock.torch == "cpu":
        torch = next(r for r in requirements(lock, pyproject) if re.match(r"torch\s*==", r))
        return [torch.replace(" ", "") + "+cpu"]
    return []


def digest(lock: Lock, pyproject: Path = PYPROJECT) -> str:
    inputs = {
        "requirements": requirements(lock, pyproject),
        "overrides": overrides(lock, pyproject),
        "constraints": UPPER_BOUNDS,
        "python": PYTHON,
        "platform": lock.platform,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def header(lock: Lock, pyproject: Path = PYPROJECT) -> str:
    return f"# inputs sha256 {digest(lock, pyproject)} (for: {lock.what}; make lock)\n"


def torch_cpu_source() -> list[str]:
    where = os.environ.get("TORCH_CPU_WHEELS") or os.environ.get("PIP_FIND_LINKS")
    where = where or TORCH_CPU_INDEX
    if "://" in where and not where.startswith("file:"):
        return ["--extra-index-url", where, "--index-strategy", "unsafe-best-match"]
    return ["--find-links", where]


def compile_lock(name: str, uv: str) -> None:
    """Resolve one lock with uv and write it, its inputs' digest first."""
    lock = LOCKS[name]
    scratch = HERE / f".{name}"  # the inputs uv names in its `# via` lines, removed after
    scratch.mkdir(exist_ok=True)
    try:
        inputs = scratch / "requirements.in"
        inputs.write_text("\n".join(requirements(lock)) + "\n")
        cmd = [uv, "pip", "compile", str(inputs.relative_to(REPO)), "--generate-hashes"]
        cmd += ["--python-version", PYTHON, "--python-platform", lock.platform, "--quiet"]
        cmd += ["--custom-compile-command", "make lock", "-o", str(path(name))]
        (scratch / "constraints.txt").write_text("\n".join(UPPER_BOUNDS) + "\n")
        cmd += ["--constraint", str((scratch / "constraints.txt").relative_to(REPO))]
        if overrides(lock):
            (scratch / "overrides.txt").write_text("\n".join(overrides(lock)) + "\n")
            cmd += ["--override", str((scratch / "overrides.txt").relative_to(REPO))]
        if lock.torch == "cpu":
            cmd += torch_cpu_source()
        made = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if made.returncode != 0:
            hint = " (TORCH_CPU_WHEELS: a folder or index with it)" if lock.torch == "cpu" else ""
            raise SystemExit(f"cannot lock {name}{hint}:\n{made.stderr[-3000:]}")
        path(name).write_text(header(lock) + path(name).read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def locked(name: str) -> dict[str, str]:
    """{canonical name: version} of a lock file."""
    return {canonical(n): v for n, v in PINNED.findall(path(name).read_text())}


def problems(name: str, pyproject: Path = PYPROJECT) -> list[str]:
    """Why a lock does not match its inputs: a stale digest, a direct pin at another
    version, a line without a hash."""
    lock, text = LOCKS[name], path(name).read_text()
    if not text.startswith(header(lock, pyproject)):
        return [f"requirements/{name}.txt was not made from the current inputs: run make lock"]
    found, out = locked(name), []
    for line in requirements(lock, pyproject) + overrides(lock, pyproject):
        pin = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if pin and ";" not in line and not (lock.torch == "base" and pin.group(1) == "torch"):
            have = found.get(canonical(pin.group(1)))
            if have is None or have.partition("+")[0] != pin.group(2).partition("+")[0]:
                out.append(f"requirements/{name}.txt has {pin.group(1)} {have}, wants {line}")
    entries = re.split(r"\n(?=[^\s#])", text)  # a requirement with its hash and `via` lines
    unhashed = [e.split()[0] for e in entries if "==" in e.split("\n")[0] and "--hash=" not in e]
    out += [f"requirements/{name}.txt: {line} has no hash" for line in unhashed]
    return out


def venv_problems(name: str) -> list[str]:
    """How this interpreter's packages differ from a lock (pip and the project aside)."""
    want = locked(name)
    # the venv's own site-packages: sys.path may hold more (setuptools adds its vendored
    # packages when something builds in process, as AOTInductor does)
    where = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    found = importlib.metadata.distributions(path=where)
    have = {canonical(d.metadata["Name"]): d.version for d in found}
    for ignored in ("pip", "tandem"):
        have.pop(ignored, None)
    out = [f"{n} {v} is not in the lock" for n, v in sorted(have.items()) if n not in want]
    out += [f"{n} {v} is missing" for n, v in sorted(want.items()) if n not in have]
    out += [f"{n} {have[n]} is installed, the lock has {v}" for n, v in want.items()
            if n in have and have[n] != v]  # fmt: skip
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        out.append(f"pip check: {check.stdout.strip()}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"locks, of {', '.join(LOCKS)} (default: all)")
    parser.add_argument("--check", action="store_true", help="compare the locks with their inputs")
    parser.add_argument("--venv", choices=LOCKS, help="compare this interpreter with a lock")
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv program")
    args = parser.parse_args(argv)
    if args.venv:
        found = venv_problems(args.venv)
        hint = "(rm -rf the venv, then make setup)" if found else ""
        print("\n".join([*found, hint]).strip(), file=sys.stderr)
        return 1 if found else 0
    names = args.names or list(LOCKS)
    if unknown := [n for n in names if n not in LOCKS]:
        parser.error(f"no lock named {', '.join(unknown)} (there are {', '.join(LOCKS)})")
    if args.check:
        found = [p for name in names for p in problems(name)]
        print("\n".join(found), file=sys.stderr)
        return 1 if found else 0
    for name in names:
        compile_lock(name, args.uv)
        print(f"requirements/{name}.txt: {len(locked(name))} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
