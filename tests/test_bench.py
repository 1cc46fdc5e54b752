"""`make bench`: the report from a real quick run on a tiny repository, the peers' venv
refusal, and a peer that cannot start. Figures are never asserted, only their presence and
that bench.md's ratios are computed from bench.json's figures."""

from __future__ import annotations

import json
import re
import sys

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import export_time, peers, report, serving, stages
from contract import datasets
from export import matrix
from train.__main__ import run
from train.config import TrainConfig

SERVERS = (
    "tandem-v2-binary",
    "tandem-v2-json",
    "tandem-tfserving-rest",
    "triton",
    "litserve",
    "bare-asgi-v2",
    "bare-asgi-v2-json",
    "noop",
)  # fmt: skip - the contract the capacity plan reads


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A torch checkpoint (6 steps) and its ONNX variant: the least the bench runs on."""
    root = tmp_path_factory.mktemp("bench")
    cfg = TrainConfig(out=root / "checkpoints", epochs=1, max_steps=6, quiet=True)
    run(cfg, "torch", datasets.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed))
    matrix.export_all(["torch"], ["onnx"], root / "checkpoints", root / "repository")
    return root


@pytest.fixture(scope="module")
def quick_run(tiny):
    """`python -m benchmarks --quick` on it, every section; the export section exports
    ONNX only, to stay fast."""
    patch = pytest.MonkeyPatch()
    patch.setattr(export_time, "QUICK_FORMATS", ("onnx",))
    out = tiny / "reports"
    argv = ["--quick", "--repository", str(tiny / "repository"), "--out", str(out)]
    try:
        assert bench_main.main([*argv, "--checkpoints", str(tiny / "checkpoints")]) == 0
    finally:
        patch.undo()
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text(), out


@pytest.mark.slow  # trains, exports, runs every section (~1.5 min on 2 cores)
def test_quick_run_writes_every_section(quick_run):
    bench, text, out = quick_run
    assert bench["quick"] is True
    assert {"cpu", "logical_cores", "versions"} <= set(bench["machine"])
    assert [r["variant"] for r in bench["runtimes"]["rows"]] == ["torch.onnx"]
    row = bench["runtimes"]["rows"][0]
    assert row["harness_over_raw"] > 0 and set(row["images_per_s"]) == {"1", "8", "64", "256"}
    assert set(bench["trainers"]["cpu"]["images_per_s"]) == {"torch", "keras-fit", "keras-tape"}
    assert (
        bench["trainers"]["cuda"] == {"skipped": "no CUDA GPU"}
        or "rows" in bench["trainers"]["cuda"]
    )
    assert set(bench["export"]["formats"]) == {"onnx"} and bench["export"]["total_seconds"] > 0
    for name in report.PLOTS.values():
        assert (out / name).stat().st_size > 0
    for section in ("## Runtimes", "## Trainers", "## Export", "## Server"):
        assert section in text


@pytest.mark.slow  # trains, exports, runs every section (~1.5 min on 2 cores)
def test_server_section_keeps_the_contract(quick_run):
    server = quick_run[0]["server"]
    assert server["model"] == "torch.onnx"
    assert (server["server_cores"], server["load_cores"]) == (1, 1)
    assert [(r["server"], r["concurrency"]) for r in server["rows"]] == [
        (s, c) for s in SERVERS for c in (1, 16)
    ]
    keys = {"req_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "server_rss_mib", "errors"}
    for r in server["rows"]:
        assert keys <= set(r)
        if r["req_per_s"] is None:
            assert r["skipped"], r
        else:
            assert r["req_per_s"] > 0 and r["errors"] == 0, r
    measured = {r["server"] for r in server["rows"] if r["req_per_s"] is not None}
    assert {"tandem-v2-binary", "tandem-v2-json", "tandem-tfserving-rest", "noop"} <= measured


@pytest.mark.slow  # trains, exports, runs every section (~1.5 min on 2 cores)
def test_markdown_ratios_come_from_the_json(quick_run):
    bench, text, _ = quick_run
    assert report.markdown(bench) == text
    by = {(r["server"], r["concurrency"]): r["req_per_s"] for r in bench["server"]["rows"]}
    table = re.search(r"\| c \| triton .*?\n\|---.*?\n((?:\|.*\n)+)", text).group(1)
    for line in table.strip().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        c = int(cells[0])
        for peer, cell in zip(report.PEERS, cells[1:], strict=True):
            want = report.ratio(by[("tandem-v2-binary", c)], by[(peer, c)])
            assert cell == report.fmt(want, 2), (peer, c)
    row = bench["runtimes"]["rows"][0]
    assert f"| {row['harness_over_raw']:.3f} |" in text


@pytest.mark.slow  # trains, exports, runs every section (~1.5 min on 2 cores)
def test_quick_run_breaks_every_row_down(quick_run):
    server = quick_run[0]["server"]
    assert [(h["server"], h["over"]) for h in server["headline"]] == list(stages.HEADLINE)
    breakdown = server["stages"]
    assert list(breakdown) == list(stages.ROWS), breakdown
    for row in stages.ROWS:
        for c in ("c1", "c16"):
            part = breakdown[row][c]
            assert part["samples"] > 0 and set(part["us"]) == set(stages.STAGES)
            # the stages split the measured CPU per request, nothing more, nothing less
            assert sum(part["us"].values()) == pytest.approx(part["cpu_us_per_request"], abs=1.0)
        assert breakdown[row]["c16"]["us"]["runtime"] > 0, "ONNX Runtime's call was seen"
    assert "Server CPU per request by stage" in quick_run[1]


def test_peers_venv_is_refused_unless_its_stamp_matches(tmp_path):
    venv, lock = tmp_path / "venv", tmp_path / "peers.txt"
    lock.write_text(peers.LOCK.read_text())
    with pytest.raises(peers.VenvError, match="not built"):
        peers.peers_python(venv, lock, install=False)
    (venv / "bin").mkdir(parents=True)
    # an older lock: rebuilt, not used
    (venv / peers.STAMP).write_text(lock.read_text().replace("0.7.0", "0.6.0"))
    with pytest.raises(peers.VenvError, match="not built"):
        peers.peers_python(venv, lock, install=False)
    (venv / peers.STAMP).write_text(lock.read_text())
    assert peers.peers_python(venv, lock, install=False) == venv / "bin" / "python"
    with pytest.raises(peers.VenvError, match="no tritonserver"):
        peers.tritonserver(venv)


def test_a_peer_that_fails_to_start_gets_skipped_rows(tmp_path):
    import asyncio

    import numpy as np

    launches = dict.fromkeys(serving.ROWS.values(), "not in this test")
    launches["triton"] = peers.Launch([sys.executable, "-c", "import sys; sys.exit(1)"])
    launches["noop"] = peers.asgi_launches(tmp_path / "unused.onnx")["noop"]
    images = np.zeros((1, 8, 8, 1), np.float32)
    rows = asyncio.run(serving.measure_all(launches, images, "m", seconds=0.2, rounds=1))["rows"]
    by = {(r["server"], r["concurrency"]): r for r in rows}
    assert len(rows) == 2 * len(SERVERS) and {s for s, _ in by} == set(SERVERS)
    for c in (1, 16):
        assert by["triton", c]["req_per_s"] is None
        assert by["triton", c]["skipped"].startswith("did not start: exited 1"), by["triton", c]
        assert by["litserve", c]["skipped"] == "not in this test"
        assert by["noop", c]["req_per_s"] > 0 and by["noop", c]["errors"] == 0


def test_gpu_check_needs_a_gpu_and_says_so(tmp_path, capsys):
    """make gpu-check on a machine without one: a clear refusal, exit 2, no report."""
    import torch

    from benchmarks import gpu_check

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make gpu-check runs for real here")
    assert gpu_check.main(["--out", str(tmp_path / "gpu_check.json")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()
