"""The server assembled: one `Registry` of the repository's variants, one `Admission`
budget, the model control policy, the FastAPI routes, gRPC, and the raw V2 infer route in
front of them all.

    app = create_app(ServeConfig(repository=Path("artifacts/model_repository")))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from serve import grpc_api, routes
from serve.admission import Admission
from serve.config import ServeConfig
from serve.dataplane import App
from serve.model_control import ModelControl
from serve.registry import Registry

log = logging.getLogger("serve")


def create_app(config: ServeConfig) -> App:
    """The ASGI app: serve/dataplane.py's App (V2 infer, limits) in front of the FastAPI
    routes of serve/routes.py. Live at once; ready once every variant has loaded and passed
    its check (`Registry.not_ready`)."""
    registry = Registry(config)
    admission = Admission(config.max_inflight)
    control = ModelControl(config.model_control, config.control_token, config.host, config.port)

    stopping = threading.Event()

    def load() -> None:
        admission.json_workers()  # before ready: starting processes later would stall a request
        registry.load_all()
        while config.model_control == "poll" and not stopping.wait(config.poll_interval_s):
            try:
                registry.poll()
            except Exception:  # a bad folder must not end the rollouts of the others
                log.exception("polling the model repository failed")

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=load, name="load-variants", daemon=True).start()
        async with grpc_api.running(registry, admission):  # stopped before the batchers close
            yield
        stopping.set()
        admission.close()
        registry.close()

    api = routes.fastapi_app(registry, admission, control, lifespan)
    return App(registry, admission, api)
