"""Peer: Triton (the `tritonserver` 2.51 binary nvidia-pytriton 0.7 bundles) serving the
ONNX file through ONNX Runtime in a PyTriton Python function, dynamic batching on.

    <peers venv>/bin/python benchmarks/peer_triton.py MODEL.onnx --port PORT

Runs under the peers' venv (numpy < 2), so it imports nothing of this project. The model
is served as `model`, V2 HTTP on 127.0.0.1:PORT; ONNX Runtime on one thread.
"""

import argparse
import socket

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MAX_BATCH = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    (images,), (logits,) = session.get_inputs(), session.get_outputs()

    @batch
    def infer(**inputs):
        return {logits.name: session.run(None, {images.name: inputs[images.name]})[0]}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_address="127.0.0.1",
        grpc_port=free_port(),
        metrics_port=free_port(),
        allow_metrics=False,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="model",
            infer_func=infer,
            inputs=[Tensor(name=images.name, dtype=np.float32, shape=tuple(images.shape[1:]))],
            outputs=[Tensor(name=logits.name, dtype=np.float32, shape=tuple(logits.shape[1:]))],
            config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher()),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
