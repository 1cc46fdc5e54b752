"""What one server is started with: `ServeConfig`, whose fields are `python -m serve`'s flags
(serve/__main__.py gives each its help)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contract.paths import MODEL_REPOSITORY, REPORTS
from export.repository import MAX_BATCH_SIZE
from harness.golden import GOLDEN_FILE
from serve.batching import MAX_QUEUE

GOLDEN = REPORTS / GOLDEN_FILE  # written by `make parity`


@dataclass
class ServeConfig:
    repository: Path = MODEL_REPOSITORY
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 0  # 0: no gRPC (serve/grpc_api.py)
    max_batch: int = MAX_BATCH_SIZE  # capped by each variant's max_batch_size
    max_delay_ms: float = 2.0
    threads: int = 1
    golden: Path | None = GOLDEN
    max_body_mb: float = 16.0
    max_inflight_mb: float = 256.0
    max_queue: int = MAX_QUEUE
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 5.0
    max_connections: int = 512
    shutdown_grace_s: float = 10.0
    # "explicit": load/unload with the token (serve/model_control.py); "poll": roll out
    # each new version as it appears (serve/registry.py)
    model_control: str = "none"
    poll_interval_s: float = 5.0
    control_token: str | None = field(default=None, repr=False)  # a secret: never printed

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_inflight(self) -> int:
        return int(self.max_inflight_mb * 2**20)
