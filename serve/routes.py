"""Every route but inference (V2 infer and TF Serving's predict: serve/dataplane.py):
health, metadata, repository, statistics, TF Serving's status and metadata, image upload,
metrics and the web page. FastAPI, with bodies read raw (tritonclient sends no
Content-Type, and FastAPI's typed bodies would answer 422 for it) and errors as
`{"error": "..."}` like the data plane."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

import harness
from serve import images, models, tfserving, v2
from serve.admission import RETRY_AFTER_S, Admission
from serve.batching import QueueFull
from serve.limits import BodyTimeout, BodyTooLarge
from serve.metrics import Timed, render
from serve.model_control import ModelControl
from serve.registry import Registry

log = logging.getLogger("serve")

STATIC = Path(__file__).with_name("static")
PAGE, PAD = STATIC / "index.html", STATIC / "pad.js"  # the pad is the web site's too
NO_CACHE = {"Cache-Control": "no-cache"}
MAX_TOP_K = 10


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)} | (headers or {})
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def fastapi_app(
    registry: Registry, admission: Admission, model_control: ModelControl, lifespan=None
) -> FastAPI:
    """Every route but V2 infer; `lifespan` starts and stops what they share
    (serve/app.py)."""
    app = FastAPI(title="tandem", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    handlers(app, registry)
    v2_routes(app, registry, model_control)
    tf_routes(app, registry)
    upload_routes(app, registry)
    return app


def handlers(app: FastAPI, registry: Registry) -> None:
    @app.exception_handler(v2.ProtocolError)
    async def protocol(request: Request, e: v2.ProtocolError):
        return error(e.status, str(e), getattr(e, "headers", None))

    @app.exception_handler(harness.ContractError)
    async def contract(request: Request, e: harness.ContractError):
        return error(400, str(e))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception):
        return error(500, registry.without_paths(f"{type(e).__name__}: {e}"))

    @app.exception_handler(images.ImageError)
    async def image(request: Request, e: images.ImageError):
        return error(e.status, str(e))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, e: BodyTooLarge):
        return error(413, str(e))

    @app.exception_handler(BodyTimeout)
    async def too_slow(request: Request, e: BodyTimeout):
        return JSONResponse({"error": str(e)}, 408, headers={"Connection": "close"})

    @app.exception_handler(QueueFull)
    async def busy(request: Request, e: QueueFull):
        return error(503, f"model busy: {e}; retry")

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, e: ClientDisconnect):
        # Nobody is left to answer; one line, not a traceback per dropped client.
        log.info("client went away during %s %s", request.method, v2.quoted(request.url.path))
        return Response(status_code=499)

    @app.exception_handler(HTTPException)
    async def http(request: Request, e: HTTPException):
        if e.status_code == 404:
            return error(404, f"no route {request.method} {v2.quoted(request.url.path)}")
        if e.status_code == 405:
            return error(405, f"{request.method} is not allowed on {v2.quoted(request.url.path)}")
        return error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
        return error(400, problems)


def v2_routes(app: FastAPI, registry: Registry, model_control: ModelControl) -> None:
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        reason = registry.not_ready()
        if reason:
            return error(503, reason)
        unproven = {s.name: models.inconclusive(s) for s in registry.models.values()}
        unproven = {name: why for name, why in unproven.items() if why}
        # Inconclusive variants serve (too few labelled images to judge is no defect),
        # and readiness says which and why.
        return {"ready": True} | ({"parity_inconclusive": unproven} if unproven else {})

    @app.get("/v2")
    async def server_metadata():
        version = importlib.metadata.version("tandem")
        return {"name": "tandem", "version": version, "extensions": v2.EXTENSIONS}

    @app.get("/v2/models/stats")  # before /v2/models/{name}, which would take "stats"
    async def all_stats():
        return {
            "model_stats": [s.stats.triton(s.name, s.version) for s in registry.models.values()]
        }

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        return registry.get(name, version).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        servable = registry.get(name, version)
        body = {"name": name, "ready": servable.ready}
        if not servable.ready:
            return JSONResponse(body | {"error": servable.reason}, 503)
        why = models.inconclusive(servable)
        return body | ({"parity": "inconclusive", "reason": why} if why else {})

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(name: str, version: str | None = None):
        """This server's view in Triton's config shape: what it batches, and how."""
        servable = registry.get(name, version)
        meta, c = servable.metadata(), registry.config

        def tensor(spec: dict) -> dict:
            return {
                "name": spec.get("name"),
                "data_type": "TYPE_FP32",
                "dims": spec.get("shape", [])[1:],
            }

        return {
            "name": name,
            "platform": meta["platform"],
            "max_batch_size": servable.max_batch,
            "input": [tensor(t) for t in meta["inputs"]],
            "output": [tensor(t) for t in meta["outputs"]],
            "dynamic_batching": {"max_queue_delay_microseconds": int(c.max_delay_ms * 1000)},
        }

    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def model_stats(name: str, version: str | None = None):
        servable = registry.get(name, version)
        return {"model_stats": [servable.stats.triton(name, servable.version)]}

    @app.post("/v2/repository/index")
    async def index(request: Request):
        body = await request.body()
        query = v2.load_json(body, "request body") if body.strip() else {}
        if not isinstance(query, dict) or not isinstance(query.get("ready", False), bool):
            raise v2.ProtocolError('request body must be {} or {"ready": true|false}')
        rows = [
            {"name": s.name, "version": s.version, "state": s.state, "reason": s.reason}
            for s in registry.models.values()
            if not query.get("ready") or s.ready
        ]
        return rows

    # Off unless started with --model-control explicit; then token, Host and Origin
    # are checked before the name is even looked at (serve/model_control.py).
    @app.post("/v2/repository/models/{name}/load")
    async def load(request: Request, name: str):
        model_control.authorize(request.headers)
        fresh = await run_in_threadpool(registry.reload, name)
        if not fresh.ready:
            raise v2.ProtocolError(f"model {name} failed to load: {fresh.reason}")
        return {}

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(request: Request, name: str):
        model_control.authorize(request.headers)
        registry.unload(name)
        return {}

    @app.get("/metrics")
    async def metrics():
        return Response(render(registry.metrics), media_type="text/plain; version=0.0.4")


def tf_routes(app: FastAPI, registry: Registry) -> None:
    @app.get("/v1/models/{name}")
    @app.get("/v1/models/{name}/versions/{version}")
    async def status(name: str, version: str | None = None):
        servable = registry.get(name, version)
        return tfserving.status(servable.ready, servable.reason, servable.version)

    @app.get("/v1/models/{name}/metadata")
    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def metadata(name: str, version: str | None = None):
        return tfserving.metadata(name, registry.serving(name, version).manifest)


def upload_routes(app: FastAPI, registry: Registry) -> None:
    """The web page, and the image upload it posts to (for people, not programs)."""

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(), headers=NO_CACHE)

    @app.get("/pad.js")
    async def pad():
        return FileResponse(PAD, media_type="text/javascript", headers=NO_CACHE)

    @app.post("/classify")
    @app.post("/classify/{name}")
    async def classify(request: Request, name: str | None = None):
        """multipart/form-data: `image` (PNG, JPEG or WebP), optional `k` and `invert`."""
        form = await read_form(request)
        upload, k, invert = form["image"], form["k"], form["invert"]
        chosen = [registry.get(name)] if name else list(registry.models.values())
        shapes = {s.model.input_shape for s in chosen if s.ready}
        # One decode per input shape, off the event loop: a large photo takes milliseconds.
        decoded = {
            shape: await run_in_threadpool(images.decode, upload, shape, invert) for shape in shapes
        }
        results = await asyncio.gather(*(classify_one(s, decoded, k) for s in chosen))
        tops = {r["top"][0]["label"] for r in results if "top" in r}
        top1 = tops.pop() if len(tops) == 1 else None
        return {"results": results, "agree": top1 is not None, "top1": top1}


async def read_form(request: Request) -> dict:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise v2.ProtocolError(
            "send multipart/form-data with the image in a field named image", 415
        )
    try:
        form = await request.form(max_files=1, max_fields=4)
    except (HTTPException, ValueError, AssertionError) as e:
        raise v2.ProtocolError(f"malformed multipart body: {getattr(e, 'detail', e)}") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise v2.ProtocolError("no file in the form field named image")
    k, invert = form.get("k", "3"), form.get("invert", "false")
    if not isinstance(k, str) or not k.isdigit() or not 1 <= int(k) <= MAX_TOP_K:
        raise v2.ProtocolError(f"k must be an integer 1..{MAX_TOP_K}, got {v2.quoted(k)}")
    if invert not in ("true", "false"):
        raise v2.ProtocolError(f"invert must be true or false, got {v2.quoted(invert)}")
    return {"image": await upload.read(), "k": int(k), "invert": invert == "true"}


async def classify_one(servable: models.Servable, decoded: dict, k: int) -> dict:
    with Timed("upload", servable.stats) as timed:
        if not servable.ready:
            timed.status = 503
            return {"model": servable.name, "error": f"not ready: {servable.reason}"}
        model = servable.model
        logits = await servable.batcher.infer(decoded[model.input_shape])
        return {"model": servable.name, "top": harness.top_k(logits, model.labels, k)[0]}
