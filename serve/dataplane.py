"""The data plane: `POST /v2/models/<m>[/versions/1]/infer` as a raw ASGI route, and the
limits every request passes (body size and deadline, bytes in flight) before the FastAPI
routes of serve/routes.py.

The infer route reads the body once, splits JSON from binary tensors with np.frombuffer
and answers with prebuilt headers. FastAPI's request machinery costs about a third of the
throughput on such a path (measured on 2 cores: 1.46k req/s at c=16 through a FastAPI
JSON route, 2.11k through a bare ASGI one parsing the same JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

import harness
from serve import v2
from serve.batching import QueueFull
from serve.server import RETRY_AFTER_S, Server

log = logging.getLogger("serve")
JSON = b"application/json"
INFER_PREFIX, INFER_SUFFIX = "/v2/models/", "/infer"


def infer_target(path: str) -> tuple[str, str | None]:
    """/v2/models/<name>[/versions/<v>]/infer -> (name, version)."""
    rest = path[len(INFER_PREFIX) : -len(INFER_SUFFIX)]
    name, sep, version = rest.partition("/versions/")
    if not name or "/" in name or (sep and (not version or "/" in version)):
        raise v2.ProtocolError(f"no route POST {v2.shown(path)}", 404)
    return name, version if sep else None


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

    def admit(self, headers: dict) -> int:
        """Reserve the declared body size against the server-wide cap; 413 or 503."""
        config = self.server.config
        try:
            declared = int(headers.get(b"content-length", 0))
        except ValueError:
            raise v2.ProtocolError("Content-Length is not a number") from None
        if declared > config.max_body:
            raise v2.ProtocolError(f"request body over the {config.max_body}-byte limit", 413)
        return self.server.admit(declared)

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
            await respond(send, e.status, v2.error_body(str(e)))
            return
        try:
            receive = limited(receive, config.max_body, config.body_timeout_s)
            await self.control(scope, receive, send)
        finally:
            self.server.release(held)

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
            message = self.server.public(f"inference failed: {type(e).__name__}: {e}")
            status, payload = 500, v2.error_body(message)
        finally:
            self.server.release(held)
        # After a 408 the client is too slow to be worth keeping. After an early 413 or 503
        # the connection stays: uvicorn discards the unread body, and the client gets to
        # read the answer instead of a broken pipe.
        await respond(send, status, payload, header_length, close=status == 408)
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
