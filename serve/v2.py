"""Open Inference Protocol (KServe V2) REST codec: bytes in, tensors out (their contents:
serve/tensors.py; the answer: serve/v2_response.py). Pure functions, no framework and no
model, so the hot path stays cheap and every rule is testable on its own. Extensions:

- binary tensor data: the body is a JSON header followed by raw tensors back to back;
  `Inference-Header-Content-Length` says where the JSON ends and each binary tensor
  carries `parameters.binary_data_size`. Responses are laid out the same way.
- classification: output parameter `classification: k` turns logits into a BYTES
  tensor [N, k] of "probability:index:label", best first.

https://github.com/kserve/open-inference-protocol (inference_rest.md)
https://github.com/triton-inference-server/server/tree/main/docs/protocol
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import orjson

from serve.errors import ProtocolError, quoted
from serve.tensors import decode, json_pixels

VERSION = "1"  # the version of a variant exported before versions (export/versions.py)
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "statistics"]


@dataclass(frozen=True)
class Signature:
    """What one model takes and gives, read once from its manifest."""

    input_name: str
    output_name: str
    labels: tuple[str, ...]


@dataclass(slots=True)
class Output:
    name: str
    binary: bool
    classification: int  # 0: the logits themselves; k: top-k "probability:index:label"


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"JSON constant {name} is not a number: inputs must be finite")


def load_json(raw: bytes, what: str) -> object:
    """orjson first (a sixth of the stdlib's time); what it refuses, the stdlib's decoder: what
    was always accepted (UTF-16, lone surrogates) passes, errors name the fault (NaN)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        if isinstance(e, ProtocolError):
            raise
        raise ProtocolError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise ProtocolError(f"{what} nests too deeply") from None


def _dict(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {quoted(value)}")
    return value


def _flag(params: dict, key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"parameter {key} must be true or false, got {quoted(value)}")
    return value


def _shape(value: object, name: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(type(d) is int and d >= 0 for d in value)
    ):
        raise ProtocolError(f"input {name}: shape must be a list of non-negative integers")
    return value


def check_input(name: object, datatype: object, shape: object, sig: Signature) -> list[int]:
    """The input tensor's name, datatype and shape as declared, for REST and gRPC alike."""
    if name != sig.input_name:
        raise ProtocolError(
            f"unknown input {quoted(name)}; the model's input is {sig.input_name!r}"
        )
    if datatype != "FP32":
        raise ProtocolError(f"input {name}: datatype {quoted(datatype)}, the model takes FP32")
    return _shape(shape, name)


def _binary(body: bytes, start: int, size: int, shape: list[int], name: str) -> memoryview:
    """The binary tensor's bytes, once the body holds exactly its declared size."""
    have = len(body) - start
    if have != size:
        problem = "truncated" if have < size else f"followed by {have - size} stray bytes"
        raise ProtocolError(
            f"input {name}: binary data {problem}: expected {size} bytes after the "
            f"{start}-byte JSON header, got {have}"
        )
    return memoryview(body)[start:]


def header_end(body: bytes, header_length: bytes | None) -> int:
    """Where the JSON header ends: the whole body, or `Inference-Header-Content-Length`."""
    if header_length is None:
        return len(body)
    text = header_length.decode("latin-1")
    if not text.isdigit():
        raise ProtocolError(f"{HEADER_LENGTH} must be a non-negative integer, got {quoted(text)}")
    end = int(text)
    if not 0 < end <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {end} does not fit a body of {len(body)} bytes")
    return end


PLANS = 64  # binary request headers remembered per model (serve/models.py: Servable.plans)
PLAN_BYTES = 1024  # a header longer than this is parsed each time, never remembered


@dataclass(slots=True)
class Plan:
    """A request's JSON header, parsed and checked: all but its tensor. A binary client sends
    one header for every request of one shape: the model remembers plans by the header's
    bytes. `answer`: the response's JSON header, and the (model, version, shape) it is for."""

    name: str
    shape: list[int]
    size: int | None  # bytes of the binary tensor; None: the tensor is JSON data
    id: str | None
    outputs: list[Output]
    answer: tuple[tuple, bytes] | None = None


@dataclass(slots=True)
class Request:
    id: str | None
    images: np.ndarray  # float32, the shape the client declared (the contract is checked later)
    outputs: list[Output]
    plan: Plan | None = None  # set for a binary request (its header's parse, shared)


def parse_request(
    body: bytes, header_length: bytes | None, sig: Signature, plans: dict | None = None
) -> Request:
    """One V2 inference request -> the input tensor and what to answer with. `plans`: the
    model's remembered headers (Plan); emptied when full, so they never grow past PLANS."""
    end = header_end(body, header_length)
    key = body[:end] if plans is not None and header_length is not None else None
    plan = plans.get(key) if key is not None else None
    if plan is None:
        header = _dict(load_json(body[:end], "inference header"), "inference header")
        if header_length is None and (request := _usual_json(header, sig)) is not None:
            return request
        plan = _plan(header, sig)
        if plan.size is None:  # the tensor is JSON data in the header
            if end != len(body):
                raise ProtocolError(
                    f"{len(body) - end} bytes after the JSON header, no binary input"
                )
            images = decode(header["inputs"][0]["data"], plan.shape, plan.name)
            return Request(plan.id, images, plan.outputs)
        if key is not None and len(key) <= PLAN_BYTES:
            if len(plans) >= PLANS:
                plans.clear()
            plans[key] = plan
    data = _binary(body, end, plan.size, plan.shape, plan.name)
    images = decode(data, plan.shape, plan.name, "binary data")
    return Request(plan.id, images, plan.outputs, plan)


def _usual_json(header: dict, sig: Signature) -> Request | None:
    """The usual JSON request, checked in one function: {"inputs": [{"name", "datatype",
    "shape", "data"}]} and maybe a string "id", flat data in the pixel range. Anything else
    (or anything wrong): None, and `_plan` and `decode` check it and say what is wrong."""
    inputs = header.get("inputs")
    request_id = header.get("id")
    if (
        type(inputs) is not list
        or len(inputs) != 1
        or len(header) != (1 if request_id is None else 2)
        or (request_id is not None and type(request_id) is not str)
    ):
        return None
    tensor = inputs[0]
    if type(tensor) is not dict or len(tensor) != 4:
        return None
    shape = tensor.get("shape")
    if (
        tensor.get("name") != sig.input_name
        or tensor.get("datatype") != "FP32"
        or type(shape) is not list
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        return None
    images = json_pixels(tensor.get("data"), math.prod(shape))
    if images is None:
        return None
    return Request(request_id, images.reshape(shape), [Output(sig.output_name, False, 0)])


def _plan(header: dict, sig: Signature) -> Plan:
    """The header's checked plan; `size` None when its input carries JSON data."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise ProtocolError(f"inputs must be a list holding the one input {sig.input_name!r}")
    tensor = _dict(inputs[0], "input")
    name = tensor.get("name")
    shape = check_input(name, tensor.get("datatype"), tensor.get("shape"), sig)
    size = _dict(tensor.get("parameters"), "input parameters").get("binary_data_size")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"id must be a string, got {quoted(request_id)}")
    if size is None:
        if "data" not in tensor:
            raise ProtocolError(f"input {name} has neither data nor parameters.binary_data_size")
        return Plan(name, shape, None, request_id, parse_outputs(header, sig))
    if "data" in tensor:
        raise ProtocolError(f"input {name} has both data and binary_data_size")
    count = math.prod(shape)
    if type(size) is not int or size != 4 * count:
        raise ProtocolError(
            f"input {name}: binary_data_size {quoted(size)} does not match shape {shape} "
            f"(FP32: {4 * count} bytes)"
        )
    return Plan(name, shape, size, request_id, parse_outputs(header, sig))


def parse_outputs(header: dict, sig: Signature) -> list[Output]:
    binary = _flag(_dict(header.get("parameters"), "parameters"), "binary_data_output", False)
    requested = header.get("outputs")
    if requested is None:
        return [Output(sig.output_name, binary, 0)]
    if not isinstance(requested, list) or len(requested) != 1:
        raise ProtocolError(f"outputs must be a list holding the one output {sig.output_name!r}")
    output = _dict(requested[0], "output")
    if output.get("name") != sig.output_name:
        raise ProtocolError(
            f"unknown output {quoted(output.get('name'))}; "
            f"the model's output is {sig.output_name!r}"
        )
    params = _dict(output.get("parameters"), "output parameters")
    k = params.get("classification", 0)
    if type(k) is not int or not 0 <= k <= len(sig.labels):
        raise ProtocolError(
            f"classification must be an integer 1..{len(sig.labels)}, got {quoted(k)}"
        )
    return [Output(sig.output_name, _flag(params, "binary_data", binary), k)]


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
