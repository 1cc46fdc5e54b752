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

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import harness
from export.repository import MAX_BATCH_SIZE
from serve import catalog, models, v2
from serve.control import ModelControl
from serve.metrics import NO_MODEL, Collector, ModelStats, registry
from train.config import MODEL_REPOSITORY

log = logging.getLogger("serve")
JSON = b"application/json"
INFER_PREFIX, INFER_SUFFIX = "/v2/models/", "/infer"


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
    model_control: str = "none"  # "explicit": load/unload with the token (serve/control.py)
    control_token: str | None = field(default=None, repr=False)  # a secret: never printed

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)


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
        self.loaded = threading.Event()
        self.metrics = registry(
            Collector(
                lambda: {n: s.stats for n, s in self.models.items()} | {NO_MODEL: self.unknown},
                lambda: {n: s.ready for n, s in self.models.items()},
            )
        )

    def load_all(self) -> None:
        golden = models.Golden(self.config.golden)
        delay = self.config.max_delay_ms / 1000
        for servable in self.models.values():
            if servable.state != models.LOADING:
                continue  # refused by the scan, already said why
            models.load(servable, golden, self.config.threads, self.config.max_batch, delay)
            if servable.ready:
                log.info("%s ready", servable.name)
            else:
                log.error("%s unavailable: %s", servable.name, servable.reason)
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
        delay = self.config.max_delay_ms / 1000
        models.load(fresh, golden, self.config.threads, self.config.max_batch, delay)
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

    def public(self, message: str) -> str:
        """An error message fit for clients: variants named, no filesystem paths."""
        return catalog.public(message, self.root)

    def close(self) -> None:
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


async def read_body(receive, limit: int) -> bytes:
    message = await receive()
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


async def respond(send, status: int, body: bytes, header_length: int | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
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

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if (
                scope["method"] == "POST"
                and path.startswith(INFER_PREFIX)
                and path.endswith(INFER_SUFFIX)
            ):
                await self.infer(scope, receive, send)
                return
            receive = limited(receive, self.server.config.max_body)
        await self.control(scope, receive, send)

    async def infer(self, scope, receive, send) -> None:
        started = time.perf_counter()
        stats, status, header_length = self.server.unknown, 200, None
        try:
            servable = self.server.serving(*infer_target(scope["path"]))
            stats = servable.stats
            headers = dict(scope["headers"])
            limit = self.server.config.max_body
            if int(headers.get(b"content-length", 0)) > limit:
                raise v2.ProtocolError(f"request body over the {limit}-byte limit", 413)
            batcher = servable.batcher
            batcher.expect()
            try:
                body = inflate(
                    await read_body(receive, limit), headers.get(b"content-encoding"), limit
                )
                request = v2.parse_request(
                    body, headers.get(b"inference-header-content-length"), servable.signature
                )
                images = servable.model.check_input(request.images)
            except BaseException:
                batcher.forget()
                raise
            logits = await batcher.infer(images, expected=True)
            payload, header_length = v2.encode_response(
                servable.name, request, logits, servable.signature.labels
            )
        except (v2.ProtocolError, harness.ContractError) as e:
            status = getattr(e, "status", 400)
            payload = v2.error_body(str(e))
        except ConnectionAbortedError:
            return
        except Exception as e:  # a runtime failure: the server stays up and says so
            log.exception("inference failed")
            message = self.server.public(f"inference failed: {type(e).__name__}: {e}")
            status, payload = 500, v2.error_body(message)
        await respond(send, status, payload, header_length)
        stats.request("v2", time.perf_counter() - started, status)


class BodyTooLarge(Exception):
    pass


def limited(receive, limit: int):
    """`receive` that raises BodyTooLarge once the body passes `limit` bytes."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(f"request body over the {limit}-byte limit")
        return message

    return wrapped


def create_app(config: ServeConfig) -> App:
    from serve.routes import control_app

    server = Server(config)
    return App(server, control_app(server))
