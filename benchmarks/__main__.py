"""python -m benchmarks (make bench): one report of every runtime, trainer, exporter and
server beside its ceiling and its peers, measured in one run on this machine.

    python -m benchmarks            # the full run: every variant, peers' venv made if missing
    python -m benchmarks --quick    # CI: the torch variants, short runs, no venv made

Writes artifacts/reports/bench.json, bench.md and bench_{latency,throughput,server}.png.
Sections: runtimes (benchmarks/runtimes.py), trainers (trainers.py), data (data_path.py: a
folder of photos prepared and streamed), export (export_time.py), server (serving.py,
peers.py); the report from the JSON (report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import data_path, export_time, report, runtimes, serving, trainers
from contract.files import write_json_atomic, write_text_atomic
from contract.paths import CHECKPOINTS, REPORTS, add_repository_argument

SECTIONS = ("runtimes", "trainers", "data", "export", "server")
# Quick (CI) and full settings: seconds per timed figure, server rounds, what is included.
SETTINGS = {
    True: {"runtime_s": 0.15, "runtime_trainers": ("torch",), "server_s": 0.5, "rounds": 1},
    False: {"runtime_s": 1.0, "runtime_trainers": None, "server_s": 3.0, "rounds": 2},
}


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("torch", "tensorflow", "tensorflow-cpu", "onnxruntime", "ai-edge-litert"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "versions": versions,
    }


def run_section(name: str, args: argparse.Namespace) -> dict:
    quick, s = args.quick, SETTINGS[args.quick]
    if name == "runtimes":
        return runtimes.section(
            args.repository, args.threads, s["runtime_s"], s["runtime_trainers"]
        )
    if name == "trainers":
        return trainers.section(quick)
    if name == "data":
        return data_path.section(quick)
    if name == "export":
        return export_time.section(quick, args.checkpoints)
    return serving.section(args.repository, args.model, s["server_s"], s["rounds"], not quick)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short CI version")
    add_repository_argument(parser)
    parser.add_argument(
        "--checkpoints", type=Path, default=CHECKPOINTS, help="for the export section"
    )
    parser.add_argument("--model", default="torch.onnx", help="variant the servers serve")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (runtimes section)")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="sections to run; the others are marked skipped",
    )
    parser.add_argument("--out", type=Path, default=REPORTS, help="folder for the report files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not (args.repository / args.model).is_dir():
        print(f"no variant {args.model} in {args.repository}: run `make export`", file=sys.stderr)
        return 2
    started = time.perf_counter()
    bench: dict = {"machine": machine(), "quick": args.quick}
    for name in SECTIONS:
        t0 = time.perf_counter()
        if name in args.sections:
            print(f"[bench] {name} ...", flush=True)
            bench[name] = run_section(name, args)
        else:
            bench[name] = {"skipped": "not requested (--sections)"}
        bench[name]["section_seconds"] = round(time.perf_counter() - t0, 1)
    bench["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "bench.json", bench)
    text = report.markdown(bench)
    write_text_atomic(args.out / "bench.md", text)
    report.plots(bench, args.out)
    print(text)
    print(f"-> {args.out / 'bench.json'}, bench.md, plots; {bench['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
