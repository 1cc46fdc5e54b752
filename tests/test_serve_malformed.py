# ruff: noqa: E501  (the cases below read as a table: one request per line)
"""Malformed requests, live: each gets a 4xx JSON error naming the problem, none a 5xx,
and the server keeps serving."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from serve_live import Live, subset

pytestmark = pytest.mark.slow  # needs the exported repository and a live server
MODEL = "torch.onnx"
INFER = f"/v2/models/{MODEL}/infer"
LIMIT_MB = 1


@pytest.fixture(scope="module")
def live(serve_root, tmp_path_factory):
    root = serve_root
    tmp = tmp_path_factory.mktemp("malformed")
    repo = subset(root / "repo", tmp / "repo", [MODEL, "torch.tflite-int8"])
    server = Live(repo, "--golden", "none", "--max-body-mb", str(LIMIT_MB), log=tmp / "log")
    with server:
        yield server


def send(live, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def tensor(shape=(1, 8, 8, 1), **fields) -> dict:
    return {"name": "images", "datatype": "FP32", "shape": list(shape)} | fields


def v2_json(*inputs, **fields) -> bytes:
    return json.dumps({"inputs": list(inputs)} | fields).encode()


def ok_data(n: int = 1) -> list[float]:
    return [1.0] * (64 * n)


def binary(values: np.ndarray, size: int | None = None, **fields) -> tuple[bytes, dict]:
    params = {"binary_data_size": values.nbytes if size is None else size}
    header = json.dumps({"inputs": [tensor(parameters=params)]} | fields).encode()
    return header + values.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


PIXELS = np.ones((1, 8, 8, 1), np.float32)
BAD_PIXELS = PIXELS.copy()
BAD_PIXELS[0, 3, 3, 0] = np.nan
GOOD_BINARY, GOOD_HEADERS = binary(PIXELS)


def png(size=(16, 16), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(side: int = 60_000) -> bytes:
    """A valid PNG header claiming side x side grey pixels, with a tiny image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side + 1) * 64)  # the first 64 rows; the rest is "missing"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def multipart(field: str, filename: str, content: bytes, extra: dict | None = None):
    boundary = "tandemboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (extra or {}).items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


GZIP_BOMB = gzip.compress(b"\0" * (LIMIT_MB * 2**20 * 4))
UPLOAD = "/classify"
TF = f"/v1/models/{MODEL}:predict"
IMAGE = [[[1.0]] * 8] * 8

