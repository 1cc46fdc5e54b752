"""The shortcuts of the serving hot path, each against the long way it skips: the usual
JSON request checked in one function gives what the full parser gives (the same images or
the same error), the kept JSON answer head builds the same bytes as the whole answer, a
batch joined as bytes is the numpy concatenation, and the runtime always gets an aligned,
writable array whether a request ran alone or in a batch."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import orjson
import pytest

from serve import tensors, v2, v2_response
from serve.batching import Batcher, joined

SIG = v2.Signature("images", "logits", tuple("abcdefghij"))
SHAPE = [1, 2, 2, 1]


def request(data, shape=SHAPE, **header) -> dict:
    tensor = {"name": "images", "datatype": "FP32", "shape": shape, "data": data}
    return {"inputs": [tensor], **header}


def parsed(header: dict) -> tuple:
    """(id, images as float32 bytes and shape, outputs) or the error's status and text."""
    try:
        got = v2.parse_request(json.dumps(header).encode(), None, SIG, {})
    except v2.ProtocolError as e:
        return ("error", e.status, str(e))
    outputs = [(o.name, o.binary, o.classification) for o in got.outputs]
    images = got.images
    assert images.dtype == np.float32 and images.flags.c_contiguous
    return (got.id, images.tobytes(), images.shape, outputs)


CASES = {
    "floats": [0.0, 1.5, 254.9, 255.0],
    "integers": [0, 1, 2, 255],
    "integers and floats": [0, 0.5, 200, 3.25],
    "minus zero": [-0.0, 1.0, 2.0, 3.0],
    "tiny": [1e-45, 1e-300, 2.0, 3.0],
    "a boolean inside": [0.0, True, False, 3.0],
    "a boolean at an end": [True, 1.0, 2.0, 3.0],
    "booleans only": [True, False, True, False],
    "a string among numbers": [0.0, "1", 2.0, 3.0],
    "strings only": ["0", "1", "2", "3"],
    "null": [0.0, None, 2.0, 3.0],
    "an object": [0.0, {}, 2.0, 3.0],
    "nested": [[0.0, 1.0], [2.0, 3.0]],
    "too few": [0.0, 1.0, 2.0],
    "too many": [0.0, 1.0, 2.0, 3.0, 4.0],
    "negative": [0.0, -0.5, 2.0, 3.0],
    "over the range": [0.0, 255.5, 2.0, 3.0],
    "rounds to 255 as float32": [0.0, 255.00001, 2.0, 3.0],
    "a huge integer": [0, 10**30, 2, 3],
    "not a list": 7.0,
    "empty": [],
}


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_the_usual_json_request_parses_as_the_full_parser_would(data):
    # An empty "parameters" object leaves the request's meaning unchanged but takes it
    # past the usual-request check, through the full parser.
    usual, full = request(data), request(data)
    full["inputs"][0]["parameters"] = {}
    assert parsed(usual) == parsed(full)


def test_the_usual_request_takes_the_short_way():
    for name in ("floats", "integers", "a boolean inside", "minus zero"):
        assert v2._usual_json(request(CASES[name]), SIG) is not None, name
    for name in ("nested", "strings only", "over the range", "a boolean at an end"):
        assert v2._usual_json(request(CASES[name]), SIG) is None, name


HEADERS = {
    "an id": {"id": "r1"},
    "a null id": {"id": None},
    "a numeric id": {"id": 5},
    "outputs": {"outputs": [{"name": "logits", "parameters": {"classification": 2}}]},
    "binary output": {"parameters": {"binary_data_output": True}},
    "another key": {"model": "x"},
}


@pytest.mark.parametrize("extra", HEADERS.values(), ids=HEADERS.keys())
def test_the_rest_of_the_header_is_read_as_before(extra):
    usual, full = request([0.0, 1.0, 2.0, 3.0], **extra), request([0.0, 1.0, 2.0, 3.0], **extra)
    full["inputs"][0]["parameters"] = {}
    assert parsed(usual) == parsed(full)


