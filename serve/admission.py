"""What every request is admitted against, HTTP and gRPC alike: one budget of request
bytes in flight, and the codec workers that parse and encode large bodies off the event
loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from serve import v2

# Bodies and answers above this size are parsed and encoded off the event loop.
OFFLOAD_ABOVE = 64 * 1024  # bytes
# JSON above this goes to another process: json.loads and the nested-list conversion are
# single C calls that hold the GIL for their whole run (about a second for 15 MiB), so a
# thread would still stall the event loop. Binary tensors are cheap: a thread will do.
PROCESS_ABOVE = 1 << 20  # bytes
# Two workers of each kind bound the memory of bodies expanded into Python numbers at
# once (~7x their size); the rest wait with only their raw bytes, which are capped.
CODEC_WORKERS = 2
RETRY_AFTER_S = 1  # what a 503 tells the client to wait


class Admission:
    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0  # bytes of request bodies admitted and not yet answered, any protocol
        self.codec = ThreadPoolExecutor(CODEC_WORKERS, thread_name_prefix="codec")
        self.json_codec: ProcessPoolExecutor | None = None  # started by json_workers
        self.lock = threading.Lock()

    def admit(self, size: int) -> int:
        """Reserve `size` bytes of request body against the server-wide cap; `release`
        them once answered. 503 when the cap would be passed."""
        if size and self.inflight + size > self.max_inflight:
            raise v2.ProtocolError(
                f"the server holds {self.inflight} bytes of requests in flight, its limit is "
                f"{self.max_inflight}: retry shortly",
                503,
            )
        self.inflight += size
        return size

    def release(self, size: int) -> None:
        self.inflight -= size

    @staticmethod
    def inline(size: int) -> bool:
        """Work on `size` bytes is cheap enough to do on the event loop, at once."""
        return size <= OFFLOAD_ABOVE

    async def offload(self, size: int, fn, *args, json: bool = False):
        """fn(*args), off the event loop when `size` bytes make it slow: in a thread, or
        for large JSON in a worker process (fn and args must pickle)."""
        if self.inline(size):
            return fn(*args)
        loop = asyncio.get_running_loop()
        if json and size > PROCESS_ABOVE:
            return await loop.run_in_executor(self.json_workers(), fn, *args)
        return await loop.run_in_executor(self.codec, fn, *args)

    def json_workers(self) -> ProcessPoolExecutor:
        """The worker processes for large JSON, started (and their imports done) once;
        start them before serving: starting processes later would stall a request."""
        with self.lock:
            if self.json_codec is None:
                # spawn, not fork: forking a process that runs runtime threads is unsafe.
                context = multiprocessing.get_context("spawn")
                self.json_codec = ProcessPoolExecutor(
                    CODEC_WORKERS, mp_context=context, initializer=follow_parent
                )
                warm = [self.json_codec.submit(v2.load_json, b"0", "") for _ in range(2)]
                for future in warm:
                    future.result()
        return self.json_codec

    def close(self) -> None:
        self.codec.shutdown(wait=False)
        if self.json_codec is not None:
            self.json_codec.shutdown(wait=False, cancel_futures=True)


def follow_parent() -> None:
    """In a codec worker: exit when the server is gone. A server killed with SIGKILL gives
    its pool no chance to stop the workers, and they would wait for work forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()
