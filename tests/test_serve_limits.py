"""The server against requests that are large or many: a live server on loopback, probed
as an attacker would, with bounded counts and time; memory, queues and the event loop stay
bounded. Clients that are slow or gone: tests/test_serve_connections.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import aiohttp
import numpy as np
import pytest
from serve_live import PAIR, VARIANTS, Live, rss_mib, seeded

pytestmark = pytest.mark.slow
SMALL, BIG = PAIR
MAX_IMAGES = 65535  # 16 MiB of 8x8 float32 images: the largest body the default limit takes


def v2_body(n: int, seed: int = 0) -> tuple[bytes, dict]:
    images = seeded(n, seed)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": list(images.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": images.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + images.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def json_body(n: int) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (n, 8, 8, 1))  # FP32 takes integers
    tensor = {"name": "images", "shape": list(pixels.shape), "datatype": "FP32"}
    return json.dumps({"inputs": [tensor | {"data": pixels.ravel().tolist()}]}).encode()


async def stream(url: str, model: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """One image at a time, back to back, until `stop`: what a normal client sees."""
    body, headers = v2_body(1)
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.post(
                f"{url}/v2/models/{model}/infer", data=body, headers=headers
            ) as answer:
                await answer.read()
                assert answer.status == 200, answer.status
            latencies.append(time.perf_counter() - started)


def post_many(url: str, body: bytes, headers: dict, count: int) -> list[tuple[int, str | None]]:
    """`count` concurrent POSTs of `body` (status, Retry-After), from another process, so
    that sending them never delays the measuring clients of this one."""

    def one(_: int) -> tuple[int, str | None]:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            conn.request("POST", f"/v2/models/{BIG}/infer", body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            return answer.status, answer.getheader("Retry-After")
        finally:
            conn.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


async def during(
    url: str, body: bytes, headers: dict, count: int, clients: int = 2
) -> tuple[list[float], list[float], list]:
    """Latencies of `clients` normal clients in the second before, and all the while,
    `count` POSTs of `body` run from another process; and those POSTs' answers."""
    stop, latencies = asyncio.Event(), []
    tasks = [asyncio.create_task(stream(url, SMALL, stop, latencies)) for _ in range(clients)]
    await asyncio.sleep(1.0)
    before, mark = list(latencies), len(latencies)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            answers = await loop.run_in_executor(pool, post_many, url, body, headers, count)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return before, latencies[mark:], answers


def test_a_huge_request_does_not_stall_other_models(pair, tmp_path):
    """One 16 MiB request (65,535 images) to one model while another model streams single
    images: it is split into max-batch chunks run off the event loop, so the small
    requests' worst latency stays under 100 ms (it was seconds when the whole request ran
    as one call, sometimes on the loop)."""

    body, headers = v2_body(MAX_IMAGES)
    seen = []  # (worst at rest, worst meanwhile) per attempt
    with Live(pair, "--golden", "none", log=tmp_path / "log") as server:
        # Up to 3 attempts: a server that blocks its loop does so every time (it stalled
        # for seconds on each try before), while another job's burst on a shared machine
        # does not repeat on cue.
        for _ in range(3):
            before, meanwhile, answers = asyncio.run(during(server.url, body, headers, 1))
            assert answers == [(200, None)]
            assert len(meanwhile) > 20, "the small clients were not served while it ran"
            seen.append((max(before), max(meanwhile)))
            # 100 ms over the worst latency the same clients saw at rest a moment before
            if seen[-1][1] < 0.1 + seen[-1][0]:
                break
    assert seen[-1][1] < 0.1 + seen[-1][0], seen


def test_json_bodies_are_parsed_off_the_loop_and_bounded(pair, tmp_path):
    """20 concurrent ~15 MiB JSON bodies: parsed two at a time in worker processes (a
    thread would hold the GIL, and so the event loop, for each whole parse), the rest
    refused with 503 + Retry-After once the in-flight cap is reached. A normal client keeps
    being served (it stalled 11.8 s before; measured here: 0.3 s on a loaded machine) and
    memory, the workers' included, stays bounded (measured: +400 MiB)."""
    body = json_body(int(15 * 2**20 / (64 * 4.5)))  # digits as text: ~4.5 bytes a number
    assert 13 * 2**20 < len(body) < 16 * 2**20

    with Live(pair, "--golden", "none", "--max-inflight-mb", "128", log=tmp_path / "log") as server:
        start = rss_mib(server.proc.pid)
        _, meanwhile, answers = asyncio.run(during(server.url, body, {}, 20))
        grown = rss_mib(server.proc.pid) - start
    statuses = [s for s, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 2, statuses
    assert all(retry == "1" for s, retry in answers if s == 503)
    assert max(meanwhile) < 1.0, max(meanwhile)
    assert grown < 1024, f"RSS grew {grown:.0f} MiB"


def test_memory_stays_bounded_after_maximal_requests(serve_root, tmp_path):
    """One maximal request (65,535 images) to every variant. Before, each left ~1.1 GB of
    runtime buffers resident for good (12 models: 1.0 -> 11.3 GB); split into max-batch
    chunks, no runtime ever sees more than 64 images. Measured here: +286 MiB over the 21
    variants of seven formats (952 -> 1238 MiB); the bound, +768 MiB, leaves a wide margin."""
    body, headers = v2_body(MAX_IMAGES)
    names = sorted(p.name for p in (serve_root / "repo").iterdir())

    async def every():
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name in names:
                url = f"{server.url}/v2/models/{name}/infer"
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status)

    with Live(serve_root / "repo", "--golden", "none", log=tmp_path / "log") as server:
        start = rss_mib(server.proc.pid)
        asyncio.run(every())
        grown = rss_mib(server.proc.pid) - start
    assert sorted(names) == sorted(VARIANTS)
    assert grown < 768, f"RSS grew {grown:.0f} MiB after {len(names)} maximal requests"


def test_a_full_queue_answers_503_with_retry_after(pair, tmp_path):
    async def run():
        big, big_headers = v2_body(MAX_IMAGES)
        small, small_headers = v2_body(1)
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/v2/models/{BIG}/infer"
            first = asyncio.create_task(session.post(url, data=big, headers=big_headers))
            await asyncio.sleep(0.5)  # the big one is queued (seconds of work)
            async with session.post(url, data=small, headers=small_headers) as r:
                second = r.status, r.headers.get("Retry-After"), await r.json()
            async with await first as r:
                return (r.status, await r.read()), second

    flags = ("--golden", "none", "--max-queue", "1")
    with Live(pair, *flags, log=tmp_path / "log") as server:
        (status, _), (busy, retry, body) = asyncio.run(run())
    assert status == 200
    assert busy == 503 and retry == "1" and "busy" in body["error"], body
