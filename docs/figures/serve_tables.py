"""The serving figure README.md quotes: tandem's req/s over the bare endpoint of each
protocol (benchmarks/stages.py), from the bench's server section where the capacity plan
reads it."""

from __future__ import annotations

from benchmarks import stages
from docs.figures.tables import CAPACITY_FILE


def headline(snap: dict) -> str:
    server = snap["server"]
    table = "\n".join(stages.headline_md(server)).strip()
    return (
        f"{table}\n\n*`{server['model']}`, one image per request, server on one core; from "
        f"{snap['source']}; snapshot `{CAPACITY_FILE}`. Where each microsecond goes: "
        "[Benchmarks](docs/benchmarks.md).*"
    )
