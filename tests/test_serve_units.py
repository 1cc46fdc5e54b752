"""Server parts on their own: the V2 codec against tritonclient's own decoder, the dynamic
batcher's merging rules, and the start-up check against a golden batch that disagrees."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from tritonclient.http import InferResult

from harness.golden import Saved
from serve import models, v2, v2_response
from serve.batching import Batcher, QueueFull

SIG = v2.Signature("images", "logits", tuple("abc"))


def request(outputs: list[v2.Output], n: int = 2) -> v2.Request:
    return v2.Request("r1", np.zeros((n, 2, 2, 1), np.float32), outputs)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_response_decodes_with_tritonclient(binary):
    logits = np.array([[1.0, 3.0, 2.0], [0.5, 0.1, 0.2]], np.float32)
    for k in (0, 2):
        body, length = v2_response.encode_response(
            "m", request([v2.Output("logits", binary, k)]), logits, SIG.labels
        )
        assert (length is not None) == binary
        result = InferResult.from_response_body(body, header_length=length)
        assert result.get_response()["id"] == "r1"
        got = result.as_numpy("logits")
        if k == 0:
            np.testing.assert_array_equal(got, logits)
        else:
            labels = [
                [
                    str(item if isinstance(item, str) else item.decode()).split(":")[2]
                    for item in row
                ]
                for row in got
            ]
            assert labels == [["b", "c"], ["a", "c"]]


def test_binary_request_splits_json_from_tensor():
    images = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    header = (
        b'{"inputs":[{"name":"images","datatype":"FP32","shape":[2,2,2,1],'
        b'"parameters":{"binary_data_size":32}}]}'
    )
    parsed = v2.parse_request(header + images.tobytes(), str(len(header)).encode(), SIG)
    np.testing.assert_array_equal(parsed.images, images)
    assert parsed.outputs == [v2.Output("logits", False, 0)]


def run_batches(max_batch: int, max_delay: float, sizes: list[int], receiving: int = 0):
    """Submit requests of `sizes` rows at once; returns (answers, batch sizes seen)."""
    seen = []

    def run(images):
        seen.append(len(images))
        return images.reshape(len(images), -1)[:, :1] * 2  # one "logit" per row

    async def main():
        batcher = Batcher("t", run, max_batch, max_delay)
        for _ in range(receiving):
            batcher.expect()
        inputs = [np.full((n, 1, 1, 1), i, np.float32) for i, n in enumerate(sizes)]
        tasks = [asyncio.create_task(batcher.infer(x)) for x in inputs]
        if receiving:  # the awaited requests arrive a little later
            await asyncio.sleep(0.05)
            late = np.full((1, 1, 1, 1), 99, np.float32)
            tasks.append(asyncio.create_task(batcher.infer(late, expected=True)))
        answers = await asyncio.gather(*tasks)
        batcher.close()
        return answers

    return asyncio.run(main()), seen


def test_batcher_merges_and_slices():
    answers, seen = run_batches(64, 0.0, [1, 2, 3, 1])
    assert seen == [7]
    assert [a.ravel().tolist() for a in answers] == [[0.0], [2.0, 2.0], [4.0] * 3, [6.0]]


def test_batcher_respects_max_batch_and_splits_oversized_requests():
    answers, seen = run_batches(4, 0.0, [3, 2, 9, 1])
    assert seen == [3, 2, 4, 4, 2], "9 rows ran as 4 + 4 + 1, the last 1 beside the next request"
    assert answers[2].ravel().tolist() == [4.0] * 9
    _, seen = run_batches(4, 0.0, [1, 1, 1, 1, 1, 1])
    assert seen == [4, 2]


def test_where_a_call_runs_is_decided_by_its_size():
    """Unknown cost: the worker thread. Then small calls on the loop, large ones off it."""
    threads = []

    def run(images):
        threads.append((len(images), threading.current_thread().name.startswith("batch-")))
        until = time.perf_counter() + len(images) * 2e-5  # 20 us per image: 64 take 1.3 ms
        while time.perf_counter() < until:
            pass
        return images.reshape(len(images), -1)[:, :1]

    async def main():
        batcher = Batcher("t", run, 64, 0.0)
        for n in (1, 1, 64, 2):
            await batcher.infer(np.zeros((n, 1, 1, 1), np.float32))
        batcher.close()

    asyncio.run(main())
    assert threads == [(1, True), (1, False), (64, True), (2, False)]


def test_a_full_queue_refuses_and_a_closed_batcher_still_answers():
    release = threading.Event()

    def run(images):
        release.wait(5)
        return images.reshape(len(images), -1)[:, :1]

    async def main():
        batcher = Batcher("t", run, 8, 0.0, max_queue=2)
        x = np.ones((1, 1, 1, 1), np.float32)
        first, second = (asyncio.create_task(batcher.infer(x)) for _ in range(2))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await batcher.infer(x)
        batcher.close()  # a reload: what is queued is still answered
        release.set()
        answered = await asyncio.gather(first, second)
        late = await batcher.infer(x)  # a request that still held the old batcher
        return [*answered, late]

    assert [a.tolist() for a in asyncio.run(main())] == [[[1.0]]] * 3


def test_max_delay_waits_only_for_requests_being_received():
    _, seen = run_batches(64, 1.0, [1, 1], receiving=1)
    assert seen == [3], "the batch waited for the request that was arriving"
    _, seen = run_batches(64, 0.0, [1, 1], receiving=1)
    assert seen == [2, 1], "without a delay the batch runs at once"
    _, seen = run_batches(64, 0.01, [1, 1], receiving=1)
    assert seen == [2, 1], "the delay bounds the wait"


def test_runtime_error_reaches_every_request_in_the_batch():
    def run(images):
        raise RuntimeError("boom")

    async def main():
        batcher = Batcher("t", run, 8, 0.0)
        x = np.zeros((1, 1, 1, 1), np.float32)
        results = await asyncio.gather(batcher.infer(x), batcher.infer(x), return_exceptions=True)
        batcher.close()
        return results

    assert [str(r) for r in asyncio.run(main())] == ["boom", "boom"]
    assert threading.active_count() < 50


@pytest.mark.slow
def test_golden_replay_that_disagrees_keeps_a_variant_out(serve_root, tmp_path):
    root = serve_root
    saved = dict(np.load(root / "golden.npz"))
    saved["reference_torch"] = saved["reference_torch"] + 1.0
    np.savez(tmp_path / "golden.npz", **saved)
    servable = models.Servable("torch.onnx", root / "repo" / "torch.onnx")
    models.load(servable, Saved(tmp_path / "golden.npz"), 1, 8, 0.0)
    assert servable.state == models.UNAVAILABLE
    assert "golden replay" in servable.reason and "max abs diff" in servable.reason
    good = models.Servable("torch.onnx", root / "repo" / "torch.onnx")
    models.load(good, Saved(root / "golden.npz"), 1, 8, 0.0)
    assert good.ready, good.reason
    good.batcher.close()
