"""The runtimes section: every variant in process, through the harness.

Per variant, on `threads` runtime threads: batch-1 latency (p50, p99 of single calls),
throughput (images/s) at each of BATCHES from the median call, and the harness/raw
ratio at batch 64 from benchmarks.harness_overhead (calls interleaved with the runner's
own). A batch size a variant refuses gets its error in place of a figure, not a crash.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

import harness
from benchmarks import harness_overhead
from export import repository

BATCHES = (1, 8, 64, 256)
RATIO_BATCH = 64


def timed_calls(predict, images: np.ndarray, seconds: float, at_least: int) -> list[float]:
    """Seconds per call over `seconds` (and at least `at_least` calls), after a warm-up."""
    for _ in range(3):
        predict(images)
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < at_least:
        t0 = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - t0)
    return times


def measure(path: Path, threads: int, seconds: float) -> dict:
    model = harness.load(path, threads=threads)
    rng = np.random.default_rng(0)
    batch = {n: rng.uniform(0, 255, (n, *model.input_shape)).astype(np.float32) for n in BATCHES}
    manifest = repository.read_manifest(path)
    row = {"variant": model.name, "format": manifest["format"], "trainer": manifest["trainer"]}
    ms = np.asarray(timed_calls(model.predict, batch[1], seconds, 20)) * 1e3
    row |= {
        "b1_p50_ms": round(float(np.percentile(ms, 50)), 4),
        "b1_p99_ms": round(float(np.percentile(ms, 99)), 4),
    }
    throughput, errors = {}, {}
    for n in BATCHES:
        try:
            call = statistics.median(timed_calls(model.predict, batch[n], seconds / 2, 5))
            throughput[str(n)] = round(n / call, 1)
        except Exception as e:  # a runtime's refusal of one batch size, reported as such
            errors[str(n)] = f"{type(e).__name__}: {str(e)[:200]}"
    row["images_per_s"] = throughput
    if errors:
        row["errors"] = errors
    overhead = harness_overhead.measure(model, RATIO_BATCH, seconds)
    row |= {
        "b64_images_per_s": throughput.get(str(RATIO_BATCH)),
        "harness_over_raw": round(overhead["ratio"], 4),
        "raw_b64_us": round(overhead["direct_us"], 1),
        "harness_b64_us": round(overhead["harness_us"], 1),
        "checks_us": round(overhead["checks_us"], 2),
    }
    return row


def section(
    repository_root: Path, threads: int, seconds: float, trainers: tuple[str, ...] | None
) -> dict:
    """Every variant of the repository (and of the edge folder beside it), or those of
    `trainers` only."""
    found = repository.variants(repository_root) | repository.variants(
        repository.edge_beside(repository_root)
    )
    rows = []
    for name, path in sorted(found.items()):
        if trainers and name.split(".", 1)[0] not in trainers:
            continue
        rows.append(measure(path, threads, seconds))
        r = rows[-1]
        print(
            f"[bench] {name:<26} b1 p50 {r['b1_p50_ms']:.3f} ms  b64 "
            f"{r['b64_images_per_s'] or 0:>9.0f} img/s  harness/raw {r['harness_over_raw']:.3f}",
            flush=True,
        )
    if not rows:
        raise SystemExit(f"no variants in {repository_root}: run `make export` first")
    ratios = [r["harness_over_raw"] for r in rows]
    return {
        "threads": threads,
        "batches": list(BATCHES),
        "ratio_batch": RATIO_BATCH,
        "seconds": seconds,
        "goal_harness_over_raw": 1.05,
        "median_harness_over_raw": round(statistics.median(ratios), 4),
        "worst_harness_over_raw": round(max(ratios), 4),
        "rows": rows,
    }
