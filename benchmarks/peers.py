"""The peers the server is measured against: their venv, and their processes.

PyTriton needs numpy < 2 (this project runs numpy 2), so Triton and LitServe live in one
venv of their own, `.cache/peers-venv`, made by `peers_python()` from their lock file
(requirements/peers.txt, every file checked against its hash) and marked by a stamp file
holding that lock: a venv whose stamp differs is rebuilt, never half-trusted.
tests/test_triton.py takes the `tritonserver` binary from the same venv, so CI installs it
once. The bare ASGI endpoints need nothing beyond this project's venv.

Each server runs as its own session (process group) pinned to the server core; its CPU
time and RSS are those of the whole group (Triton starts a server and a Python backend
stub; LitServe worker processes), and stopping it kills the group by its pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".cache" / "peers-venv"
STAMP = "installed.txt"
# Pinned in requirements/peers.in (numpy < 2 for PyTriton 0.7), locked by `make lock`.
LOCK = REPO / "requirements" / "peers.txt"
HERE = Path(__file__).resolve().parent
SERVER_CORE = 0


class VenvError(RuntimeError):
    """The peers' venv is not there and may not be made, or pip could not make it."""


def venv_ready(venv: Path = VENV, lock: Path = LOCK) -> bool:
    stamp = venv / STAMP
    return stamp.is_file() and stamp.read_text() == lock.read_text()


def peers_python(venv: Path = VENV, lock: Path = LOCK, install: bool = True) -> Path:
    """The venv's interpreter, making the venv first when its stamp is missing or differs
    (`install=False`: refuse instead, saying how to make it)."""
    python = venv / "bin" / "python"
    if venv_ready(venv, lock):
        return python
    if not install:
        raise VenvError(f"{venv} is not built from {lock.name} (make bench builds it)")
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise VenvError(f"cannot make a venv at {venv}: {made.stderr[-1000:]}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pip += ["--require-hashes", "--no-deps", "-r", str(lock)]
    installed = subprocess.run(pip, capture_output=True, text=True)
    if installed.returncode != 0:
        raise VenvError(f"cannot install {lock}: {installed.stderr[-2000:]}")
    (venv / STAMP).write_text(lock.read_text())
    return python


def tritonserver(venv: Path = VENV) -> Path:
    """The `tritonserver` binary nvidia-pytriton bundles, inside a built venv."""
    found = sorted(venv.glob("lib/python*/site-packages/pytriton/tritonserver/bin/tritonserver"))
    if not found:
        raise VenvError(f"no tritonserver binary inside {venv}")
    return found[0]


def library_env() -> dict[str, str]:
    """Under pyenv, Triton's Python backend needs this interpreter's libpython first."""
    libdir = sysconfig.get_config_var("LIBDIR")
    return {"LD_LIBRARY_PATH": f"{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}"}


@dataclass
class Launch:
    """How to start one server: its command (a port is appended) and its health path."""

    cmd: list[str]
    health: str = "/v2/health/ready"
    env: dict[str, str] = field(default_factory=dict)


def peer_launches(python: Path, model_file: Path) -> dict[str, Launch]:
    """Triton (PyTriton, dynamic batching) and LitServe, on the venv's interpreter."""
    return {
        "triton": Launch(
            [str(python), str(HERE / "peer_triton.py"), str(model_file)], env=library_env()
        ),
        "litserve": Launch(
            [str(python), str(HERE / "peer_litserve.py"), str(model_file)], health="/health"
        ),
    }


def asgi_launches(model_file: Path) -> dict[str, Launch]:
    """The bare endpoints, on this venv's uvicorn: V2 binary and V2 JSON over ONNX Runtime,
    and no-op."""
    script = [sys.executable, str(HERE / "peer_asgi.py"), str(model_file), "--mode"]
    return {
        "bare-asgi-v2": Launch([*script, "v2"]),
        "bare-asgi-v2-json": Launch([*script, "v2-json"]),
        "noop": Launch([*script, "noop"]),
    }


class Process:
    """One server in its own session, pinned to SERVER_CORE; its log in a temporary file."""

    def __init__(self, launch: Launch, port: int) -> None:
        self.launch, self.port = launch, port
        # Closed in stop(): the log lives as long as the process.
        self.log = tempfile.NamedTemporaryFile(prefix="bench-peer-", suffix=".log")  # noqa: SIM115
        pin = ["taskset", "-c", str(SERVER_CORE)] if (os.cpu_count() or 1) > 1 else []
        self.proc = subprocess.Popen(
            [*pin, *launch.cmd, "--port", str(port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=os.environ | launch.env,
            start_new_session=True,  # its own process group: stopped as one, by its pid
        )
        self.url = f"http://127.0.0.1:{port}"

    def exited(self) -> str:
        """Why it is gone ('' while it runs): exit status and its log's tail."""
        if self.proc.poll() is None:
            return ""
        tail = Path(self.log.name).read_text(errors="replace")[-600:].strip()
        return f"exited {self.proc.returncode}: {tail}"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and group_pids(self.proc.pid):
                self.proc.poll()  # reap the leader so its group can empty
                time.sleep(0.1)
            if not group_pids(self.proc.pid):
                break
        self.proc.poll()
        self.log.close()


def _stat(pid: str) -> list[str] | None:
    try:  # fields after the command name: state, ppid, pgrp, session, ..., utime (11), stime
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:  # gone between listing and reading
        return None


def group_pids(session: int) -> list[int]:
    """Live processes of the session `session` (zombies left out)."""
    pids = []
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[3]) == session:
            pids.append(int(entry))
    return pids


def group_cpu_seconds(session: int) -> float:
    """User + system CPU time so far of every live process of the session."""
    total = 0
    for pid in group_pids(session):
        if fields := _stat(str(pid)):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def group_rss_mib(session: int) -> float:
    total = 0
    for pid in group_pids(session):
        with contextlib.suppress(OSError):  # gone since it was listed
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20
