"""The HTTP server: every variant of a model repository behind KServe V2, TF Serving,
an image upload, Prometheus metrics and a web page.

    app = create_app(ServeConfig(repository=Path("artifacts/model_repository")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

`POST /v2/models/<m>[/versions/1]/infer`, the data plane, is a raw ASGI route: it reads
the body once, splits JSON from binary tensors with np.frombuffer and answers with
prebuilt headers. FastAPI's request machinery costs about a third of the throughput on
such a path (measured on 2 cores: 1.46k req/s at c=16 through a FastAPI JSON route, 2.11k through
a bare ASGI one parsing the same JSON), so everything else, where convenience matters
more than microseconds, is a FastAPI app (serve/routes.py) behind it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import harness
from export import repository
from export.repository import MAX_BATCH_SIZE
from serve import models, v2
from serve.batching import MAX_QUEUE, QueueFull
from serve.metrics import NO_MODEL, Collector, ModelStats, registry
from train.config import MODEL_REPOSITORY

log = logging.getLogger("serve")
JSON = b"application/json"
INFER_PREFIX, INFER_SUFFIX = "/v2/models/", "/infer"
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
        found = repository.variants(config.repository)
        self.models = {name: models.Servable(name, path) for name, path in found.items()}
        self.unknown = ModelStats()
        self.codec = ThreadPoolExecutor(CODEC_WORKERS, thread_name_prefix="codec")
        self.json_codec: ProcessPoolExecutor | None = None  # started by load_all
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
            models.load(servable, golden, c.threads, c.max_batch, delay, c.max_queue)
            if servable.ready:
                log.info("%s ready", servable.name)
            else:
                log.error("%s unavailable: %s", servable.name, servable.reason)
        self.loaded.set()

    def reload(self, name: str) -> models.Servable:
        """Load (again) one variant from the repository; it replaces the served one only
        if it passes its check. Blocking: call it from a thread."""
        path = repository.variants(self.config.repository).get(name)
        if path is None:
            raise v2.ProtocolError(f"no variant {v2.shown(name)} in {self.config.repository}")
        old = self.models.get(name)
        fresh = models.Servable(name, path, stats=old.stats if old else ModelStats())
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
            return f"no variants in {self.config.repository}: run `make export`"
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
                self.json_codec = ProcessPoolExecutor(CODEC_WORKERS, mp_context=context)
                warm = [self.json_codec.submit(v2.load_json, b"0", "") for _ in range(2)]
                for future in warm:
                    future.result()
        return self.json_codec

    def close(self) -> None:
        self.codec.shutdown(wait=False)
        if self.json_codec is not None:
            self.json_codec.shutdown(wait=False, cancel_futures=True)
        for servable in self.models.values():
            if servable.batcher is not None:
                servable.batcher.close()


def infer_target(path: str) -> tuple[str, str | None]:
    """/v2/models/<name>[/versions/<v>]/infer -> (name, version)."""
    rest = path[len(INFER_PREFIX) : -len(INFER_SUFFIX)]
    name, sep, version = rest.partition("/versions/")
    if not name or "/" in name or (sep and (not version or "/" in version)):
        raise v2.ProtocolError(f"no route POST {v2.shown(path)}", 404)
    return name, version if sep else None


class Busy(v2.ProtocolError):
    """Over a capacity limit for now: 503 with Retry-After."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


async def read_body(receive, limit: int, timeout: float) -> bytes:
    """The whole body, or 413 past `limit` bytes, or 408 past `timeout` seconds (a client
    that trickles its body must not hold a connection, memory or shutdown forever)."""
    try:
        async with asyncio.timeout(timeout):
            return await _read_body(receive, limit)
    except TimeoutError:
        raise v2.ProtocolError(f"request body not received within {timeout:g} s", 408) from None