@pytest.mark.parametrize(
    "tensor",
    [
        {"name": "pixels"},
        {"datatype": "FP16"},
        {"shape": [1, 2, 2.0, 1]},
        {"shape": [1, 2, -2, 1]},
        {"shape": [1, 2, True, 1]},
        {"shape": []},
        {"shape": "1,2,2,1"},
    ],
    ids=repr,
)
def test_a_wrong_tensor_is_refused_as_before(tensor):
    usual = request([0.0, 1.0, 2.0, 3.0])
    usual["inputs"][0].update(tensor)
    full = json.loads(json.dumps(usual))
    full["inputs"][0]["parameters"] = {}
    assert parsed(usual)[0] == "error"
    assert parsed(usual) == parsed(full)


def test_a_large_json_tensor_takes_numpys_pass():
    count = tensors.SMALL + 1
    data = [float(i % 256) for i in range(count)]
    assert tensors.json_pixels(data, count) is None, "past SMALL: numpy's reductions are cheaper"
    assert tensors.json_pixels(data[: count - 1], count - 1) is not None


@pytest.mark.parametrize("request_id", [None, "r1", 'quote " and é', ""])
@pytest.mark.parametrize("rows", [1, 3])
def test_the_kept_json_answer_head_builds_the_whole_answer(request_id, rows):
    logits = np.random.default_rng(rows).normal(size=(rows, 10)).astype(np.float32)
    got = v2_response.json_logits("m", "2", "logits", request_id, logits)
    header = {"model_name": "m", "model_version": "2"}
    header["outputs"] = [
        {"name": "logits", "datatype": "FP32", "shape": [rows, 10], "data": logits.ravel().tolist()}
    ]
    if request_id is not None:
        header["id"] = request_id
    assert got == orjson.dumps(header)
    assert json.loads(got) == header
    answer, length = v2_response.encode_response(
        "m",
        v2.Request(request_id, logits, [v2.Output("logits", False, 0)]),
        logits,
        SIG.labels,
        "2",
    )
    assert (answer, length) == (got, None)


def test_the_kept_json_answer_heads_stay_bounded():
    logits = np.zeros((1, 10), np.float32)
    for version in range(3 * v2_response.HEADS):
        text = v2_response.json_logits("m", str(version), "logits", None, logits)
        assert json.loads(text)["model_version"] == str(version)
        assert len(v2_response._heads) <= v2_response.HEADS


def test_a_batch_joined_as_bytes_is_numpys_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.uniform(0, 255, (n, 2, 2, 1)).astype(np.float32) for n in (1, 3, 2)]
    body = parts[0].tobytes()
    parts.append(np.frombuffer(body, np.float32).reshape(1, 2, 2, 1))  # read-only
    batch = joined(parts)
    np.testing.assert_array_equal(batch, np.concatenate(parts))
    assert batch.shape == (7, 2, 2, 1) and batch.dtype == np.float32
    assert batch.flags.writeable and batch.flags.aligned and batch.flags.c_contiguous
    assert not any(np.shares_memory(batch, p) for p in parts), "a fresh array"
    strided = np.zeros((2, 2, 2, 2), np.float32)[..., :1]  # numpy copies a view
    np.testing.assert_array_equal(joined([parts[0], strided]), np.concatenate([parts[0], strided]))


def test_the_runtime_gets_an_aligned_writable_array_alone_or_batched():
    seen = []

    def run(images: np.ndarray) -> np.ndarray:
        seen.append(images.flags.writeable and images.flags.aligned)
        return images.reshape(len(images), -1)[:, :1] * 2

    async def main():
        batcher = Batcher("m", run, max_batch=8, max_delay=0.0)
        batcher.per_image = 0.0  # measured as short: runs on the loop
        body = np.full((1, 2, 2, 1), 3.0, np.float32).tobytes()
        read_only = np.frombuffer(body, np.float32).reshape(1, 2, 2, 1)
        assert not read_only.flags.writeable
        alone = await batcher.infer(read_only, alone=True)
        together = await asyncio.gather(*(batcher.infer(read_only) for _ in range(3)))
        assert alone.tolist() == [[6.0]] and [t.tolist() for t in together] == [[[6.0]]] * 3
        writable = np.full((1, 2, 2, 1), 4.0, np.float32)
        assert (await batcher.infer(writable, alone=True)).tolist() == [[8.0]]

    asyncio.run(main())
    assert seen == [True, True, True], "each call got an array it may write to"
