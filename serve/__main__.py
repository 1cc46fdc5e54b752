"""python -m serve: every variant of a model repository behind one HTTP server.

python -m serve                                   # artifacts/model_repository on 127.0.0.1:8000
python -m serve --repository /tmp/repo --port 8080 --max-batch 64 --max-delay-ms 2
python -m serve --grpc-port 8001                  # KServe V2 gRPC beside HTTP
TANDEM_CONTROL_TOKEN=... python -m serve --model-control explicit   # load/unload allowed
python -m serve --model-control poll              # new versions rolled out as they are published
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

# TensorFlow reads this once, at import (imported lazily by the SavedModel runner).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from contract.paths import add_repository_argument
from serve import catalog, model_control
from serve.app import create_app
from serve.config import ServeConfig
from serve.connections import guarded

HELP = {
    "host": "address to bind; keep 127.0.0.1 unless the server should be reachable",
    "port": "TCP port",
    "grpc_port": "TCP port for KServe V2 gRPC on the same --host; 0 leaves gRPC off",
    "max_batch": "dynamic batching: most images per runtime call (1 turns batching off); "
    "capped by each variant's config.pbtxt max_batch_size",
    "max_delay_ms": "dynamic batching: longest a request waits for others still arriving",
    "threads": "threads per runtime call (intra-op); 0 lets each runtime choose",
    "golden": "golden batch replayed at start-up (from `make parity`); 'none' skips it",
    "max_body_mb": "largest request body accepted, in MiB (413 above it)",
    "max_inflight_mb": "request bodies held at once, server-wide, in MiB (503 above it)",
    "max_queue": "requests waiting per model (503 with Retry-After above it)",
    "header_timeout_s": "seconds a client has to send a request's headers",
    "body_timeout_s": "seconds a client has to send a request's body (408 after)",
    "keepalive_timeout_s": "seconds an idle kept-alive connection stays open",
    "max_connections": "open connections at once; more are closed on arrival",
    "shutdown_grace_s": "seconds requests in flight get to finish after SIGTERM",
    "model_control": "'explicit' lets clients holding the control token load and unload "
    "models (POST /v2/repository/models/<m>/load|unload); 'poll' rolls out each new "
    "version (an export, a rollback) as it appears, every --poll-interval-s; 'none' "
    "does neither (load and unload answer 403 but in 'explicit')",
    "poll_interval_s": "with --model-control poll: seconds between looks at the repository",
    "control_token": "bearer token for --model-control explicit; prefer the environment "
    "variable, since a command line shows in the process list",
}
CHOICES = {"model_control": model_control.MODES}
# Shown instead of the default: --help must never print a secret.
SHOWN = {"control_token": f"${model_control.TOKEN_ENV}"}


def path_or_none(value: str) -> Path | None:
    return None if value == "none" else Path(value)


def parse(argv: list[str] | None = None) -> ServeConfig:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n")[0])
    defaults = ServeConfig()
    add_repository_argument(parser)
    for f in fields(ServeConfig):
        if f.name == "repository":
            continue
        default = getattr(defaults, f.name)
        kind = str if default is None else type(default)  # None: a secret, read as text
        if f.name == "golden":
            kind = path_or_none
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=default,
            choices=CHOICES.get(f.name),
            help=f"{HELP[f.name]} (default: {SHOWN.get(f.name, default)})",
        )
    args = vars(parser.parse_args(argv))
    if args["poll_interval_s"] <= 0:
        parser.error(f"--poll-interval-s must be above 0, got {args['poll_interval_s']}")
    if args["model_control"] == "explicit" and args["control_token"] is None:
        args["control_token"] = os.environ.get(model_control.TOKEN_ENV) or None
    try:
        model_control.check(args["model_control"], args["control_token"])
    except ValueError as e:
        parser.error(str(e))
    return ServeConfig(**args)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    config = parse(argv)
    if not catalog.scan(config.repository):
        print(f"no variants in {config.repository}: run `make export` first", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise_file_limit(config.max_connections)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        http=guarded(config.header_timeout_s, config.max_connections),
        timeout_keep_alive=config.keepalive_timeout_s,
        timeout_graceful_shutdown=config.shutdown_grace_s,
        limit_concurrency=config.max_connections,
        access_log=False,  # a log line per request would cost more than the inference
        log_level="info",
    )
    return 0


def raise_file_limit(connections: int) -> None:
    """Room for `connections` sockets plus the runtimes' own files, within the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


if __name__ == "__main__":
    sys.exit(main())
