"""Load figures for the server: V2 binary, one image per request, on loopback.

    python -m benchmarks.server [--repository DIR] [--model torch.onnx] [--seconds 3] [--rounds 3]

Each server runs in a subprocess pinned to core 0 (taskset) and this load generator
(aiohttp; httpx saturates its own core near 500 req/s) on core 1, so neither steals the
other's CPU. Reports req/s and p50/p99 latency at c=1 and c=16 with batching on (the
defaults) and off (--max-batch 1), hence batching's gain; KServe V2 gRPC (grpc.aio
stubs, one channel) against the batching server, beside its HTTP figures; the server's
CPU time per request with each; then a bounded load run (`--load-requests` at c=32:
errors, server RSS growth). `--against DIR` also runs the server of another checkout (a
git worktree of an older commit, say) in the same rounds: a change's cost, side by side.
Every loop is bounded in count and time. Writes artifacts/reports/serve_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from benchmarks import grpc_load
from contract.files import write_json_atomic
from contract.paths import REPORTS, add_repository_argument

SERVER_CORE, CLIENT_CORE = 0, 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far. Per request, it is a cost that other
    work on a shared machine moves far less than it moves req/s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Served:
    """`python -m serve` on a repository holding only `model`, pinned to one core."""

    def __init__(
        self, repository: Path, model: str, *flags: str, source: Path | None = None
    ) -> None:
        """`source`: another checkout whose server to run instead of this one's (its
        `serve` package first on the path), to compare two versions side by side."""
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-repo-")
        # A copy: the server refuses a variant folder that links outside its repository.
        shutil.copytree(repository / model, Path(self.tmp.name) / model)
        self.port = free_port()
        cmd = [sys.executable, "-m", "serve", "--repository", self.tmp.name]
        cmd += ["--port", str(self.port), "--golden", "none", *flags]
        pin = ["taskset", "-c", str(SERVER_CORE)] if os.cpu_count() > 1 else []
        env = os.environ | ({"PYTHONPATH": str(source)} if source else {})
        self.proc = subprocess.Popen(
            pin + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=source, env=env
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, session, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                async with session.get(self.url + "/v2/health/ready") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()


def v2_binary(images: np.ndarray) -> tuple[bytes, dict]:
    header = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": list(images.shape),
                "parameters": {"binary_data_size": images.nbytes},
            }
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(header).encode()
    return text + images.tobytes(), {"Inference-Header-Content-Length": str(len(text))}


Send = Callable[[], Awaitable[bool]]  # one request; True when answered OK


def http_sender(session, url: str, body: bytes, headers: dict) -> Send:
    async def send() -> bool:
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            return r.status == 200

    return send


async def load(send: Send, concurrency: int, requests: int, seconds: float) -> dict:
    """`concurrency` workers send until `requests` are sent or `seconds` pass."""
    latencies, errors = [], 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal sent, errors
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            if not await send():
                errors += 1
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


async def measure(args) -> dict:
    """Both servers up at once and measured in alternating rounds, best round kept: other
    work on the machine can only slow a round down, and it hits both configurations."""
    import aiohttp

    grpc_port = free_port()
    servers = {
        "batching": Served(args.repository, args.model, "--grpc-port", str(grpc_port)),
        "no_batching": Served(args.repository, args.model, "--max-batch", "1"),
    }
    if args.against:
        servers["against"] = Served(args.repository, args.model, source=args.against)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    best: dict[str, dict] = {name: {} for name in [*servers, "grpc"]}
    channel = grpc_load.channel(f"127.0.0.1:{grpc_port}")
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for served in servers.values():
                await served.wait_ready(session)
            meta = await (await session.get(f"{served.url}/v2/models/{args.model}")).json()
            shape = meta["inputs"][0]["shape"][1:]
            images = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype(np.float32)
            body, headers = v2_binary(images)
            urls = {n: f"{s.url}/v2/models/{args.model}/infer" for n, s in servers.items()}
            senders = {n: http_sender(session, url, body, headers) for n, url in urls.items()}
            senders["grpc"] = grpc_load.sender(channel, args.model, images)
            for send in senders.values():
                await load(send, 16, 2000, 2.0)  # warm-up
            pids = {n: s.proc.pid for n, s in servers.items()} | {
                "grpc": servers["batching"].proc.pid
            }
            for _ in range(args.rounds):
                for name, send in senders.items():
                    for concurrency in (1, 16):
                        used = cpu_seconds(pids[name])
                        run = await load(send, concurrency, 10**9, args.seconds)
                        used = cpu_seconds(pids[name]) - used
                        run["server_cpu_us_per_request"] = round(used / run["requests"] * 1e6)
                        key = f"c{concurrency}"
                        if run["req_per_s"] > best[name].get(key, {}).get("req_per_s", 0):
                            best[name][key] = run
            pid = servers["batching"].proc.pid
            before = rss_kib(pid)
            run = await load(senders["batching"], 32, args.load_requests, 300.0)
            after = rss_kib(pid)
            best["batching"]["load_c32"] = run | {
                "rss_before_mib": round(before / 1024, 1),
                "rss_after_mib": round(after / 1024, 1),
                "rss_growth": round(after / before - 1, 4),
            }
            return best
    finally:
        await channel.close()
        for served in servers.values():
            served.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server", description=__doc__.split("\n")[0]
    )
    add_repository_argument(parser)
    parser.add_argument(
        "--model", default="torch.onnx", help="variant to load (default: torch.onnx)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per figure; best kept")
    parser.add_argument(
        "--load-requests", type=int, default=10_000, help="requests in the load run (c=32)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPORTS / "serve_bench.json", help="report file"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (e.g. a git worktree of an older commit) whose server runs "
        "beside this one's, defaults for both, in the same alternating rounds",
    )
    args = parser.parse_args(argv)
    if not (args.repository / args.model).is_dir():
        print(f"no variant {args.model} in {args.repository}: run `make export`", file=sys.stderr)
        return 2
    if os.cpu_count() > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})
    report = {"model": args.model, "cores": "server on core 0, load generator on core 1"}
    report |= asyncio.run(measure(args))
    on, off = report["batching"]["c16"]["req_per_s"], report["no_batching"]["c16"]["req_per_s"]
    report["batching_gain_c16"] = round(on / off, 3)
    for c in ("c1", "c16"):  # same server, same rounds: the ratio is what contention spares
        ratio = report["grpc"][c]["req_per_s"] / report["batching"][c]["req_per_s"]
        report[f"grpc_vs_http_{c}"] = round(ratio, 3)
    if args.against:  # this checkout's server over the other's, V2 binary, batching on
        report["against"] |= {"source": str(args.against)}
        for c in ("c1", "c16"):
            ratio = report["batching"][c]["req_per_s"] / report["against"][c]["req_per_s"]
            report[f"this_vs_against_{c}"] = round(ratio, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
