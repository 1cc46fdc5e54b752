"""Peers: a bare ASGI app under uvicorn (httptools, no framework), the least a Python
server can do per request.

    python benchmarks/peer_asgi.py MODEL.onnx --mode v2|noop --port PORT

`v2`: KServe V2 binary-tensor infer at any POST path, the ONNX file through ONNX Runtime
(one thread) on the event loop, the V2 binary answer; no checks, no batching. `noop`: every
POST answers 200 with an empty JSON object without reading the tensor: the HTTP ceiling.
GET answers 200 (health). Imports nothing of this project.
"""

import argparse
import json

import numpy as np
import uvicorn

HEADER = b"inference-header-content-length"


async def read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def answer(send, body: bytes, headers: list | None = None) -> None:
    headers = [(b"content-type", b"application/octet-stream"), *(headers or [])]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def v2_app(model: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["method"] != "POST":
            return await answer(send, b"")
        size = int(dict(scope["headers"])[HEADER])
        tensor = json.loads(body[:size])["inputs"][0]
        images = np.frombuffer(body[size:], np.float32).reshape(tensor["shape"])
        logits = session.run(None, {input_name: images})[0]
        out = logits.astype("<f4").tobytes()
        header = json.dumps(
            {
                "outputs": [
                    {
                        "name": output_name,
                        "datatype": "FP32",
                        "shape": list(logits.shape),
                        "parameters": {"binary_data_size": len(out)},
                    }
                ]
            }
        ).encode()
        await answer(send, header + out, [(HEADER, str(len(header)).encode())])

    return app


async def noop_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await read_body(receive)
    await answer(send, b"{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--mode", choices=("v2", "noop"), required=True, help="what to serve")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    args = parser.parse_args()
    app = v2_app(args.model) if args.mode == "v2" else noop_app
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, http="httptools", lifespan="off", access_log=False
    )


if __name__ == "__main__":
    main()
