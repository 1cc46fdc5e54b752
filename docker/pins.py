"""Check that distributions an image did not install itself are at pyproject.toml's pins.

    python3 docker/pins.py pyproject.toml torch    # fails, saying why, unless torch is as pinned

The training image takes torch from its CUDA base (requirements/train-image.txt leaves it
out); this is the check that the base holds the release the project pins. Everything else an
image holds comes from its lock file, checked against its hashes by pip.

Standard library only: it runs in a base image before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path


def canonical(name: str) -> str:
    """PEP 503 normalised name: `ai_edge_litert`, `AI-Edge-LiteRT` -> `ai-edge-litert`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject: Path) -> dict[str, str]:
    """{canonical name: requirement line} of the dependencies and every extra."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    lines = [*project["dependencies"], *(line for extra in extras for line in extra)]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", line).group(0)): line for line in lines}


def check_installed(pinned: dict[str, str], names: list[str]) -> list[str]:
    """Why each named distribution is not installed at its pin (a local label such as
    `+cu126` aside: a CUDA build of the pinned release is that release)."""
    problems = []
    for name in map(canonical, names):
        if name not in pinned:
            problems.append(f"{name} is not a dependency in pyproject.toml")
            continue
        want = pinned[name].partition("==")[2]
        try:
            have = importlib.metadata.version(name).partition("+")[0]
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != want:
            found = f"{name} {have} is installed" if have else f"{name} is not installed"
            problems.append(f"{found}; pyproject.toml pins {pinned[name]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pyproject", type=Path, help="the project's pyproject.toml")
    parser.add_argument("names", nargs="+", help="distributions that must be as pinned there")
    args = parser.parse_args(argv)
    problems = check_installed(pins(args.pyproject), args.names)
    print("\n".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