async def _read_body(receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ConnectionAbortedError
    body = message.get("body", b"")
    if not message.get("more_body"):  # the usual case: the whole body in one message
        if len(body) > limit:
            raise v2.ProtocolError(f"request body over the {limit}-byte limit", 413)
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise v2.ProtocolError(f"request body over the {limit}-byte limit", 413)
    return b"".join(chunks)


def inflate(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """Undo a Content-Encoding (tritonclient can gzip or deflate requests), bounded."""
    if encoding in (None, b"identity"):
        return body
    wbits = {b"gzip": 31, b"deflate": 15}.get(encoding)
    if wbits is None:
        raise v2.ProtocolError(f"Content-Encoding {v2.shown(encoding)} unsupported", 415)
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise v2.ProtocolError(f"body is not valid {encoding.decode()}: {e}") from None
    if len(out) > limit:
        raise v2.ProtocolError(f"decompressed body over the {limit}-byte limit", 413)
    if not inflater.eof:
        raise v2.ProtocolError(f"{encoding.decode()} body is truncated")
    return out


async def respond(
    send, status: int, body: bytes, header_length: int | None = None, close: bool = False
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    if close:  # the body was not read to its end: the connection cannot be reused
        headers.append((b"connection", b"close"))
    if header_length is None:
        headers.append((b"content-type", JSON))
    else:
        headers.append((b"content-type", b"application/octet-stream"))
        headers.append((b"inference-header-content-length", str(header_length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class App:
    """ASGI entry point: V2 infer on the raw route, the body limit on every route, and
    everything else through the FastAPI app."""

    def __init__(self, server: Server, control) -> None:
        self.server, self.control = server, control
        self.inflight = 0  # bytes of request bodies admitted and not yet answered

    def admit(self, headers: dict) -> int:
        """Reserve the declared body size against the server-wide cap; 503 when full."""
        config = self.server.config
        try:
            declared = int(headers.get(b"content-length", 0))
        except ValueError:
            raise v2.ProtocolError("Content-Length is not a number") from None
        if declared > config.max_body:
            raise v2.ProtocolError(f"request body over the {config.max_body}-byte limit", 413)
        if declared and self.inflight + declared > config.max_inflight:
            raise Busy(
                f"the server holds {self.inflight} bytes of requests in flight, its limit is "
                f"{config.max_inflight}: retry shortly"
            )
        self.inflight += declared
        return declared

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.control(scope, receive, send)
            return
        path = scope["path"]
        if (
            scope["method"] == "POST"
            and path.startswith(INFER_PREFIX)
            and path.endswith(INFER_SUFFIX)
        ):
            await self.infer(scope, receive, send)
            return
        config = self.server.config
        try:
            held = self.admit(dict(scope["headers"]))
        except v2.ProtocolError as e:
            await respond(send, e.status, v2.error_body(str(e)), close=True)
            return
        try:
            receive = limited(receive, config.max_body, config.body_timeout_s)
            await self.control(scope, receive, send)
        finally:
            self.inflight -= held

    async def infer(self, scope, receive, send) -> None:
        started = time.perf_counter()
        stats, status, header_length, held = self.server.unknown, 200, None, 0
        config = self.server.config
        try:
            servable = self.server.serving(*infer_target(scope["path"]))
            stats = servable.stats
            headers = dict(scope["headers"])
            held = self.admit(headers)
            batcher = servable.batcher
            batcher.expect()
            try:
                raw = await read_body(receive, config.max_body, config.body_timeout_s)
                body = inflate(raw, headers.get(b"content-encoding"), config.max_body)
                split_at = headers.get(b"inference-header-content-length")
                request = await self.server.offload(
                    len(body),
                    v2.parse_request,
                    body,
                    split_at,
                    servable.signature,
                    json=split_at is None,
                )
                del raw, body  # the tensor is a view of the body only for binary inputs
                images = servable.model.check_input(request.images)
            except BaseException:
                batcher.forget()
                raise
            logits = await batcher.infer(images, expected=True)
            json_out = not all(out.binary for out in request.outputs)
            payload, header_length = await self.server.offload(
                logits.nbytes * (4 if json_out else 1),  # JSON text is ~4x the binary size
                v2.encode_response,
                servable.name,
                request,
                logits,
                servable.signature.labels,
                json=json_out,
            )
        except (v2.ProtocolError, harness.ContractError) as e:
            status = getattr(e, "status", 400)
            payload = v2.error_body(str(e))
        except QueueFull as e:
            status, payload = 503, v2.error_body(f"model {servable.name} is busy: {e}; retry")
        except ConnectionAbortedError:
            log.info("client went away before its request body arrived")
            return
        except Exception as e:  # a runtime failure: the server stays up and says so
            log.exception("inference failed")
            status, payload = 500, v2.error_body(f"inference failed: {type(e).__name__}: {e}")
        finally:
            self.inflight -= held
        await respond(send, status, payload, header_length, close=status in (408, 413))
        stats.request("v2", time.perf_counter() - started, status)


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


def limited(receive, limit: int, timeout: float):
    """`receive` that raises BodyTooLarge once the body passes `limit` bytes, and
    BodyTimeout once it has taken more than `timeout` seconds."""
    seen = 0
    deadline = time.monotonic() + timeout

    async def wrapped():
        nonlocal seen
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(f"request body not received within {timeout:g} s") from None
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(f"request body over the {limit}-byte limit")
        return message

    return wrapped


def create_app(config: ServeConfig) -> App:
    from serve.routes import control_app

    server = Server(config)
    return App(server, control_app(server))
