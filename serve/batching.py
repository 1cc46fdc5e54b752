"""Dynamic batching: concurrent requests for one model merged into one runtime call.

One `Batcher` per model. Requests queue on the event loop; a drain task takes up to
`max_batch` images, runs them as one runtime call and hands each request its rows back.
Requests that arrive while a batch runs form the next one, so batches grow with load and
a lone client is never delayed.

Where a call runs, decided per call from its size: a call expected to take under
INLINE_BELOW (its batch size x the last measured time per image) runs on the event loop
itself, because handing it to a thread (a wake-up and a GIL hand-off each way) costs more
than the call; anything else, and every call before the first measurement, runs in the
model's worker thread, where the runtime releases the GIL and the loop keeps serving
other models meanwhile. Answers are the same either way. Measured with a small ONNX CNN,
server pinned to one core, c=16: 5.0k req/s on the loop vs 4.3k via the thread.

A request larger than `max_batch` is split into `max_batch` chunks that queue like
requests of their own: a huge request never runs as one huge call (which would hold the
model for seconds and grow its runtime's buffers to that size for good), and requests
that arrive meanwhile are served between its chunks.

Bounded: at most `max_queue` requests wait per model; past that `infer` raises QueueFull
(the server answers 503 with Retry-After). Closing (a reload or an unload) never fails a
request: what is queued still runs, and the worker thread ends once the queue is empty.

`max_delay` holds a batch open for requests the server has started but not finished
receiving (large or slow bodies), as Triton's `max_queue_delay_microseconds` does; it
never waits for requests that may or may not come, which would only add latency: a batch
closes when it is full, when the oldest request has waited `max_delay`, or when no other
request for the model is being received.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

INLINE_BELOW = 0.001  # seconds
MAX_QUEUE = 256  # requests waiting per model (Triton's max_queue_size)


class QueueFull(RuntimeError):
    """The model's queue is full: try again shortly."""

    status = 503  # what the server answers (with Retry-After)


# (images, requests, seconds those requests spent queued in total, compute seconds)
BatchHook = Callable[[int, int, float, float], None]


def joined(arrays: list[np.ndarray]) -> np.ndarray:
    """The requests' images as one fresh array, aligned and writable whatever their buffers
    were. Joined as bytes where they are contiguous: a numpy concatenate costs a running
    server several microseconds a batch, its machinery cold between batches. All share
    one dtype (the contract's float32, checked before they queue)."""
    try:
        data = bytearray().join(arrays)
    except TypeError:  # a strided view: numpy copies it
        return np.concatenate(arrays)
    first = arrays[0]
    return np.frombuffer(data, first.dtype).reshape(-1, *first.shape[1:])


