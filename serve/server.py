"""The HTTP server: every variant of a model repository behind KServe V2, TF Serving,
an image upload, Prometheus metrics and a web page.

    app = create_app(ServeConfig(repository=Path("artifacts/model_repository")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

`Server` holds the variants and their state; the V2 infer route is a raw ASGI route
(serve/dataplane.py) in front of a FastAPI app for everything else (serve/routes.py),
where convenience matters more than microseconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from contract.paths import MODEL_REPOSITORY
from export.repository import MAX_BATCH_SIZE
from serve import catalog, models, v2
from serve.batching import MAX_QUEUE
from serve.control import ModelControl
from serve.metrics import NO_MODEL, Collector, ModelStats, registry

log = logging.getLogger("serve")
# Bodies and answers above this size are parsed and encoded off the event loop.
OFFLOAD_ABOVE = 64 * 1024  # bytes
# JSON above this goes to another process: json.loads and the nested-list conversion are
# single C calls that hold the GIL for their whole run (about a second for 15 MiB), so a
# thread would still stall the event loop. Binary tensors are cheap: a thread will do.
PROCESS_ABOVE = 1 << 20  # bytes
# Two workers of each kind bound the memory of bodies expanded into Python numbers at
# once (~7x their size); the rest wait with only their raw bytes, which are capped.
CODEC_WORKERS = 2
RETRY_AFTER_S = 1


@dataclass
class ServeConfig:
    repository: Path = MODEL_REPOSITORY
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 0  # 0: no gRPC (serve/grpc_api.py)
    max_batch: int = MAX_BATCH_SIZE  # capped by each variant's max_batch_size
    max_delay_ms: float = 2.0
    threads: int = 1
    golden: Path | None = models.GOLDEN
    max_body_mb: float = 16.0
    max_inflight_mb: float = 256.0
    max_queue: int = MAX_QUEUE
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 5.0
    max_connections: int = 512
    shutdown_grace_s: float = 10.0
    model_control: str = "none"  # "explicit": load/unload with the token (serve/control.py)
    control_token: str | None = field(default=None, repr=False)  # a secret: never printed

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_inflight(self) -> int:
        return int(self.max_inflight_mb * 2**20)


class Server:
    """The variants and their state; shared by the raw route and the FastAPI routes."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.model_control = ModelControl(
            config.model_control, config.control_token, config.host, config.port
        )
        self.root = config.repository.absolute()
        self.models = {}
        for name, why in catalog.scan(self.root).items():
            self.models[name] = models.Servable(name, self.root / name)
            if why:  # listed with its reason, said once, never loaded
                self.models[name].state, self.models[name].reason = models.UNAVAILABLE, why
                log.warning("refused %s: %s", v2.shown(name), why)
        self.unknown = ModelStats()
        self.codec = ThreadPoolExecutor(CODEC_WORKERS, thread_name_prefix="codec")
        self.json_codec: ProcessPoolExecutor | None = None  # started by load_all
        self.inflight = 0  # bytes of request bodies admitted and not yet answered, any protocol
        self.lock = threading.Lock()
        self.loaded = threading.Event()
        self.metrics = registry(
            Collector(
                lambda: {n: s.stats for n, s in self.models.items()} | {NO_MODEL: self.unknown},
                lambda: {n: s.ready for n, s in self.models.items()},
            )
        )

    def load_all(self) -> None:
        self.json_workers()  # before ready: starting processes later would stall a request
        golden = models.Golden(self.config.golden)
        c = self.config
        delay = c.max_delay_ms / 1000
        for servable in self.models.values():
            if servable.state != models.LOADING:
                continue  # refused by the scan, already said why
            models.load(servable, golden, c.threads, c.max_batch, delay, c.max_queue)
            if servable.ready:
                log.info("%s ready", servable.name)
            else:
                log.error("%s unavailable: %s", servable.name, servable.reason)
        # The runtimes' objects live as long as the server: out of the collector's sight,
        # a full collection no longer walks them (with TensorFlow and torch loaded, a
        # pause of tens of ms on the event loop otherwise).
        gc.freeze()
        self.loaded.set()

    def reload(self, name: str) -> models.Servable:
        """Load (again) one variant from the repository; it replaces the served one only
        if it passes its check. Blocking: call it from a thread."""
        why = catalog.refusal(self.root, name)
        if why is None:
            raise v2.ProtocolError(f"no variant {v2.shown(name)} in the model repository")
        old = self.models.get(name)
        fresh = models.Servable(name, self.root / name, stats=old.stats if old else ModelStats())
        if why:
            fresh.state, fresh.reason = models.UNAVAILABLE, why
            return fresh
        golden = models.Golden(self.config.golden)
        c = self.config
        delay = c.max_delay_ms / 1000
        models.load(fresh, golden, c.threads, c.max_batch, delay, c.max_queue)
        if fresh.ready:
            self.models[name] = fresh
            if old is not None and old.batcher is not None:
                old.batcher.close()
        return fresh

    def unload(self, name: str) -> None:
        old = self.get(name)
        self.models[name] = models.Servable(
            name,
            old.path,
            stats=old.stats,
            manifest=old.manifest,
            state=models.UNAVAILABLE,
            reason="unloaded through /v2/repository/models/<m>/unload",
        )
        if old.batcher is not None:
            old.batcher.close()

    def not_ready(self) -> str:
        """Empty when every variant serves (Triton's strict readiness), else why not."""
        if not self.models:
            return "no variants in the model repository: run `make export`"
        if not self.loaded.is_set():
            return "loading variants"
        return "; ".join(f"{s.name}: {s.reason}" for s in self.models.values() if not s.ready)

    def get(self, name: str, version: str | None = None) -> models.Servable:
        servable = self.models.get(name)
        if servable is None:
            raise v2.ProtocolError(f"unknown model {v2.shown(name)}; see /v2/repository/index", 404)
        if version not in (None, v2.VERSION):
            raise v2.ProtocolError(
                f"model {name} has no version {v2.shown(version)}; it has {v2.VERSION!r}", 404
            )
        return servable

    def serving(self, name: str, version: str | None = None) -> models.Servable:
        servable = self.get(name, version)
        if not servable.ready:
            raise v2.ProtocolError(f"model {name} is not ready: {servable.reason}", 503)
        return servable

    def admit(self, size: int) -> int:
        """Reserve `size` bytes of request body against the server-wide cap (HTTP and gRPC
        alike); `release` them once answered. 503 when the cap would be passed."""
        limit = self.config.max_inflight
        if size and self.inflight + size > limit:
            raise v2.ProtocolError(
                f"the server holds {self.inflight} bytes of requests in flight, its limit is "
                f"{limit}: retry shortly",
                503,
            )
        self.inflight += size
        return size

    def release(self, size: int) -> None:
        self.inflight -= size

    async def offload(self, size: int, fn, *args, json: bool = False):
        """fn(*args), off the event loop when `size` bytes make it slow: in a thread, or
        for large JSON in a worker process (fn and args must pickle)."""
        if size <= OFFLOAD_ABOVE:
            return fn(*args)
        loop = asyncio.get_running_loop()
        if json and size > PROCESS_ABOVE:
            return await loop.run_in_executor(self.json_workers(), fn, *args)
        return await loop.run_in_executor(self.codec, fn, *args)

    def json_workers(self) -> ProcessPoolExecutor:
        """The worker processes for large JSON, started (and their imports done) once."""
        with self.lock:
            if self.json_codec is None:
                # spawn, not fork: forking a process that runs runtime threads is unsafe.
                context = multiprocessing.get_context("spawn")
                self.json_codec = ProcessPoolExecutor(
                    CODEC_WORKERS, mp_context=context, initializer=follow_parent
                )
                warm = [self.json_codec.submit(v2.load_json, b"0", "") for _ in range(2)]
                for future in warm:
                    future.result()
        return self.json_codec

    def public(self, message: str) -> str:
        """An error message fit for clients: variants named, no filesystem paths."""
        return catalog.public(message, self.root)

    def close(self) -> None:
        self.codec.shutdown(wait=False)
        if self.json_codec is not None:
            self.json_codec.shutdown(wait=False, cancel_futures=True)
        for servable in self.models.values():
            if servable.batcher is not None:
                servable.batcher.close()


def follow_parent() -> None:
    """In a codec worker: exit when the server is gone. A server killed with SIGKILL gives
    its pool no chance to stop the workers, and they would wait for work forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def create_app(config: ServeConfig):
    """The ASGI app: serve/dataplane.py's App (V2 infer, limits) in front of the FastAPI
    routes of serve/routes.py."""
    from serve.dataplane import App
    from serve.routes import control_app

    server = Server(config)
    return App(server, control_app(server))
