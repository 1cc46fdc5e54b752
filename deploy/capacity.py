"""python -m deploy.capacity: how many serving replicas (one core each) a request rate needs,
from the server benchmark of `make bench` (artifacts/reports/bench.json, section `server`).

    python -m deploy.capacity                    # the plan from deploy/bench-snapshot.json
    python -m deploy.capacity --write            # ... and into docs/kubernetes.md and manifests
    python -m deploy.capacity --bench artifacts/reports/bench.json --write
        # take that report's figures into the snapshot, then rewrite the page's table and
        # the manifests' maxReplicas from them (`make capacity`)

The bench serves from one process pinned to one core, so its req/s at c=16 is the rate per
core. Each replica requests one core and is planned at HEADROOM of that rate; the
autoscaler's CPU target is the same share.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from contract.files import write_json_atomic, write_text_atomic
from contract.paths import REPORTS
from deploy import (
    HEADROOM,
    HERE,
    KSERVE_CANARY,
    KSERVE_TANDEM,
    KSERVE_TRITON,
    KUBERNETES,
    LOADS,
)

BENCH = REPORTS / "bench.json"
SNAPSHOT = HERE / "bench-snapshot.json"
# The page that shows the plan, between the markers python -m docs.figures also writes.
PAGE = HERE.parent / "docs" / "kubernetes.md"
BEGIN, END = "<!-- figures:capacity -->", "<!-- /figures:capacity -->"
CONCURRENCY = 16
# The bench's rows the plan shows: tandem's three HTTP protocols and the Triton peer.
SERVERS = ("tandem-v2-binary", "tandem-v2-json", "tandem-tfserving-rest", "triton")
# Whose plan sizes each manifest's maxReplicas (for the largest load).
SIZED_BY = {
    KUBERNETES: "tandem-v2-binary",
    KSERVE_TANDEM: "tandem-v2-binary",
    KSERVE_CANARY: "tandem-v2-binary",
    KSERVE_TRITON: "triton",
}


def snapshot(bench: dict, source: str) -> dict:
    """What the plan reads from a bench report."""
    return {"source": source, "machine": bench["machine"], "server": bench["server"]}


def row(snap: dict, server: str) -> dict | None:
    """The bench row of `server` at c=16, or None if the bench has none."""
    rows = snap["server"]["rows"]
    return next(
        (r for r in rows if r["server"] == server and r["concurrency"] == CONCURRENCY), None
    )


def plan(snap: dict) -> dict[str, dict]:
    """{server: {per_core, p99_ms, planned, replicas: {load: n}} or {skipped: why}}."""
    cores = snap["server"]["server_cores"]
    out = {}
    for server in SERVERS:
        r = row(snap, server)
        if r is None or r.get("req_per_s") is None:
            out[server] = {"skipped": (r or {}).get("skipped", "not in the bench report")}
            continue
        per_core = r["req_per_s"] / cores
        planned = per_core * HEADROOM
        replicas = {load: math.ceil(load / planned) for load in LOADS}
        out[server] = {"per_core": per_core, "p99_ms": r["p99_ms"], "planned": planned}
        out[server]["replicas"] = replicas
    return out


def table(snap: dict) -> str:
    """The capacity table (markdown), with where its figures come from."""
    machine, bench = snap["machine"], snap["server"]
    head = "| server | req/s per core, c=16 | p99 ms, c=16 | planned req/s per replica |"
    head += "".join(f" replicas (= cores) for {load:,} req/s |" for load in LOADS)
    lines = [head, "|---" * (4 + len(LOADS)) + "|"]
    for server, p in plan(snap).items():
        if "skipped" in p:
            lines.append(f"| {server} | skipped: {p['skipped']} |" + " - |" * (2 + len(LOADS)))
            continue
        p99 = "not recorded" if p["p99_ms"] is None else f"{p['p99_ms']:.1f}"
        cells = [f"{p['per_core']:,.0f}", p99, f"{p['planned']:,.0f}"]
        cells += [str(p["replicas"][load]) for load in LOADS]
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    note = (
        f"From {snap['source']}: model `{bench['model']}`, 1 image per request; server "
        f"pinned to {bench['server_cores']} core, load generator to {bench['load_cores']}, of "
        f"{machine['logical_cores']} logical cores ({machine['cpu']}); {bench['seconds']:g} s "
        f"per run. Planned at {HEADROOM:.0%} of the measured rate per core (headroom for "
        f"bursts and for the autoscaler to react); HPA CPU target {hpa_target()}% of the one "
        f"core each replica requests."
    )
    return "\n".join(lines) + "\n\n" + note


def hpa_target() -> int:
    """averageUtilization, percent of the requested core: the planned share of it."""
    return round(HEADROOM * 100)


def max_replicas(snap: dict, server: str) -> int | None:
    """A manifest's maxReplicas: what the plan's largest load needs (None: skipped)."""
    p = plan(snap)[server]
    return None if "skipped" in p else p["replicas"][max(LOADS)]


def write(
    snap: dict, snapshot_file: Path = SNAPSHOT, page_file: Path = PAGE, sized_by=SIZED_BY
) -> None:
    """The snapshot, the page's table and the manifests' maxReplicas, from `snap`."""
    write_json_atomic(snapshot_file, snap)
    page = page_file.read_text()
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    write_text_atomic(page_file, page[:start] + "\n" + table(snap) + "\n" + page[end:])
    for path, server in sized_by.items():
        n = max_replicas(snap, server)
        if n is not None:
            sized = re.sub(r"(?m)^(\s*maxReplicas: )\d+$", rf"\g<1>{n}", path.read_text())
            write_text_atomic(path, sized)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, help=f"a bench report (`make bench`: {BENCH})")
    parser.add_argument(
        "--write", action="store_true", help="update the snapshot, the page and manifests"
    )
    args = parser.parse_args(argv)
    if args.bench:
        snap = snapshot(json.loads(args.bench.read_text()), str(args.bench))
    else:
        snap = json.loads(SNAPSHOT.read_text())
    print(table(snap))
    if args.write:
        write(snap)
        print(f"wrote {SNAPSHOT}, the table in {PAGE}, maxReplicas in the manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
