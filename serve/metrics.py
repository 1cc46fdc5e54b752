"""Per-model counters, kept as plain numbers and turned into Prometheus text at scrape time.

A request only bumps integers and finds one histogram bucket; prometheus_client's
objects (locks, label lookups) are built in `Collector.collect`, once per scrape, so
the metrics cost the hot path almost nothing. The same numbers feed Triton's
`/v2/models/stats`. Every protocol's request goes through one `Timed`.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

import harness

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
NO_MODEL = "_none"  # label for requests naming no known model: never the client's string


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class ModelStats:
    """Everything counted for one model (or for NO_MODEL)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # by protocol: v2, tfserving, upload
        self.errors: Counter[int] = Counter()  # by HTTP status
        self.latency = Histogram(LATENCY_BUCKETS)
        self.failed_seconds = 0.0
        self.batches = Histogram(BATCH_BUCKETS)
        self.images = 0
        self.queue_seconds = 0.0
        self.compute_seconds = 0.0
        self.last_inference_ms = 0
        self.rollouts: Counter[str] = Counter()  # new versions: "promoted" | "refused"

    def request(self, protocol: str, seconds: float, status: int) -> None:
        self.requests[protocol] += 1
        if status < 400:
            self.latency.observe(seconds)
        else:
            self.errors[status] += 1
            self.failed_seconds += seconds

    def batch(self, images: int, requests: int, queued: float, compute: float) -> None:
        self.batches.observe(images)
        self.images += images
        self.queue_seconds += queued
        self.compute_seconds += compute
        self.last_inference_ms = int(time.time() * 1000)

    def triton(self, name: str, version: str) -> dict:
        """This model in Triton's statistics extension format (durations in ns)."""
        ok = sum(self.latency.counts)
        batches = sum(self.batches.counts)

        def stat(count: int, seconds: float) -> dict:
            return {"count": count, "ns": int(seconds * 1e9)}

        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.images,
            "execution_count": batches,
            "inference_stats": {
                "success": stat(ok, self.latency.total),
                "fail": stat(sum(self.errors.values()), self.failed_seconds),
                "queue": stat(ok, self.queue_seconds),
                "compute_infer": stat(batches, self.compute_seconds),
            },
        }


def status_of(error: Exception) -> int:
    """The HTTP status a failure is answered with, and counted under (gRPC answers the
    matching code): the server's own errors carry theirs, a broken contract is the
    client's fault, anything else the server's."""
    if isinstance(error, harness.ContractError):
        return 400
    return getattr(error, "status", 500)


class Timed:
    """One request, from its receipt to the end of the `with` block, counted under `stats`
    (set it once the model is known: until then, NO_MODEL's) with `status`: 200, what the
    route sets, or an escaping exception's (`status_of`). None: not counted (the client
    went away before asking anything, or the request was cancelled)."""

    __slots__ = ("protocol", "started", "stats", "status")

    def __init__(self, protocol: str, stats: ModelStats) -> None:
        self.protocol, self.stats = protocol, stats
        self.status: int | None = 200
        self.started = time.perf_counter()

    def __enter__(self) -> Timed:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self.status = status_of(error) if isinstance(error, Exception) else None
        if self.status is not None:
            self.stats.request(self.protocol, time.perf_counter() - self.started, self.status)


class Collector:
    """A prometheus_client collector over every model's ModelStats."""

    def __init__(
        self,
        stats: Callable[[], dict[str, ModelStats]],
        ready: Callable[[], dict[str, bool]],
        live: Callable[[], dict[str, str]] = dict,
    ) -> None:
        # Callables: models come and go (load, unload), versions change (promotion).
        self.stats, self.ready, self.live = stats, ready, live

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(
            "tandem_requests",
            "Requests received, by model and protocol",
            labels=["model", "protocol"],
        )
        errors = CounterMetricFamily(
            "tandem_request_errors",
            "Requests answered with an error, by status",
            labels=["model", "code"],
        )
        for model, s in self.stats().items():
            for protocol, n in s.requests.items():
                requests.add_metric([model, protocol], n)
            for code, n in s.errors.items():
                errors.add_metric([model, str(code)], n)
        latency = HistogramMetricFamily(
            "tandem_request_latency_seconds",
            "Successful request latency, receipt to answer",
            labels=["model"],
        )
        batches = HistogramMetricFamily(
            "tandem_batch_size", "Images per runtime call (dynamic batching)", labels=["model"]
        )
        for model, s in self.stats().items():
            latency.add_metric([model], s.latency.cumulative(), s.latency.total)
            if model != NO_MODEL:
                batches.add_metric([model], s.batches.cumulative(), s.batches.total)
        yield from (requests, errors, latency, batches)
        ready = GaugeMetricFamily("tandem_model_ready", "1 if the model serves", labels=["model"])
        for model, ok in self.ready().items():
            ready.add_metric([model], float(ok))
        yield ready
        live = GaugeMetricFamily(
            "tandem_model_version", "The version a model serves", labels=["model"]
        )
        for model, version in self.live().items():
            live.add_metric([model], float(version))
        rollouts = CounterMetricFamily(
            "tandem_model_rollouts",
            "New versions checked while serving, by outcome (promoted, refused)",
            labels=["model", "outcome"],
        )
        for model, s in self.stats().items():
            for outcome, n in s.rollouts.items():
                rollouts.add_metric([model, outcome], n)
        yield from (live, rollouts)


def registry(collector: Collector) -> CollectorRegistry:
    """A registry of its own per app, so several servers in one process do not collide."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
