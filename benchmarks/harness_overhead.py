"""What the harness adds over calling each runtime directly, at batch 64.

    python -m benchmarks.harness_overhead [--repository DIR] [--batch 64] [--seconds 0.5]

Per variant: the runner's own call (`runner.run`, the runtime as a user would call it)
and the harness call (`Model.predict`: contract checks on input and output), timed in
alternating rounds in one process so drift hits both alike. Reports medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from serve import harness
from train.config import MODEL_REPOSITORY, REPORTS, write_json_atomic

ROUNDS = 7


def per_call(fn, images: np.ndarray, seconds: float) -> float:
    """Mean seconds per call over a loop of about `seconds`."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        fn(images)
        calls += 1
    return elapsed / calls


def measure(model: harness.Model, batch: int, seconds: float) -> dict:
    images = np.random.default_rng(0).uniform(0, 255, (batch, *model.input_shape))
    images = images.astype(np.float32)
    for _ in range(20):  # warm-up: first calls allocate, trace, resize
        model.predict(images)
    direct, wrapped = [], []
    for _ in range(ROUNDS):
        direct.append(per_call(model.runner.run, images, seconds))
        wrapped.append(per_call(model.predict, images, seconds))
    d, w = statistics.median(direct), statistics.median(wrapped)
    return {"variant": model.name, "direct_us": d * 1e6, "harness_us": w * 1e6, "ratio": w / d}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY, help="repository")
    parser.add_argument("--batch", type=int, default=64, help="images per call")
    parser.add_argument("--seconds", type=float, default=0.3, help="loop length per round")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (0 = default)")
    args = parser.parse_args(argv)
    found = harness.variants(args.repository)
    if not found:
        raise SystemExit(f"no variants in {args.repository}: run `make export` first")
    rows = []
    print(f"{'variant':<26} {'direct us':>10} {'harness us':>11} {'ratio':>7}")
    for path in found.values():
        row = measure(harness.load(path, threads=args.threads), args.batch, args.seconds)
        rows.append(row)
        print(
            f"{row['variant']:<26} {row['direct_us']:>10.1f} {row['harness_us']:>11.1f} "
            f"{row['ratio']:>7.3f}",
            flush=True,
        )
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"worst ratio {worst['ratio']:.3f} ({worst['variant']}), batch {args.batch}")
    REPORTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(REPORTS / "bench_harness.json", {"batch": args.batch, "rows": rows})


if __name__ == "__main__":
    main()
