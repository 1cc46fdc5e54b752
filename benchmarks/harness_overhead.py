"""What the harness adds over calling each runtime directly, at batch 64.

    python -m benchmarks.harness_overhead [--repository DIR] [--batch 64] [--seconds 0.5]

Per variant: the runner's own call (`runner.run`, the runtime as a user would call it)
and the harness call (`Model.predict`: contract checks on input and output), in one
process. Reports the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import harness
from contract.files import write_json_atomic
from contract.paths import REPORTS, add_repository_argument
from export import repository


def measure(model: harness.Backend, batch: int, seconds: float) -> dict:
    """Median per-call time of each, from calls interleaved one by one (order alternating),
    so load from anything else on the machine lands on both sides alike."""
    images = np.random.default_rng(0).uniform(0, 255, (batch, *model.input_shape))
    images = images.astype(np.float32)
    for _ in range(20):  # warm-up: first calls allocate, trace, resize
        model.predict(images)
    pair = [model.runner.run, model.predict]
    times: list[list[float]] = [[], []]
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times[0]) < 50:
        order = (0, 1) if len(times[0]) % 2 else (1, 0)
        for i in order:
            t0 = time.perf_counter()
            pair[i](images)
            times[i].append(time.perf_counter() - t0)
    d, w = statistics.median(times[0]), statistics.median(times[1])
    # The harness's own work, timed alone: stable where the difference above is noisy.
    logits = model.runner.run(images)
    checks = []
    for _ in range(2000):
        t0 = time.perf_counter()
        model.check_output(logits, len(model.check_input(images)))
        checks.append(time.perf_counter() - t0)
    c = statistics.median(checks)
    return {
        "variant": model.name,
        "direct_us": d * 1e6,
        "harness_us": w * 1e6,
        "ratio": w / d,
        "checks_us": c * 1e6,
        "checks_share": c / d,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_repository_argument(parser)
    parser.add_argument("--batch", type=int, default=64, help="images per call")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of calls per variant")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (0 = default)")
    args = parser.parse_args(argv)
    found = repository.variants(args.repository)
    if not found:
        raise SystemExit(f"no variants in {args.repository}: run `make export` first")
    rows = []
    print(f"{'variant':<26} {'direct us':>10} {'harness us':>11} {'ratio':>7} {'checks us':>10}")
    for path in found.values():
        row = measure(harness.load(path, threads=args.threads), args.batch, args.seconds)
        rows.append(row)
        print(
            f"{row['variant']:<26} {row['direct_us']:>10.1f} {row['harness_us']:>11.1f} "
            f"{row['ratio']:>7.3f} {row['checks_us']:>10.1f}",
            flush=True,
        )
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"worst ratio {worst['ratio']:.3f} ({worst['variant']}), batch {args.batch}")
    ratios = sorted(r["ratio"] for r in rows)
    print(
        f"median ratio {statistics.median(ratios):.3f}; contract checks cost at most "
        f"{max(r['checks_share'] for r in rows):.2%} of a runtime call"
    )
    REPORTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(REPORTS / "bench_harness.json", {"batch": args.batch, "rows": rows})


if __name__ == "__main__":
    main()
