"""A private Docker engine for the container tests, and a base image made without a registry.

No image registry can be reached from CI, so the engine is Debian's `dockerd` started here
on its own socket, data root and exec root (no iptables, no bridge: containers use the
host's network), and the base image is Debian's own packages put together by mmdebstrap and
`docker import`ed. Debian's `/usr/bin/docker` client is used: its `docker build` is
BuildKit without the buildx plugin.

Storage: overlay2 where the data root's filesystem carries it, else vfs, which works
anywhere but copies the whole filesystem for every layer: with the training image's 2.4 GB
of dependencies, deleting vfs layers alone took 5 minutes on 2 cores, overlay2's 1 second.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
MMDEBSTRAP = "/usr/bin/mmdebstrap"
# Debian package of each tool the tests need.
PACKAGES = {DOCKERD: "docker.io", DOCKER: "docker.io", MMDEBSTRAP: "mmdebstrap"}
SUITE = "bookworm"  # Python 3.11, as the project's pins need
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
IN_CI = os.environ.get("CI") == "true"
OVERLAY_BACKINGS = {"ext4", "xfs"}  # filesystems overlay2 runs on (d_type support)


def unavailable(reason: str) -> None:
    """No engine can run here: skip, saying why; CI must run the container tests, so fail."""
    if IN_CI:
        pytest.fail(f"container tests cannot run in CI: {reason}")
    pytest.skip(reason)


def storage_driver(data_root: Path) -> str:
    """overlay2 where the kernel has overlayfs and data_root's filesystem carries it."""
    with open("/proc/filesystems") as f:
        kernel = any(line.split()[-1] == "overlay" for line in f if line.strip())
    found = subprocess.run(
        ["findmnt", "--noheadings", "--output=FSTYPE", f"--target={data_root}"],
        capture_output=True,
        text=True,
    )
    return "overlay2" if kernel and found.stdout.strip() in OVERLAY_BACKINGS else "vfs"


def install_tools() -> None:
    """apt-get install docker.io and mmdebstrap when missing (needs root)."""
    missing = sorted({pkg for tool, pkg in PACKAGES.items() if not os.access(tool, os.X_OK)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable(f"{', '.join(missing)} not installed, and installing needs root and apt-get")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    subprocess.run(cmd, check=True, env=env)


class Engine:
    """dockerd on private paths; `stop` ends it by its pid and deletes everything it wrote."""

    def __init__(self) -> None:
        # Short paths: a unix socket path must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="tandem-dockerd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.log = self.root / "dockerd.log"
        self.env = os.environ | {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "1"}
        self.proc: subprocess.Popen | None = None
        self.driver = storage_driver(self.root)

    def start(self, timeout: float = 60.0) -> Engine:
        cmd = [
            DOCKERD,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host=unix://{self.socket}",
            f"--storage-driver={self.driver}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                unavailable(f"dockerd exited ({self.proc.returncode}): {self.tail()}")
            if self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        unavailable(f"dockerd did not answer within {timeout:.0f} s: {self.tail()}")
        return self

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text()[-chars:] if self.log.is_file() else ""

    def docker(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """The docker CLI against this engine; output captured as text."""
        result = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, **kw)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args[:3])} ... exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # dockerd stops its containerd itself
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # dockerd leaves its default network namespace bind-mounted under the exec root.
        for mount in self.mounts():
            subprocess.run(["umount", "--lazy", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def mounts(self) -> list[str]:
        """Mount points under this engine's root, deepest first."""
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        inside = [p for p in points if p.startswith(f"{self.root}/")]
        return sorted(inside, key=len, reverse=True)


def debian_base(engine: Engine, workdir: Path, tag: str) -> str:
    """A `bookworm` image with python3 and venv, from Debian's packages; returns its id."""
    rootfs = workdir / "rootfs.tar"
    cmd = [MMDEBSTRAP, "--variant=minbase", "--quiet", f"--include={BASE_PACKAGES}"]
    subprocess.run([*cmd, SUITE, str(rootfs)], check=True, capture_output=True, text=True)
    try:
        return engine.docker("import", str(rootfs), tag).stdout.strip()
    finally:
        rootfs.unlink()
