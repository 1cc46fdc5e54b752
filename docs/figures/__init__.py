"""Every table of measured figures in README.md and docs/*.md, written between markers from
committed snapshots of the reports it quotes, never typed by hand.

    python -m docs.figures              # rewrite every block from the snapshots (make figures)
    python -m docs.figures --check      # exit 1, naming each block that differs
    python -m docs.figures --refresh    # after a real run: the reports -> snapshots, then rewrite

A block is `<!-- figures:NAME -->` ... `<!-- /figures:NAME -->`, NAME a key of BLOCKS. The
snapshots are the JSON files beside this module, each holding the run it came from
(`provenance`: commands, date, machine, commit), which every block prints under its table.
The capacity plan reads deploy/bench-snapshot.json, the snapshot `make capacity` keeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from docs.figures import data_tables, diagnose_tables, serve_tables, tables

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent.relative_to(ROOT)  # docs/figures
# A block's markers are whole lines.
BLOCK = re.compile(
    r"^<!-- figures:(?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- /figures:(?P=name) -->$", re.S | re.M
)
OPENING = re.compile(r"^<!-- figures:([\w-]+) -->$", re.M)

# Block name -> (the snapshot it reads, its renderer).
BLOCKS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "demo": ("parity", tables.demo),
    "parity": ("parity", tables.parity_formats),
    "train": ("train", tables.train),
    "lockstep": ("lockstep", tables.lockstep),
    "export": ("bench", tables.export),
    "bench-runtimes": ("bench", tables.bench_runtimes),
    "bench-trainers": ("bench", tables.bench_trainers),
    "bench-server": ("capacity", tables.bench_server),
    "serve-headline": ("capacity", serve_tables.headline),
    "capacity": ("capacity", tables.capacity),
    "serve": ("serve_bench", tables.serve),
    "browser": ("browser_bench", tables.browser),
    "browser-site": ("browser_bench", tables.browser_site),
    "photos": ("photos", data_tables.photos),
    "bench-data": ("bench", data_tables.bench_data),
    "bug-example": ("bug_example", diagnose_tables.bug_example),
    # computed from the code, not measured: the CNN CNNSpec.for_data builds for each size
    "cnn": (tables.CODE, data_tables.cnn_sizes),
}


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def snapshot_path(name: str, root: Path = ROOT) -> Path:
    return root / (tables.CAPACITY_FILE if name == "capacity" else HERE / f"{name}.json")


def load(root: Path = ROOT) -> dict[str, dict]:
    """{snapshot name: its JSON}, for the snapshots the blocks read."""
    names = {snap for snap, _ in BLOCKS.values()} - {tables.CODE}
    snaps = {name: json.loads(snapshot_path(name, root).read_text()) for name in sorted(names)}
    return {**snaps, tables.CODE: {}}


def block(name: str, snaps: dict[str, dict]) -> str:
    snap, render = BLOCKS[name]
    try:
        body = render(snaps[snap])
    except KeyError as missing:  # a snapshot from a run that did not measure this block
        raise ValueError(
            f"figures:{name}: {snapshot_path(snap).relative_to(ROOT)} has no {missing}: "
            "run `make bench` (full), then `make figures ARGS=--refresh`"
        ) from None
    return f"<!-- figures:{name} -->\n{body}\n<!-- /figures:{name} -->"


def render(text: str, snaps: dict[str, dict], page: str = "page") -> str:
    """`text` with every block rewritten from the snapshots."""
    unknown = set(OPENING.findall(text)) - set(BLOCKS)
    if unknown:
        raise ValueError(f"{page}: unknown figures block(s) {sorted(unknown)}, known: {[*BLOCKS]}")
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise ValueError(f"{page}: a figures block's opening marker without its closing one")
    return BLOCK.sub(lambda m: block(m["name"], snaps), text)


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite every page's blocks; the pages that changed."""
    snaps, changed = load(root), []
    for path in pages(root):
        text = path.read_text()
        new = render(text, snaps, str(path.relative_to(root)))
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def check(root: Path = ROOT) -> list[str]:
    """What differs from what the snapshots give, one line per block (empty: all equal)."""
    snaps, problems, seen = load(root), [], set()
    for path in pages(root):
        page, text = str(path.relative_to(root)), path.read_text()
        render(text, snaps, page)  # unknown or unclosed blocks raise, naming the page
        for m in BLOCK.finditer(text):
            seen.add(m["name"])
            want = block(m["name"], snaps)
            if m[0] != want:
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{page}:{line}: figures:{m['name']} {difference(m[0], want)}")
    problems += [f"figures:{name} is on no page" for name in BLOCKS if name not in seen]
    if snaps["bench"]["machine"] != snaps["capacity"]["machine"]:
        problems.append(
            f"{snapshot_path('bench', root).relative_to(root)} and {tables.CAPACITY_FILE} come "
            "from different runs of `make bench`: `make figures ARGS=--refresh` takes both"
        )
    return problems


def difference(found: str, wanted: str) -> str:
    """Where a block first differs from what its snapshot gives."""
    pairs = zip(found.splitlines(), wanted.splitlines(), strict=False)
    for i, (a, b) in enumerate(pairs):
        if a != b:
            return f"differs at its line {i}: {a!r}, where its snapshot gives {b!r}"
    return "has other lines than its snapshot gives"
