"""The server against clients that are slow, idle or gone, and against its own end: a live
server on loopback, probed as an attacker would, with bounded counts and time."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from serve_live import Live, children

pytestmark = pytest.mark.slow


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
        sock.settimeout(5)
        answer = sock.recv(4096)  # what the cut client was told, before the close
        sock.close()
    assert answer.startswith(b"HTTP/1.1 503") and b"shutting down" in answer, answer
    # The cut request is one clean line, not the ASGI app's CancelledError traceback.
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "POST '/v2/models/torch.onnx/infer' cut: the server stopped" in log, log


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
