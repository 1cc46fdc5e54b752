"""The capacity plan (deploy/capacity.py): replicas per load from a bench report, written
into the table of docs/kubernetes.md and the manifests' maxReplicas (the autoscaler that
follows them: tests/test_deploy.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import HEADROOM, KSERVE_TRITON, capacity, manifests

ROOT = Path(__file__).resolve().parent.parent


def bench_fixture(triton_skipped: bool = False) -> dict:
    """A bench report shaped as `make bench` writes it (figures of this machine's runs)."""
    figures = {
        "tandem-v2-binary": [(1, 1780.0, 0.5, 1.2), (16, 5600.0, 2.8, 6.1)],
        "tandem-v2-json": [(1, 1400.0, 0.7, 1.6), (16, 2100.0, 7.5, 12.0)],
        "tandem-tfserving-rest": [(1, 1300.0, 0.8, 1.7), (16, 1900.0, 8.2, 13.5)],
        "triton": [(1, 240.0, 4.1, 7.9), (16, 1480.0, 10.6, 18.4)],
    }
    rows = [
        {"server": s, "concurrency": c, "req_per_s": rps, "p50_ms": p50, "p99_ms": p99,
         "server_cpu_ms_per_req": 0.5, "server_rss_mib": 410.0, "errors": 0}
        for s, runs in figures.items() for c, rps, p50, p99 in runs
    ]  # fmt: skip
    if triton_skipped:
        rows = [r for r in rows if r["server"] != "triton"]
        rows += [{"server": "triton", "concurrency": c, "req_per_s": None, "skipped": "no PyTriton"}
                 for c in (1, 16)]  # fmt: skip
    server = {"model": "torch.onnx", "server_cores": 1, "load_cores": 1, "seconds": 3.0}
    machine = {"cpu": "Intel(R) Xeon(R) Processor", "logical_cores": 2}
    return {"machine": machine, "quick": {}, "server": server | {"rows": rows}}


def test_plan_from_a_bench_report():
    plan = capacity.plan(capacity.snapshot(bench_fixture(), "fixture"))
    tandem, triton = plan["tandem-v2-binary"], plan["triton"]
    assert tandem["planned"] == pytest.approx(5600 * HEADROOM)
    assert tandem["replicas"] == {1_000: 1, 10_000: 3, 100_000: 26}  # ceil(n / 3920)
    assert triton["replicas"] == {1_000: 1, 10_000: 10, 100_000: 97}  # ceil(n / 1036)
    assert tandem["p99_ms"] == 6.1


def test_a_skipped_triton_says_so(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_fixture(triton_skipped=True)))
    snap = capacity.snapshot(json.loads(bench.read_text()), str(bench))
    assert "| triton | skipped: no PyTriton |" in capacity.table(snap)
    assert capacity.max_replicas(snap, "triton") is None
    out = subprocess.run(
        [sys.executable, "-m", "deploy.capacity", "--bench", str(bench)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    assert "skipped: no PyTriton" in out.stdout


def test_write_takes_a_new_bench_into_the_page_and_manifests(tmp_path):
    bench = bench_fixture(triton_skipped=True)
    for r in bench["server"]["rows"]:
        if (r["server"], r["concurrency"]) == ("tandem-v2-binary", 16):
            r["req_per_s"] = 4000.0  # planned 2800 per replica: 36 for 100k req/s
    page = tmp_path / "kubernetes.md"
    page.write_text(capacity.PAGE.read_text())
    copies = {path: tmp_path / path.name for path in capacity.SIZED_BY}
    for path, copy in copies.items():
        copy.write_text(path.read_text())
    snap = capacity.snapshot(bench, "bench.json")
    sized_by = {copies[p]: server for p, server in capacity.SIZED_BY.items()}
    capacity.write(snap, tmp_path / "snapshot.json", page, sized_by)
    assert json.loads((tmp_path / "snapshot.json").read_text()) == snap
    assert capacity.table(snap) in page.read_text()
    assert "| tandem-v2-binary | 4,000 | 6.1 | 2,800 | 1 | 4 | 36 |" in page.read_text()

    def max_replicas(path):
        spec = [d for d in manifests.load(path) if "maxReplicas" in str(d)][-1]["spec"]
        return spec.get("maxReplicas") or spec["predictor"]["maxReplicas"]

    for path, copy in copies.items():  # Triton's row is skipped: its manifest keeps its own
        expected = 36 if path != KSERVE_TRITON else max_replicas(path)
        assert max_replicas(copy) == expected, path.name


def test_page_table_is_the_computed_one():
    snap = json.loads(capacity.SNAPSHOT.read_text())
    page = capacity.PAGE.read_text()
    start = page.index(capacity.BEGIN) + len(capacity.BEGIN)
    assert page[start : page.index(capacity.END)].strip() == capacity.table(snap), (
        "docs/kubernetes.md's capacity table is stale: run `python -m deploy.capacity` on the "
        "snapshot, or `make capacity` on a new bench report"
    )
