"""The server section: tandem's three HTTP protocols beside Triton, LitServe, a bare ASGI
V2 endpoint and a no-op endpoint, on the same ONNX file, in one run.

Every server is up at once, pinned to core 0 (peers.SERVER_CORE); the load generator
(aiohttp, this process) runs on core 1. One image per request at c=1 and c=16, rounds
alternating over the servers, best round kept (other work on the machine can only slow a
round down). A server that does not start gets rows with `req_per_s: null` and the reason
under `skipped`, never a missing row. Then the headline, tandem over the bare endpoint of
each protocol, and where each request's server CPU goes, stage by stage, tandem's beside
the bare endpoints' (benchmarks/stages.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import peers, stages
from benchmarks.server import free_port, http_sender, load, v2_binary

CONCURRENCY = (1, 16)
LOAD_CORE = 1
# Row name -> the server process that answers it. tandem's three protocols share one server.
ROWS = {
    "tandem-v2-binary": "tandem",
    "tandem-v2-json": "tandem",
    "tandem-tfserving-rest": "tandem",
    "triton": "triton",
    "litserve": "litserve",
    "bare-asgi-v2": "bare-asgi-v2",
    "bare-asgi-v2-json": "bare-asgi-v2-json",
    "noop": "noop",
}


def tandem_launch(variant: Path, root: Path) -> peers.Launch:
    """`python -m serve` on a repository holding only `variant` (a copy: the server
    refuses a variant folder that links outside its repository)."""
    shutil.copytree(variant, root / variant.name)
    cmd = [sys.executable, "-m", "serve", "--repository", str(root), "--golden", "none"]
    return peers.Launch(cmd)


def requests(model: str, images: np.ndarray) -> dict[str, tuple[str, bytes, dict]]:
    """Row name -> (path, body, headers): one image, in each server's own protocol."""
    binary, binary_headers = v2_binary(images)
    v2_json = {"inputs": [{"name": "images", "datatype": "FP32", "shape": list(images.shape)}]}
    v2_json["inputs"][0]["data"] = images.ravel().tolist()
    as_json = {"Content-Type": "application/json"}
    nested = images.tolist()
    return {
        "tandem-v2-binary": (f"/v2/models/{model}/infer", binary, binary_headers),
        "tandem-v2-json": (f"/v2/models/{model}/infer", json.dumps(v2_json).encode(), as_json),
        "tandem-tfserving-rest": (
            f"/v1/models/{model}:predict",
            json.dumps({"instances": nested}).encode(),
            as_json,
        ),
        "triton": ("/v2/models/model/infer", binary, binary_headers),
        "litserve": ("/predict", json.dumps({"images": nested}).encode(), as_json),
        "bare-asgi-v2": ("/v2/models/model/infer", binary, binary_headers),
        "bare-asgi-v2-json": (
            "/v2/models/model/infer",
            json.dumps(v2_json).encode(),
            as_json,
        ),
        "noop": ("/noop", binary, binary_headers),
    }


async def wait_ready(session, proc: peers.Process, timeout: float) -> str:
    """'' once the health path answers 200; else why not."""
    import aiohttp

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if why := proc.exited():
            return why
        try:
            async with session.get(proc.url + proc.launch.health) as r:
                if r.status == 200:
                    return ""
        except (aiohttp.ClientError, OSError):  # not listening yet, or closed on us
            pass
        await asyncio.sleep(0.25)
    return f"not ready after {timeout:.0f} s"


