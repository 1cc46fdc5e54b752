"""The data plane: `POST /v2/models/<m>[/versions/<v>]/infer` and TF Serving's
`POST /v1/models/<m>[/versions/<v>]:predict` as raw ASGI routes, and the limits every
request passes (body size and deadline, bytes in flight: serve/limits.py,
serve/admission.py) before the FastAPI routes of serve/routes.py.

The infer route reads the body once, splits JSON from binary tensors with np.frombuffer
and answers with prebuilt headers. FastAPI's request machinery costs about a third of the
throughput on such a path (measured on 2 cores: 1.46k req/s at c=16 through a FastAPI
JSON route, 2.11k through a bare ASGI one parsing the same JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import harness
from serve import tfserving, v2, v2_response
from serve.admission import RETRY_AFTER_S, Admission
from serve.batching import QueueFull
from serve.connections import BODY_ARRIVED, IN_FLIGHT
from serve.limits import inflate, limited, read_body
from serve.metrics import Timed, status_of
from serve.models import Servable
from serve.registry import Registry

log = logging.getLogger("serve")
JSON = b"application/json"
INFER_PREFIX, INFER_SUFFIX = "/v2/models/", "/infer"
PREDICT_PREFIX, PREDICT_SUFFIX = "/v1/models/", ":predict"


def infer_target(path: str) -> tuple[str, str | None]:
    """/v2/models/<name>[/versions/<v>]/infer -> (name, version)."""
    return target(path, INFER_PREFIX, INFER_SUFFIX)


def predict_target(path: str) -> tuple[str, str | None]:
    """/v1/models/<name>[/versions/<v>]:predict -> (name, version)."""
    return target(path, PREDICT_PREFIX, PREDICT_SUFFIX)


def target(path: str, prefix: str, suffix: str) -> tuple[str, str | None]:
    rest = path[len(prefix) : -len(suffix)]
    name, sep, version = rest.partition("/versions/")
    if not name or "/" in name or (sep and (not version or "/" in version)):
        raise v2.ProtocolError(f"no route POST {v2.quoted(path)}", 404)
    return name, version if sep else None


async def cut_by_shutdown(scope, send) -> None:
    """uvicorn cancels the requests still running when --shutdown-grace-s runs out (a
    client still sending its body, say). One log line, not the cancellation's traceback,
    and a 503 the client can retry elsewhere where no response had started (where one had,
    the server refuses a second start and the connection just closes)."""
    log.warning(
        "%s %s cut: the server stopped before it finished (--shutdown-grace-s)",
        scope["method"],
        v2.quoted(scope["path"]),
    )
    body = v2.error_body("the server is shutting down: send the request again")
    with contextlib.suppress(Exception):
        await respond(send, 503, body, close=True)


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
    everything else through `api`, the FastAPI app of serve/routes.py."""

    def __init__(self, registry: Registry, admission: Admission, api) -> None:
        self.registry, self.admission, self.api = registry, admission, api
        self.config = registry.config

    def admit(self, headers: dict) -> int:
        """Reserve the declared body size against the server-wide cap; 413 or 503."""
        try:
            declared = int(headers.get(b"content-length", 0))
        except ValueError:
            raise v2.ProtocolError("Content-Length is not a number") from None
        if declared > self.config.max_body:
            raise v2.ProtocolError(f"request body over the {self.config.max_body}-byte limit", 413)
        return self.admission.admit(declared)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path = scope["path"]
        try:  # no cost unless raised (zero-cost exceptions): the hot path pays nothing
            if scope["method"] == "POST":
                if path.startswith(INFER_PREFIX) and path.endswith(INFER_SUFFIX):
                    await self.infer(scope, receive, send)
                    return
                if path.startswith(PREDICT_PREFIX) and path.endswith(PREDICT_SUFFIX):
                    await self.infer(scope, receive, send, predict=True)
                    return
            try:
                held = self.admit(dict(scope["headers"]))
            except v2.ProtocolError as e:
                await respond(send, e.status, v2.error_body(str(e)))
                return
            try:
                receive = limited(receive, self.config.max_body, self.config.body_timeout_s)
                await self.api(scope, receive, send)
            finally:
                self.admission.release(held)
        except asyncio.CancelledError:
            await cut_by_shutdown(scope, send)

    async def infer(self, scope, receive, send, predict: bool = False) -> None:
        """One inference request, V2 or (`predict`) TF Serving's: the same limits, checks,
        batching and metrics; only the codec differs. One function on purpose: every layer
        a request passes costs it far more in a running server, its caches cold between
        requests, than in a loop (benchmarks/stages.py shows where the time goes)."""
        with Timed("tfserving" if predict else "v2", self.registry.unknown) as timed:
            header_length, held = None, 0
            try:
                path = scope["path"]
                servable = self.registry.serving(
                    *(predict_target(path) if predict else infer_target(path))
                )
                timed.stats = servable.stats
                headers = dict(scope["headers"])
                held = self.admit(headers)
                request, images = await self.receive_request(
                    servable, scope, headers, receive, predict
                )
                tasks = scope.get(IN_FLIGHT)
                alone = tasks is not None and len(tasks) == 1
                logits = await servable.batcher.infer(images, expected=True, alone=alone)
                if predict:  # request: the key TF Serving answers under
                    encode, args = tfserving.encode, (request, logits)
                    size, json_out = logits.nbytes * 4, True  # JSON text is ~4x the binary
                else:
                    encode = v2_response.encode_response
                    sig, version = servable.signature, servable.version
                    args = (servable.name, request, logits, sig.labels, version)
                    json_out = not request.outputs[0].binary  # the one output (v2.parse_outputs)
                    size = logits.nbytes * (4 if json_out else 1)
                if self.admission.inline(size):
                    answer = encode(*args)
                else:
                    answer = await self.admission.offload(size, encode, *args, json=json_out)
                payload, header_length = (answer, None) if predict else answer
            except (v2.ProtocolError, harness.ContractError) as e:
                timed.status, payload = status_of(e), v2.error_body(str(e))
            except QueueFull as e:
                message = f"model {servable.name} is busy: {e}; retry"
                timed.status, payload = status_of(e), v2.error_body(message)
            except ConnectionAbortedError:
                log.info("client went away before its request body arrived")
                timed.status = None
                return
            except Exception as e:  # a runtime failure: the server stays up and says so
                log.exception("inference failed")
                message = f"inference failed: {type(e).__name__}: {e}"
                timed.status, payload = 500, v2.error_body(self.registry.without_paths(message))
            finally:
                self.admission.release(held)
            # After a 408 the client is too slow to be worth keeping. After an early 413 or
            # 503 the connection stays: uvicorn discards the unread body, and the client
            # gets to read the answer instead of a broken pipe.
            status = timed.status
            await respond(send, status, payload, header_length, close=status == 408)

    async def receive_request(
        self, servable: Servable, scope: dict, headers: dict, receive, predict: bool
    ) -> tuple[v2.Request | str, object]:
        """The request read within the limits and parsed (off the loop when large), and its
        images under the contract; for `predict`, the key to answer under instead of the
        request. The model's batcher knows it is coming meanwhile."""
        batcher, config = servable.batcher, self.config
        batcher.expect()
        try:
            arrived = BODY_ARRIVED in scope
            body = await read_body(receive, config.max_body, config.body_timeout_s, arrived)
            if (encoding := headers.get(b"content-encoding")) is not None:
                body = inflate(body, encoding, config.max_body)
            if predict:
                parse, args = tfserving.parse_predict, (body, servable.signature.input_name)
                json_body = True
            else:
                split_at = headers.get(b"inference-header-content-length")
                parse = v2.parse_request
                args = (body, split_at, servable.signature, servable.plans)
                json_body = split_at is None
            if self.admission.inline(len(body)):
                parsed = parse(*args)
            else:
                parsed = await self.admission.offload(len(body), parse, *args, json=json_body)
            del body, args  # the tensor is a view of the body only for binary inputs
            if predict:
                images, key = parsed
                return key, servable.model.check_input(images)
            return parsed, servable.model.check_input(parsed.images)
        except BaseException:
            batcher.forget()
            raise
