"""python -m train.multiworker: tf.distribute workers on this host, one process each.

python -m train.multiworker --workers 2 -- --trainer keras-tape --out DIR

Each worker runs `python -m train ARGS` with its own TF_CONFIG, every worker at a free port
of 127.0.0.1, which is all a cluster manager (a Kubernetes TFJob, a Slurm script) does on
several hosts; there, set TF_CONFIG on each host and run `python -m train`
(docs/distributed.md). Like torchrun, it watches its workers: when one fails or
dies, it stops the others, which would otherwise wait for the dead one, and exits 1 naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

GRACE_S = 10  # an interrupted worker gets this long to exit after SIGTERM, then SIGKILL


def free_ports(n: int) -> list[int]:
    """n ports of 127.0.0.1 free now (held together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def stop(workers: list[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    """SIGTERM every worker still running; SIGKILL those that outlast grace_s."""
    running = [w for w in workers if w.poll() is None]
    for w in running:
        w.terminate()
    deadline = time.monotonic() + grace_s
    for w in running:
        try:
            w.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def how(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def watch(workers: list[subprocess.Popen]) -> int:
    """Wait for every worker; on the first failure stop the rest. The job's exit code."""
    while True:
        codes = [w.poll() for w in workers]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            i = failed[0]
            # The others wait for the dead one and have nothing to save (the chief's files
            # are whole: written by rename); TensorFlow's workers also catch SIGTERM.
            stop(workers, grace_s=0)
            print(
                f"error: worker {i} (pid {workers[i].pid}) {how(codes[i])}; "
                f"stopped the other workers",
                file=sys.stderr,
                flush=True,
            )
            return 1
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.multiworker", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then python -m train's flags")
    args = parser.parse_args(argv)
    train_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    ports = free_ports(args.workers)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "train", *train_args],
            env={**os.environ, "TF_CONFIG": tf_config(ports, i)},
        )
        for i in range(args.workers)
    ]

    def interrupted(signum: int, frame) -> None:  # Ctrl-C, a scheduler's SIGTERM
        stop(workers)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    return watch(workers)


if __name__ == "__main__":
    sys.exit(main())
