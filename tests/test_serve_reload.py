"""Reload and unload while clients infer: no request is ever failed by it.

The server's own ASGI app, in process (real runtimes, real batcher threads): 16 clients
infer on one variant of every format while each is reloaded from disk and unloaded and
loaded again, over and over. Before, the old batcher's thread pool was shut down under
requests still holding it: 94 of 17,791 answers were 500s."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import numpy as np
import pytest
from serve_live import subset

from contract.formats import EDGE_FORMATS, FORMAT_NAMES
from contract.names import variant_name
from serve.app import create_app
from serve.config import ServeConfig

pytestmark = pytest.mark.slow
NAMES = [variant_name("torch", f) for f in FORMAT_NAMES if f not in EDGE_FORMATS]  # served ones
CLIENTS = 16
CYCLES = 3


def body(seed: int) -> tuple[bytes, dict]:
    images = np.random.default_rng(seed).uniform(0, 255, (2, 8, 8, 1)).astype(np.float32)
    tensor = {"name": "images", "shape": [2, 8, 8, 1], "datatype": "FP32"}
    header = json.dumps(
        {"inputs": [tensor | {"parameters": {"binary_data_size": images.nbytes}}]}
    ).encode()
    return header + images.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


async def clients(app, stop: asyncio.Event) -> Counter:
    answers: Counter = Counter()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tandem") as client:

        async def one(i: int) -> None:
            data, headers = body(i)
            while not stop.is_set():
                name = NAMES[i % len(NAMES)]
                r = await client.post(f"/v2/models/{name}/infer", content=data, headers=headers)
                reason = r.json().get("error", "") if r.status_code != 200 else ""
                answers[(r.status_code, "unloaded" in reason or "not ready" in reason)] += 1
                await asyncio.sleep(0)

        await asyncio.gather(*(one(i) for i in range(CLIENTS)))
    return answers


async def churn(server, stop: asyncio.Event) -> int:
    """Reload every variant, then unload and load it again, CYCLES times."""
    done = 0
    try:
        for _ in range(CYCLES):
            for name in NAMES:
                assert (await asyncio.to_thread(server.reload, name)).ready
                server.unload(name)
                await asyncio.sleep(0.01)
                assert (await asyncio.to_thread(server.reload, name)).ready
                done += 1
    finally:
        stop.set()
    return done


def test_reload_and_unload_never_fail_a_request(serve_root, tmp_path):
    repo = subset(serve_root / "repo", tmp_path / "repo", NAMES)
    app = create_app(ServeConfig(repository=repo, golden=None, threads=1))
    server = app.registry
    server.load_all()
    assert not server.not_ready(), server.not_ready()

    async def run():
        stop = asyncio.Event()
        return await asyncio.gather(clients(app, stop), churn(server, stop))

    answers, cycles = asyncio.run(run())
    server.close()
    assert cycles == CYCLES * len(NAMES)
    ok = answers[(200, False)]
    # Only two answers are allowed: the logits, or 503 "unloaded/not ready" while a
    # variant is out (between an unload and its load). Never a 500.
    assert set(answers) <= {(200, False), (503, True)}, answers
    assert ok > 10 * len(NAMES), answers
