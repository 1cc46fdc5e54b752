"""KServe V2 gRPC (`inference.GRPCInferenceService`) beside HTTP, on the same event loop.

    async with running(registry, admission):  # in the app's lifespan (serve/app.py)
        ...

The messages and the servicer base come compiled with tritonclient (`service_pb2`,
`service_pb2_grpc`: Triton's proto, the KServe V2 set plus Triton's extensions), so no
proto is compiled here; the methods this class leaves out answer UNIMPLEMENTED. Requests
go through the same `Registry` and `Admission` as HTTP: the same readiness, batcher, checks, metrics
(protocol "grpc", errors counted under the HTTP status they map from) and limits: message
size (--max-body-mb), bytes in flight (--max-inflight-mb, one budget with HTTP), calls
at once (--max-connections, as HTTP/1.1 serves one request per connection at a time), the
model's queue (--max-queue) and the shutdown grace (--shutdown-grace-s).

https://github.com/kserve/open-inference-protocol (inference_grpc.md)
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serve import tensors, v2, v2_response
from serve.admission import Admission
from serve.batching import QueueFull
from serve.metrics import Timed, status_of
from serve.registry import Registry

log = logging.getLogger("serve.grpc")
Code = grpc.StatusCode
# The server's errors carry HTTP statuses; gRPC clients get the matching code.
CODES = {
    400: Code.INVALID_ARGUMENT,
    404: Code.NOT_FOUND,
    413: Code.RESOURCE_EXHAUSTED,
    429: Code.RESOURCE_EXHAUSTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


def code_of(status: int) -> grpc.StatusCode:
    return CODES.get(status, Code.INVALID_ARGUMENT if status < 500 else Code.INTERNAL)


def answered(method):
    """Errors become a status code with the message, never a crash or a traceback."""

    @functools.wraps(method)
    async def wrapped(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except Exception as e:
            status = status_of(e)
            if status == 500:  # a runtime failure: the traceback stays in the log
                log.exception("%s failed", method.__name__)
                first = str(e).strip().partition("\n")[0]
                message = self.registry.without_paths(
                    f"{method.__name__} failed: {type(e).__name__}: {first}"
                )
            elif isinstance(e, QueueFull):
                message = f"model busy: {e}; retry"
            else:
                message = str(e)
            await context.abort(code_of(status), message)

    return wrapped


def parameter(value: pb.InferParameter) -> object:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def parse(request: pb.ModelInferRequest, sig: v2.Signature) -> tuple[np.ndarray, list[v2.Output]]:
    """The request's images (as declared; the contract is checked later) and outputs."""
    if len(request.inputs) != 1:
        raise v2.ProtocolError(
            f"inputs must hold the one input {sig.input_name!r}, got {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    shape = v2.check_input(tensor.name, tensor.datatype, list(tensor.shape), sig)
    contents = [field.name for field, _ in tensor.contents.ListFields()]
    raw = request.raw_input_contents
    if raw:
        if len(raw) != 1:
            raise v2.ProtocolError(
                f"raw_input_contents must hold 1 entry (one input), got {len(raw)}"
            )
        if contents:
            raise v2.ProtocolError(f"input {tensor.name} has both contents and raw_input_contents")
        data, where = raw[0], "raw_input_contents"
    elif contents == ["fp32_contents"]:
        data = np.asarray(tensor.contents.fp32_contents, np.float32)
        where = "contents.fp32_contents"
    elif contents:
        raise v2.ProtocolError(
            f"input {tensor.name}: FP32 values go in contents.fp32_contents, got "
            + ", ".join(f"contents.{name}" for name in contents)
        )
    else:
        raise v2.ProtocolError(
            f"input {tensor.name} has neither raw_input_contents nor contents.fp32_contents"
        )
    images = tensors.decode(data, shape, tensor.name, where)
    # The REST parser checks output names and the classification parameter: give it the
    # same request in JSON's shape.
    requested = [
        {"name": out.name, "parameters": {k: parameter(p) for k, p in out.parameters.items()}}
        for out in request.outputs
    ]
    return images, v2.parse_outputs({"outputs": requested or None}, sig)


def infer_response(
    model: str,
    request_id: str,
    outputs: list[v2.Output],
    logits: np.ndarray,
    labels: tuple,
    version: str = v2.VERSION,
) -> pb.ModelInferResponse:
    """Every output as raw_output_contents: FP32 little-endian, or BYTES with each element
    length-prefixed (the classification extension's "probability:index:label")."""
    answer = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for out in outputs:
        if out.classification:
            shape = [len(logits), out.classification]
            answer.outputs.add(name=out.name, datatype="BYTES", shape=shape)
            items = v2_response.classification(logits, out.classification, labels)
            answer.raw_output_contents.append(v2_response.bytes_tensor(items))
        else:
            answer.outputs.add(name=out.name, datatype="FP32", shape=logits.shape)
            answer.raw_output_contents.append(logits.astype("<f4", copy=False).tobytes())
    return answer


def tensor_metadata(spec: dict) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.get("name", ""), datatype=spec.get("datatype", ""), shape=spec.get("shape", [])
    )


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The KServe V2 methods (and Triton's statistics) over one `Registry`."""

    def __init__(self, registry: Registry, admission: Admission) -> None:
        self.registry, self.admission = registry, admission

    @answered
    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=not self.registry.not_ready())

    @answered
    async def ModelReady(self, request, context) -> pb.ModelReadyResponse:
        # Unknown model or version: NOT_FOUND, as HTTP answers 404.
        servable = self.registry.get(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=servable.ready)

    @answered
    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        version = importlib.metadata.version("tandem")
        return pb.ServerMetadataResponse(name="tandem", version=version, extensions=v2.EXTENSIONS)

    @answered
    async def ModelMetadata(self, request, context) -> pb.ModelMetadataResponse:
        meta = self.registry.get(request.name, request.version or None).metadata()
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor_metadata(t) for t in meta["inputs"]],
            outputs=[tensor_metadata(t) for t in meta["outputs"]],
        )

    @answered
    async def RepositoryIndex(self, request, context) -> pb.RepositoryIndexResponse:
        # The rows of HTTP's POST /v2/repository/index.
        Row = pb.RepositoryIndexResponse.ModelIndex
        rows = [
            Row(name=s.name, version=s.version, state=s.state, reason=s.reason)
            for s in self.registry.models.values()
            if not request.ready or s.ready
        ]
        return pb.RepositoryIndexResponse(models=rows)

    @answered
    async def ModelStatistics(self, request, context) -> pb.ModelStatisticsResponse:
        if request.name:
            chosen = [self.registry.get(request.name, request.version or None)]
        else:
            chosen = list(self.registry.models.values())
        return pb.ModelStatisticsResponse(
            model_stats=[
                json_format.ParseDict(s.stats.triton(s.name, s.version), pb.ModelStatistics())
                for s in chosen
            ]
        )

    @answered
    async def ModelInfer(self, request, context) -> pb.ModelInferResponse:
        with Timed("grpc", self.registry.unknown) as timed:
            held = 0
            try:
                servable = self.registry.serving(request.model_name, request.model_version or None)
                timed.stats = servable.stats
                size = request.ByteSize()
                held = self.admission.admit(size)  # one budget with HTTP
                # Large tensors are checked off the event loop, as HTTP bodies are.
                images, outputs = await self.admission.offload(
                    size, parse, request, servable.signature
                )
                logits = await servable.batcher.infer(servable.model.check_input(images))
                return infer_response(
                    servable.name,
                    request.id,
                    outputs,
                    logits,
                    servable.signature.labels,
                    servable.version,
                )
            finally:
                self.admission.release(held)


