"""The limits a request body passes before anyone parses it: its size, its deadline (a
client that trickles its body must not hold a connection, memory or shutdown forever) and
its compression. The raw infer route (serve/dataplane.py) reads bodies with `read_body`;
the FastAPI routes get a `limited` receive."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable

from serve import v2


class BodyTooLarge(Exception):
    status = 413


class BodyTimeout(Exception):
    status = 408


def read_body(receive, limit: int, timeout: float, arrived: bool = False) -> Awaitable[bytes]:
    """The whole body, or 413 past `limit` bytes, or 408 past `timeout` seconds.
    `arrived`: the body is all here already (serve/connections.py), so no deadline. Returns
    the awaitable itself, not a coroutine around it: one frame less per request."""
    if arrived:
        return _read_body(receive, limit)
    return _read_body_within(receive, limit, timeout)


async def _read_body_within(receive, limit: int, timeout: float) -> bytes:
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
        raise v2.ProtocolError(f"Content-Encoding {v2.quoted(encoding)} unsupported", 415)
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
