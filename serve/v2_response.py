"""The V2 REST answer: logits -> the response body, binary or JSON, logits or top-k
(`classification`), as serve/v2.py parses the request it answers.

https://github.com/kserve/open-inference-protocol (inference_rest.md)
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from harness import top_k
from serve.v2 import VERSION, Request


def classification(logits: np.ndarray, k: int, labels: tuple[str, ...]) -> list[bytes]:
    """Top-k per row as Triton writes it, "probability:index:label", row-major."""
    rows = top_k(logits, list(labels), k)
    return [f"{t['probability']:f}:{t['index']}:{t['label']}".encode() for row in rows for t in row]


def bytes_tensor(items: list[bytes]) -> bytes:
    """BYTES binary layout: each element as a little-endian uint32 length, then its bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def encode_response(
    model: str,
    request: Request,
    logits: np.ndarray,
    labels: tuple[str, ...],
    version: str = VERSION,
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length. A binary
    logits answer to a remembered request (Plan) reuses its JSON header: for one plan,
    model and version it only differs in the logits bytes."""
    plan, key = request.plan, (model, version, logits.shape)
    if plan is not None and plan.answer is not None and plan.answer[0] == key:
        text = plan.answer[1]
        return text + logits.tobytes(), len(text)
    if len(request.outputs) == 1:
        out = request.outputs[0]
        if not out.binary and not out.classification:
            return json_logits(model, version, out.name, request.id, logits), None
    outputs, blobs = [], []
    for out in request.outputs:
        if out.classification:
            items = classification(logits, out.classification, labels)
            tensor = {"name": out.name, "datatype": "BYTES"}
            tensor["shape"] = [logits.shape[0], out.classification]
            blob = bytes_tensor(items) if out.binary else None
            data = None if out.binary else [b.decode() for b in items]
        else:
            tensor = {"name": out.name, "datatype": "FP32", "shape": list(logits.shape)}
            blob = logits.tobytes() if out.binary else None
            data = None if out.binary else logits.ravel().tolist()
        if blob is None:
            tensor["data"] = data
        else:
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(tensor)
    header = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        header["id"] = request.id
    text = orjson.dumps(header)
    if not blobs:
        return text, None
    if plan is not None and all(out.binary and not out.classification for out in plan.outputs):
        plan.answer = (key, text)
    return b"".join([text, *blobs]), len(text)


HEADS = 64  # JSON answer heads kept, for every model, version, output and shape together
_heads: dict[tuple, bytes] = {}
_NULL_END = b"null}]}"


def json_logits(
    model: str, version: str, name: str, request_id: str | None, logits: np.ndarray
) -> bytes:
    """The usual JSON answer, logits as `data`, as `encode_response` would build it: the
    text before the numbers depends only on the model, version, output and shape, so it is
    built once and kept (emptied when HEADS are kept)."""
    key = (model, version, name, logits.shape)
    head = _heads.get(key)
    if head is None:
        tensor = {"name": name, "datatype": "FP32", "shape": list(logits.shape), "data": None}
        text = orjson.dumps({"model_name": model, "model_version": version, "outputs": [tensor]})
        head = text[: -len(_NULL_END)]
        if len(_heads) >= HEADS:
            _heads.clear()
        _heads[key] = head
    data = orjson.dumps(logits.ravel().tolist())
    if request_id is None:
        return b"".join((head, data, b"}]}"))
    return b"".join((head, data, b'}],"id":', orjson.dumps(request_id), b"}"))
