"""TensorFlow Serving's REST API over the one contract (https://www.tensorflow.org/tfx/serving/api_rest).

    POST /v1/models/<m>[/versions/1]:predict
    {"instances": [image, ...]}  or  {"instances": [{"images": image}, ...]}  (row)
        -> {"predictions": [logits, ...]}
    {"inputs": [image, ...]}     or  {"inputs": {"images": [image, ...]}}     (columnar)
        -> {"outputs": [logits, ...]}

An image is nested [H][W][C] numbers. With one output, TF Serving answers its values
directly rather than a dict keyed by output name; so does this.
"""

from __future__ import annotations

import numpy as np
import orjson

from export.versions import live
from serve import tensors, v2

SIGNATURE = "serving_default"


def parse_predict(body: bytes, input_name: str) -> tuple[np.ndarray, str]:
    """The images of a :predict body and the key to answer under."""
    request = v2.load_json(body, "request body")
    if not isinstance(request, dict):
        raise v2.ProtocolError("request body must be a JSON object with instances or inputs")
    signature = request.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise v2.ProtocolError(f"unknown signature_name {v2.quoted(signature)}; use {SIGNATURE!r}")
    if ("instances" in request) == ("inputs" in request):
        raise v2.ProtocolError("request body needs exactly one of instances (row) or inputs")
    if "instances" in request:
        rows, key = request["instances"], "predictions"
        if not isinstance(rows, list) or not rows:
            raise v2.ProtocolError("instances must be a non-empty list")
        if all(isinstance(row, dict) for row in rows):
            rows = [_named(row, input_name, "instance") for row in rows]
        data, what = rows, "instances"
    else:
        data, key, what = request["inputs"], "outputs", "inputs"
        if isinstance(data, dict):
            data = _named(data, input_name, "inputs")
    images = tensors.numbers(data, what)
    return tensors.pixels(images, "images"), key


def _named(value: dict, input_name: str, what: str) -> object:
    if set(value) != {input_name}:
        raise v2.ProtocolError(
            f"{what} names {sorted(value)!r:.80}; the model has one input {input_name!r}"
        )
    return value[input_name]


def encode(key: str, logits: np.ndarray) -> bytes:
    """The predict answer, {"predictions" | "outputs": [[logits], ...]}, as JSON bytes."""
    return orjson.dumps({key: logits.tolist()})


def status(ready: bool, reason: str, version: str = v2.VERSION) -> dict:
    """GET /v1/models/<m>: TF Serving's model version status."""
    state, code = ("AVAILABLE", "OK") if ready else ("UNAVAILABLE", "UNAVAILABLE")
    return {
        "model_version_status": [
            {
                "version": version,
                "state": state,
                "status": {"error_code": code, "error_message": reason},
            }
        ]
    }


def metadata(name: str, manifest: dict) -> dict:
    """GET /v1/models/<m>/metadata: the signature, in TF Serving's JSON shape."""

    def tensor(spec: dict) -> dict:
        dims = [{"size": str(d)} for d in spec["shape"]]
        return {"dtype": "DT_FLOAT", "tensor_shape": {"dim": dims}, "name": spec["name"]}

    signature = {
        "inputs": {manifest["input"]["name"]: tensor(manifest["input"])},
        "outputs": {manifest["output"]["name"]: tensor(manifest["output"])},
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": live(manifest)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    }
