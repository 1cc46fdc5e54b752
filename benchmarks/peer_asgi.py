"""Peers: a bare ASGI app under uvicorn (httptools, no framework), the least a Python
server can do per request.

    python benchmarks/peer_asgi.py MODEL.onnx --mode v2|v2-json|noop --port PORT

`v2`: KServe V2 binary-tensor infer at any POST path, the ONNX file through ONNX Runtime
(one thread) on the event loop, the V2 binary answer; no checks, no batching. `v2-json`:
the same with the tensor as JSON `data` both ways. `noop`: every POST answers 200 with an
empty JSON object without reading the tensor: the HTTP ceiling. GET answers 200 (health).
JSON through orjson, as tandem's server does. Imports nothing of this project.
"""

import argparse

import numpy as np
import orjson
import uvicorn

HEADER = b"inference-header-content-length"


async def read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def answer(send, body: bytes, headers: list | None = None, json: bool = False) -> None:
    kind = b"application/json" if json else b"application/octet-stream"
    headers = [(b"content-type", kind), *(headers or [])]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def parse(scope: dict, body: bytes, binary: bool) -> np.ndarray:
    if binary:
        size = int(dict(scope["headers"])[HEADER])
        tensor = orjson.loads(body[:size])["inputs"][0]
        return np.frombuffer(body[size:], np.float32).reshape(tensor["shape"])
    tensor = orjson.loads(body)["inputs"][0]
    return np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])


def encode(logits: np.ndarray, name: str, binary: bool) -> tuple[bytes, list]:
    """The answer's body and its extra headers."""
    output = {"name": name, "datatype": "FP32", "shape": list(logits.shape)}
    if not binary:
        output["data"] = logits.ravel().tolist()
        return orjson.dumps({"outputs": [output]}), []
    out = logits.astype("<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(out)}
    header = orjson.dumps({"outputs": [output]})
    return header + out, [(HEADER, str(len(header)).encode())]


def v2_app(model: str, binary: bool = True):
    """Each step a function of its own, so a sampling profiler names the stages
    (benchmarks/stages.py); a call costs a fraction of a microsecond."""
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
        images = parse(scope, body, binary)
        logits = session.run(None, {input_name: images})[0]
        body, headers = encode(logits, output_name, binary)
        await answer(send, body, headers, json=not binary)

    return app


async def noop_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await read_body(receive)
    await answer(send, b"{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .onnx file")
    modes = ("v2", "v2-json", "noop")
    parser.add_argument("--mode", choices=modes, required=True, help="what to serve")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    args = parser.parse_args()
    app = noop_app if args.mode == "noop" else v2_app(args.model, binary=args.mode == "v2")
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, http="httptools", lifespan="off", access_log=False
    )


if __name__ == "__main__":
    main()
