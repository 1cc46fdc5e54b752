"""The server against clients that are large, slow, many or gone: a live server on
loopback, probed as an attacker would, with bounded counts and time."""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import signal
import socket
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from serve_live import VARIANTS, Live, subset

pytestmark = pytest.mark.slow
SMALL, BIG = "torch.tflite", "torch.onnx"
MAX_IMAGES = 65535  # 16 MiB of 8x8 float32 images: the largest body the default limit takes


def v2_body(n: int, seed: int = 0) -> tuple[bytes, dict]:
    images = np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 1)).astype(np.float32)
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


def rss_mib(pid: int) -> float:
    """Resident memory of the server and its worker processes, in MiB."""
    total = 0.0
    for p in [pid, *children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


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


@pytest.fixture(scope="module")
def pair(serve_root, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("limits")
    return subset(serve_root / "repo", tmp / "repo", [BIG, SMALL])


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


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_slow_and_idle_connections_are_closed(pair, tmp_path):
    """Slowloris (headers a byte at a time), idle sockets past the connection cap, and a
    body that never finishes: each is closed within its deadline, and normal clients are
    served all along."""
    flags = ("--golden", "none", "--header-timeout-s", "1", "--body-timeout-s", "2")
    flags += ("--max-connections", "20")
    with Live(pair, *flags, log=tmp_path / "log") as server:
        slow = [raw(server.port) for _ in range(10)]
        for sock in slow:
            sock.sendall(b"POST /v2/models/torch.onnx/infer HTTP/1.1\r\nHost: x\r\n")
        idle = [raw(server.port) for _ in range(30)]  # 40 open: 20 over the cap
        started = time.monotonic()
        for _ in range(50):  # refused while the cap is full, served once deadlines free it
            status, _ = get_quietly(server)
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, "normal clients never got back in"
        assert all(closed(s) for s in slow + idle)
        assert time.monotonic() - started < 8
        body_sock = raw(server.port)
        body_sock.sendall(
            b"POST /v2/models/torch.onnx/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"{" * 10
        )
        answer = until_closed(body_sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        fds = len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))
        assert fds < 200, fds
        log = server.log.read_text()
    for sock in slow + idle + [body_sock]:
        sock.close()
    assert "Traceback" not in log


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s at most)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def get_quietly(server: Live) -> tuple[int, dict]:
    try:
        return server.get("/v2/health/ready")
    except OSError:
        return 0, {}


def test_sigterm_finishes_within_the_grace_period(pair, tmp_path):
    """A client holding an unfinished body kept the server from exiting forever."""
    flags = ("--golden", "none", "--body-timeout-s", "120", "--shutdown-grace-s", "2")
    server = Live(pair, *flags, log=tmp_path / "log")
    with server:
        sock = raw(server.port)
        sock.sendall(
            b"POST /v2/models/torch.onnx/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"{" * 10
        )
        time.sleep(0.5)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)
        assert time.monotonic() - started < 8
        sock.close()


def test_a_client_gone_mid_body_is_one_log_line(pair, tmp_path):
    with Live(pair, "--golden", "none", log=tmp_path / "log") as server:
        for path in ("/v1/models/torch.onnx:predict", "/v2/models/torch.onnx/infer"):
            sock = raw(server.port)
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode()
                + b'{"instances": ['
            )
            time.sleep(0.3)
            sock.close()
        time.sleep(0.5)
        assert server.get("/v2/health/ready")[0] == 200
        log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("client went away") == 2, log[-3000:]


def test_codec_workers_end_with_a_killed_server(pair, tmp_path):
    """SIGKILL gives the server no chance to stop its JSON worker processes: they notice
    their parent is gone and exit, instead of waiting for work forever."""
    with Live(pair, "--golden", "none", log=tmp_path / "log") as server:
        workers = children(server.proc.pid)
        assert workers, "the JSON workers start before the server is ready"
        server.proc.kill()
        server.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(p) for p in workers):
        time.sleep(0.2)
    assert not any(running(p) for p in workers)


def running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
