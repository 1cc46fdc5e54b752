"""KServe V2 gRPC requests for the server benchmark: grpc.aio stubs on one channel, as a
client that multiplexes its calls over HTTP/2 would send them.

The request is built once, like the HTTP body, so the figure is the server's cost and
not the client's; tritonclient.grpc.aio would rebuild it on every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target)


def sender(
    channel: grpc.aio.Channel, model: str, images: np.ndarray
) -> Callable[[], Awaitable[bool]]:
    """One ModelInfer of `images` (raw_input_contents) per call; True when answered OK."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="images", datatype="FP32", shape=list(images.shape)
    )
    request = pb.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[images.astype("<f4").tobytes()]
    )

    async def send() -> bool:
        try:
            await stub.ModelInfer(request, timeout=30)
        except grpc.aio.AioRpcError:
            return False
        return True

    return send