class Batcher:
    def __init__(
        self,
        name: str,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_delay: float,
        on_batch: BatchHook | None = None,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        if max_batch < 1 or max_delay < 0:
            raise ValueError(
                f"need max_batch >= 1 and max_delay >= 0, got {max_batch}, {max_delay}"
            )
        self.run, self.max_batch, self.max_delay = run, max_batch, max_delay
        self.max_queue = max_queue
        self.on_batch = on_batch or (lambda n, r, q, c: None)
        self.queue: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self.queued = 0  # images in the queue
        self.waiting = 0  # requests not yet answered (a split one counts once)
        self.receiving = 0  # requests for this model still being read off the network
        self.draining = False
        self.per_image = float("inf")  # seconds per image of the last call; unknown at first
        self.task: asyncio.Task | None = None
        self.wake: asyncio.Future | None = None
        self.name = name
        self.executor: ThreadPoolExecutor | None = None  # made on first use
        self.closed = False

    def expect(self) -> None:
        """A request for this model has started arriving; `infer` or `forget` ends it."""
        self.receiving += 1

    def forget(self) -> None:
        self.receiving -= 1
        self._wake()

    async def infer(
        self, images: np.ndarray, expected: bool = False, alone: bool = False
    ) -> np.ndarray:
        """Logits for `images` [n, H, W, C], computed in some batch with other requests.
        `alone`: the caller knows no other request is in flight (serve/connections.py)."""
        if expected:
            self.receiving -= 1
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.max_queue} requests already wait for this model")
        if alone and not self.draining and not self.receiving and self._inline(len(images)):
            return self._alone(images)
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        if len(images) <= self.max_batch:  # one chunk: the request itself, no slicing
            futures = [loop.create_future()]
            self.queue.append((images, futures[0], now))
            self.queued += len(images)
        else:
            futures = []
            for start in range(0, len(images), self.max_batch):
                chunk = images[start : start + self.max_batch]
                futures.append(loop.create_future())
                self.queue.append((chunk, futures[-1], now))
                self.queued += len(chunk)
        if not self.draining:
            self.draining = True
            self.task = loop.create_task(self._drain())  # a reference keeps it from GC
        self._wake()
        self.waiting += 1
        try:
            if len(futures) == 1:
                return await futures[0]
            return np.concatenate(await asyncio.gather(*futures))
        finally:
            self.waiting -= 1

    def _inline(self, n: int) -> bool:
        """A call of `n` images is short enough to run on the event loop."""
        return n <= self.max_batch and self.per_image * n < INLINE_BELOW

    def _alone(self, images: np.ndarray) -> np.ndarray:
        """A short request with nothing to batch with, run at once in its own task, as
        `_drain` would run it one task and two loop iterations later."""
        if not images.flags.behaved:  # aligned and writable, as `_drain`'s batches are
            images = images.copy()
        started = time.perf_counter()
        logits = self.run(images)
        seconds = time.perf_counter() - started
        self.per_image = seconds / len(images)
        self.on_batch(len(images), 1, 0.0, seconds)
        return logits

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def _fill(self) -> None:
        """Wait, within max_delay, for requests that are already arriving."""
        loop = asyncio.get_running_loop()
        deadline = self.queue[0][2] + self.max_delay
        while self.queued < self.max_batch and self.receiving > 0:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self.wake = loop.create_future()
            timer = loop.call_later(left, self._wake)
            await self.wake
            timer.cancel()
        self.wake = None

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future, float]]:
        batch = [self.queue.popleft()]
        size = len(batch[0][0])
        while self.queue and size + len(self.queue[0][0]) <= self.max_batch:
            batch.append(self.queue.popleft())
            size += len(batch[-1][0])
        self.queued -= size
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                if self.max_delay:
                    await self._fill()
                batch = self._take()
                started = time.perf_counter()
                images = joined([item[0] for item in batch])
                try:
                    if self._inline(len(images)):
                        logits, seconds = self._timed(images)
                    else:
                        call = loop.run_in_executor(self._executor(), self._timed, images)
                        logits, seconds = await call
                except Exception as e:  # the runtime's error goes to every request in it
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                self.per_image = seconds / len(images)
                queued = sum(started - t for _, _, t in batch)
                self.on_batch(len(images), len(batch), queued, seconds)
                if len(batch) == 1:
                    if not batch[0][1].done():  # the client may have gone away
                        batch[0][1].set_result(logits)
                    continue
                offset = 0
                for rows, future, _ in batch:
                    if not future.done():
                        future.set_result(logits[offset : offset + len(rows)])
                    offset += len(rows)
        finally:
            self.draining = False
            if self.closed:
                self._shutdown()

    def _timed(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        """The runtime call and its own duration (a thread hand-off not included)."""
        started = time.perf_counter()
        logits = self.run(images)
        return logits, time.perf_counter() - started

    def _executor(self) -> ThreadPoolExecutor:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"batch-{self.name}")
        return self.executor

    def _shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)
            self.executor = None

    def close(self) -> None:
        """The model is being replaced or unloaded. Requests already here (queued, or
        still holding this batcher) are served, never failed; the worker thread ends when
        the queue is empty."""
        self.closed = True
        if not self.draining:
            self._shutdown()
