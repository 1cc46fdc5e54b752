"""What the serving hot path skips, checked against what it must still do: remembered
request headers (and their answers) never serve a request they do not fit, the one-pass
pixel check agrees with the exact one, a lone request runs without the queue while
concurrent ones still batch, and the connection guard tells the app, through a real
uvicorn, when a body arrived whole and when a request is alone."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from tritonclient.http import InferResult

from serve import tensors, v2, v2_response
from serve.batching import Batcher
from serve.connections import BODY_ARRIVED, IN_FLIGHT, guarded

SIG = v2.Signature("images", "logits", tuple("abc"))


def binary_request(images: np.ndarray, **header) -> tuple[bytes, bytes]:
    tensor = {"name": "images", "datatype": "FP32", "shape": list(images.shape)}
    tensor["parameters"] = {"binary_data_size": images.nbytes}
    text = json.dumps({"inputs": [tensor], **header}).encode()
    return text + images.tobytes(), str(len(text)).encode()


def test_a_remembered_header_parses_each_body_and_checks_its_size():
    plans: dict = {}
    first, second = np.full((1, 2, 2, 1), 3.0, np.float32), np.full((1, 2, 2, 1), 7.0, np.float32)
    body, length = binary_request(first)
    a = v2.parse_request(body, length, SIG, plans)
    body, length = binary_request(second)
    b = v2.parse_request(body, length, SIG, plans)
    assert a.plan is b.plan and len(plans) == 1, "the same header bytes: one plan"
    np.testing.assert_array_equal(a.images, first)
    np.testing.assert_array_equal(b.images, second)
    with pytest.raises(v2.ProtocolError, match="truncated"):
        v2.parse_request(body[:-4], length, SIG, plans)
    with pytest.raises(v2.ProtocolError, match=r"outside 0\.\.255"):
        v2.parse_request(binary_request(first * 100)[0], length, SIG, plans)
    other = v2.parse_request(*binary_request(first, id="r7"), SIG, plans)
    assert other.id == "r7" and other.plan is not a.plan and len(plans) == 2


def test_a_bad_header_is_never_remembered_and_memory_stays_bounded():
    plans: dict = {}
    images = np.zeros((1, 2, 2, 1), np.float32)
    body, length = binary_request(images, outputs=[{"name": "probs"}])
    for _ in range(2):  # refused every time, the same way
        with pytest.raises(v2.ProtocolError, match="unknown output"):
            v2.parse_request(body, length, SIG, plans)
    assert plans == {}
    for i in range(3 * v2.PLANS):
        v2.parse_request(*binary_request(images, id=str(i)), SIG, plans)
        assert len(plans) <= v2.PLANS
    huge = binary_request(images, id="x" * v2.PLAN_BYTES)
    assert v2.parse_request(*huge, SIG, plans).id == "x" * v2.PLAN_BYTES
    assert huge[0][: int(huge[1])] not in plans, "a long header is parsed, not kept"
    as_json = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 2, 2, 1]}]}
    as_json["inputs"][0]["data"] = [0.0] * 4
    plans.clear()
    assert v2.parse_request(json.dumps(as_json).encode(), None, SIG, plans).plan is None
    assert plans == {}, "a JSON tensor is in its header: nothing to remember"


def test_a_remembered_answer_header_is_the_one_encoding_would_build():
    plans: dict = {}
    body, length = binary_request(np.zeros((2, 2, 2, 1), np.float32))
    body = body[: int(length)] + b"\0" * 32
    header = json.loads(body[: int(length)])
    header["outputs"] = [{"name": "logits", "parameters": {"binary_data": True}}]
    text = json.dumps(header).encode()
    body, length = text + b"\0" * 32, str(len(text)).encode()
    for values in ([[1.0, 3.0, 2.0], [0.5, 0.1, 0.2]], [[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]]):
        request = v2.parse_request(body, length, SIG, plans)
        logits = np.array(values, np.float32)
        answer, size = v2_response.encode_response("m", request, logits, SIG.labels, "3")
        fresh, fresh_size = v2_response.encode_response(
            "m", v2.Request(None, request.images, request.outputs), logits, SIG.labels, "3"
        )
        assert (answer, size) == (fresh, fresh_size)
        result = InferResult.from_response_body(answer, header_length=size)
        np.testing.assert_array_equal(result.as_numpy("logits"), logits)
        assert result.get_response()["model_version"] == "3"
    again, size = v2_response.encode_response("m", request, logits, SIG.labels, "4")
    assert (
        InferResult.from_response_body(again, header_length=size).get_response()["model_version"]
        == "4"
    ), "another version: the remembered header is not reused"


def reference_pixels(images: np.ndarray) -> bool:
    return bool(images.min() >= 0.0 and images.max() <= 255.0)


EDGES = [0.0, -0.0, 255.0, np.nextafter(np.float32(255), np.float32(300)), 1e-45, -1e-45]
EDGES += [np.nan, np.inf, -np.inf, -1.0, 256.0, 3e38, 127.5]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_the_one_pass_pixel_check_agrees_with_the_exact_one(value):
    images = np.full((1, 2, 2, 1), 10.0, np.float32)
    images[0, 1, 1, 0] = value
    if reference_pixels(images):
        assert tensors.pixels(images, "x") is images
    else:
        with pytest.raises(v2.ProtocolError, match=r"NaN or Inf|outside 0\.\.255"):
            tensors.pixels(images, "x")


def test_empty_and_strided_images_take_the_numpy_pass():
    empty = np.zeros((0, 8, 8, 1), np.float32)
    assert tensors.pixels(empty, "x") is empty
    strided = np.full((2, 8, 8, 2), 7.0, np.float32)[..., :1]
    assert tensors.pixels(strided, "x") is strided
    strided[0, 0, 0, 0] = -1.0
    with pytest.raises(v2.ProtocolError, match="outside"):
        tensors.pixels(strided, "x")
    big = np.full((4, 32, 32, 1), 255.0, np.float32)  # past SMALL: numpy's reduction
    assert tensors.pixels(big, "x") is big
    big[3, 31, 31, 0] = np.nan
    with pytest.raises(v2.ProtocolError, match="NaN"):
        tensors.pixels(big, "x")


def test_the_one_pass_pixel_check_on_random_bits():
    bits = np.random.default_rng(0).integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
    for value in bits.view(np.float32):
        images = np.array([value], np.float32)
        try:
            ok = tensors.pixels(images, "x") is images
        except v2.ProtocolError:
            ok = False
        assert ok == reference_pixels(images), value


def recording_batcher(calls: list) -> Batcher:
    def run(images):
        try:  # on the event loop: the task it runs in
            where = asyncio.current_task().get_name()
        except RuntimeError:  # in the batcher's worker thread
            where = threading.current_thread().name
        calls.append((len(images), where))
        return images.reshape(len(images), -1)[:, :1] * 2

    batches: list = []
    batcher = Batcher("t", run, 8, 0.0, on_batch=lambda *a: batches.append(a))
    batcher.batches = batches
    return batcher


def test_a_lone_request_runs_in_its_own_task_and_concurrent_ones_still_batch():
    calls: list = []

    async def main():
        batcher = recording_batcher(calls)
        x = np.ones((1, 1, 1, 1), np.float32)
        await batcher.infer(x, alone=True)  # cost unknown yet: the queue and the thread
        assert batcher.task is not None
        batcher.task = None
        alone = await asyncio.create_task(batcher.infer(x * 3, alone=True), name="me")
        assert alone.tolist() == [[6.0]] and batcher.task is None, "no drain task"
        batched = await asyncio.gather(*(batcher.infer(x * i) for i in range(4)))
        assert [b.item() for b in batched] == [0.0, 2.0, 4.0, 6.0]
        batcher.task = None
        batcher.expect()  # this request
        batcher.expect()  # and another one, still arriving: not alone
        await batcher.infer(x, expected=True, alone=True)
        assert batcher.task is not None, "another request is arriving: the queue"
        batcher.forget()
        batcher.close()
        return batcher.batches

    batches = asyncio.run(main())
    assert calls[0][1].startswith("batch-"), "unknown cost: the worker thread"
    assert calls[1] == (1, "me"), "the lone request ran in the caller's task"
    assert calls[2][0] == 4, "four concurrent requests: one runtime call"
    assert [b[:2] for b in batches] == [(1, 1), (1, 1), (4, 4), (1, 1)]
    assert len(calls) == 4


def test_a_lone_request_gets_its_runtime_error():
    def run(images):
        raise RuntimeError("boom")

    async def main():
        batcher = Batcher("t", run, 8, 0.0)
        batcher.per_image = 1e-6  # measured: small calls run on the loop
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.infer(np.zeros((1, 1, 1, 1), np.float32), alone=True)
        batcher.close()

    asyncio.run(main())


# --- the connection guard through a real uvicorn -------------------------------------------


async def echo_scope(scope, receive, send):
    """Answers what the guard told it: was the body here at once, how many requests run."""
    if scope["type"] != "http":
        return
    arrived = BODY_ARRIVED in scope
    in_flight = len(scope.get(IN_FLIGHT, ()))
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = json.dumps({"arrived": arrived, "in_flight": in_flight}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def guarded_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        echo_scope, port=port, http=guarded(2.0, 16), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def post(port: int, parts: list[bytes], pause: float = 0.0) -> dict:
    size = sum(map(len, parts))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        sock.sendall(head + parts[0])
        for part in parts[1:]:
            time.sleep(pause)
            sock.sendall(part)
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_the_guard_marks_a_whole_body_and_a_lone_request(guarded_server):
    assert post(guarded_server, [b"x" * 100]) == {"arrived": True, "in_flight": 1}


def test_a_body_still_coming_gets_no_mark(guarded_server):
    """The app runs before the rest of the body: it must read it under its deadline."""
    assert post(guarded_server, [b"x" * 10, b"y" * 90], pause=0.3)["arrived"] is False


def test_a_request_beside_another_is_not_alone(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server), timeout=5) as held:
        held.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n" + b"x" * 5)
        time.sleep(0.2)  # its app now waits for the rest of its body
        assert post(guarded_server, [b"y" * 10]) == {"arrived": True, "in_flight": 2}
        held.sendall(b"x" * 15)
        assert b'"in_flight": 1' in held.recv(4096)


@pytest.mark.parametrize("size", [0, 10, 1024, 1025], ids=lambda n: f"{n} values")
def test_the_python_finiteness_check_agrees_with_numpy(size):
    from harness.backend import finite

    values = np.random.default_rng(size).uniform(-3e38, 3e38, size).astype(np.float32)
    assert finite(values) is True
    for bad in (np.nan, np.inf, -np.inf):
        if size:
            worse = values.copy()
            worse[size // 2] = bad
            assert finite(worse) is False, bad
    if size >= 2:  # +Inf and -Inf in one batch: their sum is NaN, still caught
        both = values.copy()
        both[0], both[1] = np.inf, -np.inf
        assert finite(both) is False