def unimplemented(name: str):
    async def method(self, request, context: grpc.aio.ServicerContext) -> None:
        await context.abort(Code.UNIMPLEMENTED, f"{name} is not implemented by this server")

    return method


# The base servicer's own answer is UNIMPLEMENTED too, but it raises inside a thread and
# grpc logs a traceback per call: a client probing for extensions would flood the log.
for _name in vars(pb_grpc.GRPCInferenceServiceServicer):
    if not _name.startswith("_") and _name not in vars(InferenceService):
        setattr(InferenceService, _name, unimplemented(_name))


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def running(
    registry: Registry, admission: Admission
) -> AsyncIterator[grpc.aio.Server | None]:
    """The gRPC server on --host:--grpc-port for the duration, or nothing without a port.
    Fails loudly when the port cannot be bound."""
    config = registry.config
    if not config.grpc_port:
        yield None
        return
    rpc = grpc.aio.server(
        maximum_concurrent_rpcs=config.max_connections,
        options=[
            ("grpc.max_receive_message_length", config.max_body),
            # grpc sets SO_REUSEPORT by default: a second server on a taken port would
            # start and silently share its traffic instead of failing.
            ("grpc.so_reuseport", 0),
        ],
    )
    service = InferenceService(registry, admission)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, rpc)
    where = address(config.host, config.grpc_port)
    rpc.add_insecure_port(where)  # raises RuntimeError when it cannot bind
    await rpc.start()
    log.info("KServe V2 gRPC on %s", where)
    try:
        yield rpc
    finally:
        await rpc.stop(config.shutdown_grace_s)