async def measure_all(
    launches: dict[str, peers.Launch | str],
    images: np.ndarray,
    model: str,
    seconds: float,
    rounds: int,
    start_timeout: float = 120.0,
) -> dict:
    """`launches`: process name -> how to start it, or why it cannot run (a string).
    {"rows": one per row and concurrency, "stages": benchmarks/stages.py's breakdown}."""
    import aiohttp

    skipped = {name: why for name, why in launches.items() if isinstance(why, str)}
    procs = {
        n: peers.Process(launch, free_port()) for n, launch in launches.items() if n not in skipped
    }
    best: dict[tuple[str, int], dict] = {}
    breakdown: dict = {"skipped": "not measured"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            waits = [wait_ready(session, p, start_timeout) for p in procs.values()]
            for name, why in zip(list(procs), await asyncio.gather(*waits), strict=True):
                if why:
                    skipped[name] = f"did not start: {why}"
                    procs.pop(name).stop()
            senders = {}
            for row, (path, body, headers) in requests(model, images).items():
                if ROWS[row] in procs:
                    url = procs[ROWS[row]].url + path
                    senders[row] = failing_as_error(http_sender(session, url, body, headers))
            # Every server warmed once before any is timed: without it the first row timed
            # after start-up ran at half the rate of the same server's later rows, whichever
            # row came first (tandem's V2 binary or V2 JSON, swapped to check).
            for send in senders.values():
                await load(send, 16, 4000, min(1.0, 2 * seconds))
            for _ in range(rounds):
                for row, send in senders.items():
                    # Also replaces the pooled connections a server closed while the others
                    # were measured (keep-alive timeouts): their resets land here, untimed.
                    await load(send, 16, 2000, min(0.5, seconds))
                    for concurrency in CONCURRENCY:
                        run = await timed(send, procs[ROWS[row]].proc.pid, concurrency, seconds)
                        if run["req_per_s"] > best.get((row, concurrency), {}).get("req_per_s", -1):
                            best[row, concurrency] = run
            pids = {row: procs[ROWS[row]].proc.pid for row in senders}
            breakdown = await stages.breakdown(senders, pids, seconds)
    finally:
        for proc in procs.values():
            proc.stop()
    rows = [
        {"server": row}
        | (best.get((row, c)) or skipped_row(c, skipped.get(ROWS[row], "not measured")))
        for row in ROWS
        for c in CONCURRENCY
    ]
    return {"rows": rows, "stages": breakdown}


def failing_as_error(send: Callable) -> Callable:
    """A request the connection fails (reset, timeout) counts as an error, not a crash."""
    import aiohttp

    async def guarded() -> bool:
        try:
            return await send()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    return guarded


async def timed(send: Callable, session_id: int, concurrency: int, seconds: float) -> dict:
    used = peers.group_cpu_seconds(session_id)
    run = await load(send, concurrency, 10**9, seconds)
    used = peers.group_cpu_seconds(session_id) - used
    return {
        "concurrency": concurrency,
        "req_per_s": run["req_per_s"],
        "p50_ms": run["p50_ms"],
        "p99_ms": run["p99_ms"],
        "server_cpu_ms_per_req": round(used / max(run["requests"], 1) * 1e3, 4),
        "server_rss_mib": round(peers.group_rss_mib(session_id), 1),
        "errors": run["errors"],
        "requests": run["requests"],
    }


def skipped_row(concurrency: int, why: str) -> dict:
    return {
        "concurrency": concurrency,
        "req_per_s": None,
        "p50_ms": None,
        "p99_ms": None,
        "server_cpu_ms_per_req": None,
        "server_rss_mib": None,
        "errors": None,
        "skipped": why,
    }


def peer_launches(model_file: Path, install: bool) -> dict[str, peers.Launch | str]:
    """Triton and LitServe from the peers' venv (made here when `install`), else the
    reason they cannot run; the bare endpoints always."""
    try:
        python = peers.peers_python(install=install)
        launches: dict[str, peers.Launch | str] = peers.peer_launches(python, model_file)
    except (peers.VenvError, OSError) as e:
        launches = dict.fromkeys(("triton", "litserve"), f"no peers venv: {e}")
    return launches | peers.asgi_launches(model_file)


def section(repository: Path, model: str, seconds: float, rounds: int, install_peers: bool) -> dict:
    variant = repository / model
    manifest = json.loads((variant / "manifest.json").read_text())
    model_file = variant / manifest["artifact"]
    shape = manifest["input"]["shape"][1:]
    images = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype(np.float32)
    launches = peer_launches(model_file, install_peers)
    affinity = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory(prefix="bench-repo-") as root:
        launches = {"tandem": tandem_launch(variant, Path(root)), **launches}
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {LOAD_CORE})
        try:
            measured = asyncio.run(measure_all(launches, images, model, seconds, rounds))
        finally:
            os.sched_setaffinity(0, affinity)
    rows = measured["rows"]
    return {
        "model": model,
        "server_cores": 1,
        "load_cores": 1,
        "pinned": (os.cpu_count() or 1) > 1,
        "seconds": seconds,
        "rounds": rounds,
        "image_shape": shape,
        "rows": rows,
        "headline": stages.headline({"rows": rows}),
        "stages": measured["stages"],
    }
