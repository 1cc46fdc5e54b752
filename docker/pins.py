"""Print pyproject.toml's pinned requirements, so an image installs the project's versions
and the pins live in one place.

    python3 docker/pins.py pyproject.toml numpy onnxruntime    # those two, as pinned
    python3 docker/pins.py pyproject.toml --all --except torch  # every dependency but torch
    python3 docker/pins.py pyproject.toml --all --extra gpu     # and the `gpu` extra's pins
    python3 docker/pins.py pyproject.toml --constraints         # every pin, for `pip -c`
    python3 docker/pins.py pyproject.toml --installed torch     # fails unless torch is as pinned

A constraints file makes what the named packages pull in (protobuf, tqdm, ...) take the
project's versions too.

Standard library only: it runs in a bare base image before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

# A distribution name and its extras, at the start of a requirement line.
EXTRAS = re.compile(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?")


def canonical(name: str) -> str:
    """PEP 503 normalised name: `ai_edge_litert`, `AI-Edge-LiteRT` -> `ai-edge-litert`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject: Path, extras: tuple[str, ...] = ()) -> dict[str, str]:
    """{canonical name: requirement line} of [project] dependencies and of these extras
    ([project.optional-dependencies]); an unknown extra is an error."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(
            f"not an extra in pyproject.toml: {', '.join(unknown)} (it has {', '.join(optional)})"
        )
    found = {}
    for line in [*project["dependencies"], *(d for e in extras for d in optional[e])]:
        name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
        found[canonical(name)] = line
    return found


def select(pinned: dict[str, str], names: list[str], every: bool, skip: list[str]) -> list[str]:
    """The requirement lines for `names` (or all with `every`), less `skip`; an unknown name
    is an error, so an image never installs an unpinned package by a typo. A name with
    extras, `tritonclient[grpc]`, takes those extras instead of pyproject's."""
    extras = dict(EXTRAS.fullmatch(n).groups() for n in names)
    wanted = list(pinned) if every else [canonical(n) for n in extras]
    unknown = [n for n in [*wanted, *map(canonical, skip)] if n not in pinned]
    if unknown:
        raise SystemExit(f"not a dependency in pyproject.toml: {', '.join(unknown)}")
    asked = {canonical(n): e for n, e in extras.items() if e}
    dropped = {canonical(n) for n in skip}
    lines = []
    for name in (n for n in wanted if n not in dropped):
        head = EXTRAS.match(pinned[name])  # `tritonclient[http,grpc]` of `...==2.73.0`
        extras = asked.get(name, head.group(2) or "")
        lines.append(head.group(1) + extras + pinned[name][head.end() :])
    return lines


def check_installed(pinned: dict[str, str], names: list[str]) -> list[str]:
    """Why each named distribution is not installed at its pin (a local label such as
    `+cu126` aside: a CUDA build of the pinned release is that release)."""
    problems = []
    for name in map(canonical, names):
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
    parser.add_argument("names", nargs="*", help="distributions to print, as pinned there")
    parser.add_argument("--all", action="store_true", help="every dependency")
    parser.add_argument("--except", dest="skip", nargs="*", default=[], help="leave these out")
    parser.add_argument(
        "--extra",
        dest="extras",
        action="append",
        default=[],
        help="an optional-dependencies group whose pins count as dependencies (repeatable)",
    )
    parser.add_argument(
        "--constraints", action="store_true", help="every pin without extras (pip -c format)"
    )
    parser.add_argument(
        "--installed", action="store_true", help="check that the named ones are installed as pinned"
    )
    args = parser.parse_intermixed_args(argv)  # names may follow the options
    pinned = pins(args.pyproject, tuple(args.extras))
    if args.installed:
        select(pinned, args.names, False, [])  # an unknown name is an error here too
        problems = check_installed(pinned, args.names)
        print("\n".join(problems), file=sys.stderr)
        return 1 if problems else 0
    if args.constraints:
        print("\n".join(re.sub(r"\[.*?\]", "", line) for line in pinned.values()))
    elif args.names or args.all:
        print("\n".join(select(pinned, args.names, args.all, args.skip)))
    else:
        parser.error("name some distributions, or pass --all or --constraints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