# (id, method, path, body, headers, status, words the error must contain)
CASES = [
    ("bad-json", "POST", INFER, b"{", {}, 400, "not valid JSON"),
    ("empty-body", "POST", INFER, b"", {}, 400, "not valid JSON"),
    ("json-array", "POST", INFER, b"[1, 2]", {}, 400, "must be a JSON object"),
    ("not-utf8", "POST", INFER, b"\xff\xfe{", {}, 400, "not valid JSON"),
    ("no-inputs", "POST", INFER, b"{}", {}, 400, "inputs must be a list"),
    ("inputs-not-list", "POST", INFER, b'{"inputs": 5}', {}, 400, "inputs must be a list"),
    ("two-inputs", "POST", INFER, v2_json(tensor(data=ok_data()), tensor(data=ok_data())), {}, 400, "one input"),
    ("input-not-object", "POST", INFER, b'{"inputs": [3]}', {}, 400, "must be a JSON object"),
    ("wrong-input-name", "POST", INFER, v2_json(tensor(name="x", data=ok_data())), {}, 400, "unknown input"),
    ("dtype-int32", "POST", INFER, v2_json(tensor(datatype="INT32", data=[1] * 64)), {}, 400, "datatype"),
    ("dtype-fp64-binary", "POST", INFER, binary(PIXELS.astype(np.float64))[0].replace(b"FP32", b"FP64"), binary(PIXELS.astype(np.float64))[1], 400, "datatype"),
    ("shape-not-list", "POST", INFER, v2_json(tensor(shape="1,8,8,1", data=ok_data())), {}, 400, "shape must be a list"),
    ("shape-negative", "POST", INFER, v2_json(tensor(shape=(-1, 8, 8, 1), data=ok_data())), {}, 400, "non-negative"),
    ("shape-float", "POST", INFER, v2_json(tensor(shape=(1.0, 8, 8, 1), data=ok_data())), {}, 400, "integers"),
    ("shape-rgb", "POST", INFER, v2_json(tensor(shape=(1, 8, 8, 3), data=ok_data(3))), {}, 400, "[N, 8, 8, 1]"),
    ("shape-nchw", "POST", INFER, v2_json(tensor(shape=(1, 1, 8, 8), data=ok_data())), {}, 400, "NHWC"),
    ("shape-3d", "POST", INFER, v2_json(tensor(shape=(8, 8, 1), data=ok_data())), {}, 400, "shape"),
    ("batch-zero", "POST", INFER, v2_json(tensor(shape=(0, 8, 8, 1), data=[])), {}, 400, "N >= 1"),
    ("data-shape-mismatch", "POST", INFER, v2_json(tensor(shape=(2, 8, 8, 1), data=ok_data())), {}, 400, "64 values in data"),
    ("data-strings", "POST", INFER, v2_json(tensor(data=["1.5"] * 64)), {}, 400, "numbers"),
    ("data-booleans", "POST", INFER, v2_json(tensor(data=[True] * 64)), {}, 400, "numbers"),
    ("data-jagged", "POST", INFER, v2_json(tensor(data=[[1.0] * 8] * 7 + [[1.0] * 9])), {}, 400, "numbers"),
    ("data-null", "POST", INFER, v2_json(tensor(data=None)), {}, 400, "numbers"),
    ("no-data", "POST", INFER, v2_json(tensor()), {}, 400, "neither data"),
    ("json-nan", "POST", INFER, v2_json(tensor(data=ok_data())).replace(b"1.0", b"NaN", 1), {}, 400, "NaN"),
    ("json-infinity", "POST", INFER, v2_json(tensor(data=ok_data())).replace(b"1.0", b"-Infinity", 1), {}, 400, "Infinity"),
    ("json-overflow", "POST", INFER, v2_json(tensor(data=ok_data())).replace(b"1.0", b"1e999", 1), {}, 400, "NaN or Inf"),
    ("pixels-negative", "POST", INFER, v2_json(tensor(data=[-5.0] * 64)), {}, 400, "outside 0..255"),
    ("pixels-normalised", "POST", INFER, v2_json(tensor(data=[300.0] * 64)), {}, 400, "outside 0..255"),
    ("binary-nan", "POST", INFER, *binary(BAD_PIXELS), 400, "NaN or Inf"),
    ("binary-truncated", "POST", INFER, GOOD_BINARY[:-100], GOOD_HEADERS, 400, "truncated"),
    ("binary-stray-bytes", "POST", INFER, GOOD_BINARY + b"xyz", GOOD_HEADERS, 400, "stray bytes"),
    ("binary-size-mismatch", "POST", INFER, *binary(PIXELS, size=128), 400, "does not match shape"),
    ("binary-size-string", "POST", INFER, *binary(PIXELS, size="256"), 400, "binary_data_size"),
    ("binary-and-data", "POST", INFER, v2_json(tensor(data=ok_data(), parameters={"binary_data_size": 256})), {}, 400, "both data"),
    ("header-length-past-body", "POST", INFER, GOOD_BINARY, {"Inference-Header-Content-Length": "99999"}, 400, "does not fit"),
    ("header-length-short", "POST", INFER, GOOD_BINARY, {"Inference-Header-Content-Length": "20"}, 400, "not valid JSON"),
    ("header-length-text", "POST", INFER, GOOD_BINARY, {"Inference-Header-Content-Length": "abc"}, 400, "non-negative integer"),
    ("header-length-zero", "POST", INFER, GOOD_BINARY, {"Inference-Header-Content-Length": "0"}, 400, "does not fit"),
    ("bytes-after-json", "POST", INFER, v2_json(tensor(data=ok_data())) + b"junk", {"Inference-Header-Content-Length": str(len(v2_json(tensor(data=ok_data()))))}, 400, "bytes after the JSON header"),
    ("unknown-output", "POST", INFER, v2_json(tensor(data=ok_data()), outputs=[{"name": "probs"}]), {}, 400, "unknown output"),
    ("classification-too-big", "POST", INFER, v2_json(tensor(data=ok_data()), outputs=[{"name": "logits", "parameters": {"classification": 11}}]), {}, 400, "classification"),
    ("classification-string", "POST", INFER, v2_json(tensor(data=ok_data()), outputs=[{"name": "logits", "parameters": {"classification": "3"}}]), {}, 400, "classification"),
    ("binary-output-flag", "POST", INFER, v2_json(tensor(data=ok_data()), parameters={"binary_data_output": "yes"}), {}, 400, "binary_data_output"),
    ("id-not-string", "POST", INFER, v2_json(tensor(data=ok_data()), id=7), {}, 400, "id must be a string"),
    ("json-nesting-bomb", "POST", INFER, b"[" * 200_000, {}, 400, "nests too deeply"),
    ("unknown-model", "POST", "/v2/models/nope/infer", GOOD_BINARY, GOOD_HEADERS, 404, "unknown model"),
    ("unknown-version", "POST", f"/v2/models/{MODEL}/versions/2/infer", GOOD_BINARY, GOOD_HEADERS, 404, "serves version 1, not '2'"),
    ("path-dotdot", "POST", "/v2/models/../../etc/passwd/infer", GOOD_BINARY, GOOD_HEADERS, 404, "no route"),
    ("path-encoded-slash", "POST", f"/v2/models/{MODEL}%2F..%2Fx/infer", GOOD_BINARY, GOOD_HEADERS, 404, "no route"),
    ("path-empty-version", "POST", f"/v2/models/{MODEL}/versions//infer", GOOD_BINARY, GOOD_HEADERS, 404, "no route"),
    ("body-over-limit", "POST", INFER, b" " * (LIMIT_MB * 2**20 + 1), {}, 413, "limit"),
    ("gzip-garbage", "POST", INFER, b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ("gzip-truncated", "POST", INFER, gzip.compress(GOOD_BINARY)[:-12], {"Content-Encoding": "gzip", **GOOD_HEADERS}, 400, "truncated"),
    ("gzip-bomb", "POST", INFER, GZIP_BOMB, {"Content-Encoding": "gzip"}, 413, "decompressed body"),
    ("encoding-unknown", "POST", INFER, GOOD_BINARY, {"Content-Encoding": "br", **GOOD_HEADERS}, 415, "Content-Encoding"),
    ("metadata-unknown-model", "GET", "/v2/models/nope", b"", {}, 404, "unknown model"),
    ("metadata-unknown-version", "GET", f"/v2/models/{MODEL}/versions/9", b"", {}, 404, "serves version 1, not '9'"),
    ("ready-path-dotdot", "GET", "/v2/models/../v2/health/ready", b"", {}, 404, "no route"),
    ("unknown-route", "GET", "/v3/anything", b"", {}, 404, "no route"),
    ("wrong-method", "POST", "/v2/health/live", b"", {}, 405, "not allowed"),
    ("index-not-object", "POST", "/v2/repository/index", b"[1]", {}, 400, "request body"),
    ("index-bad-json", "POST", "/v2/repository/index", b"{", {}, 400, "not valid JSON"),
    ("tf-bad-json", "POST", TF, b"{nope", {}, 400, "not valid JSON"),
    ("tf-neither", "POST", TF, b"{}", {}, 400, "exactly one of instances"),
    ("tf-both", "POST", TF, json.dumps({"instances": [IMAGE], "inputs": [IMAGE]}).encode(), {}, 400, "exactly one"),
    ("tf-empty-instances", "POST", TF, b'{"instances": []}', {}, 400, "non-empty"),
    ("tf-signature", "POST", TF, json.dumps({"signature_name": "x", "instances": [IMAGE]}).encode(), {}, 400, "signature_name"),
    ("tf-wrong-shape", "POST", TF, json.dumps({"instances": [[[1.0] * 8] * 8]}).encode(), {}, 400, "shape"),
    ("tf-wrong-key", "POST", TF, json.dumps({"instances": [{"pixels": IMAGE}]}).encode(), {}, 400, "one input"),
    ("tf-nan", "POST", TF, json.dumps({"inputs": [IMAGE]}).replace("1.0", "NaN", 1).encode(), {}, 400, "NaN"),
    ("tf-unknown-model", "POST", "/v1/models/nope:predict", b'{"inputs": []}', {}, 404, "unknown model"),
    ("upload-not-multipart", "POST", UPLOAD, b"{}", {"Content-Type": "application/json"}, 415, "multipart"),
    ("upload-no-image-field", "POST", UPLOAD, *multipart("file", "x.png", png()), 400, "field named image"),
    ("upload-text-file", "POST", UPLOAD, *multipart("image", "x.txt", b"hello, not an image"), 415, "not a PNG, JPEG or WEBP"),
    ("upload-gif", "POST", UPLOAD, *multipart("image", "x.gif", b"GIF89a" + b"\0" * 40), 415, "not a PNG, JPEG or WEBP"),
    ("upload-truncated-png", "POST", UPLOAD, *multipart("image", "x.png", png((64, 64))[:60]), 400, "cannot decode"),
    ("upload-empty", "POST", UPLOAD, *multipart("image", "x.png", b""), 400, "empty"),
    ("upload-decompression-bomb", "POST", UPLOAD, *multipart("image", "bomb.png", png_bomb()), 413, "pixels"),
    ("upload-bad-k", "POST", UPLOAD, *multipart("image", "x.png", png(), {"k": "0"}), 400, "k must be"),
    ("upload-bad-invert", "POST", UPLOAD, *multipart("image", "x.png", png(), {"invert": "maybe"}), 400, "invert"),
    ("upload-unknown-model", "POST", "/classify/nope", *multipart("image", "x.png", png()), 404, "unknown model"),
    ("upload-over-limit", "POST", UPLOAD, *multipart("image", "x.png", b"\0" * (LIMIT_MB * 2**20)), 413, "limit"),
]  # fmt: skip


@pytest.mark.parametrize(
    "method, path, body, headers, status, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_request_gets_a_4xx_naming_the_problem(
    live, method, path, body, headers, status, words
):
    got, raw = send(live, method, path, body, headers)
    answer = json.loads(raw)
    assert got == status, answer
    assert words in answer["error"], answer["error"]


def test_enough_cases():
    assert len(CASES) >= 40


def test_server_still_serves_after_abuse(live):
    # A client that promises more body than it sends, then hangs up.
    with socket.create_connection(("127.0.0.1", live.port)) as s:
        s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{".encode())
    status, body = live.get("/v2/health/ready")
    assert status == 200, body
    status, raw = send(live, "POST", INFER, GOOD_BINARY, GOOD_HEADERS)
    assert status == 200 and raw.startswith(b"{")
    status, raw = send(live, "GET", "/v2/models/stats")
    errors = json.loads(raw)["model_stats"][0]["inference_stats"]["fail"]["count"]
    assert errors >= 30
