"""Where one request's server CPU goes, stage by stage, and tandem over the bare endpoints.

After the timed rounds of the server section (benchmarks/serving.py), one more load run per
row and concurrency runs under py-spy, a sampling profiler. `--nonblocking`: it reads the
server's memory without stopping it, so the server runs at its own pace; py-spy itself
runs on the load generator's core. Each sample is charged to a stage by its Python
stack: the innermost frame that belongs to a stage decides, so ONNX Runtime's call
inside the batcher is `runtime`, not `batching`. The server CPU per request measured over
the same run, times a stage's share of the samples, is that stage's microseconds per
request. The bare endpoints' steps are functions named like tandem's
(benchmarks/peer_asgi.py), so both break down alike.

A sample holds Python frames only: time in C called from a frame (orjson, numpy, ONNX
Runtime's kernels) is charged to that frame's stage, and time with no frame of the app
on the stack (uvicorn's HTTP parsing, the event loop, the socket calls) to `HTTP server
+ loop`. Nothing here costs the server anything when the bench is not running.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks import peers
from benchmarks.server import load

HERE = Path(__file__).resolve().parent
RATE = 400  # samples per second
ROWS = (  # the rows broken down, each beside the bare endpoint of its protocol
    "tandem-v2-binary",
    "bare-asgi-v2",
    "tandem-v2-json",
    "bare-asgi-v2-json",
    "tandem-tfserving-rest",
)
# The headline: (tandem's row, the row it is judged against). Each protocol against the bare
# endpoint doing the same work; TF Serving's JSON also against tandem's own V2 JSON.
HEADLINE = (
    ("tandem-v2-binary", "bare-asgi-v2"),
    ("tandem-v2-json", "bare-asgi-v2-json"),
    ("tandem-tfserving-rest", "bare-asgi-v2-json"),
    ("tandem-tfserving-rest", "tandem-v2-json"),
)
SERVER = "HTTP server + loop"
STAGES = (
    "read body",
    "parse + checks",
    "batching",
    "runtime",
    "contract checks",
    "encode",
    "send",
    "metrics",
    "connection guard",
    "app (other)",
    SERVER,
)
BARE_STEPS = ("read_body", "parse", "encode", "answer", "v2_app.<locals>.app", "noop_app")
# (stage, file, functions or None for every function of the file); a frame takes the
# first rule it matches. `file` ends the frame's path as py-spy prints it.
RULES = (
    ("runtime", "onnxruntime/capi/onnxruntime_inference_collection.py", None),
    ("runtime", "harness/runners.py", None),
    ("contract checks", "harness/backend.py", None),
    ("metrics", "serve/metrics.py", None),
    ("batching", "serve/batching.py", None),
    ("encode", "serve/v2_response.py", None),
    ("encode", "serve/tfserving.py", ("encode",)),
    ("encode", "peer_asgi.py", ("encode",)),
    ("parse + checks", "serve/v2.py", None),
    ("parse + checks", "serve/tensors.py", None),
    ("parse + checks", "serve/errors.py", None),
    ("parse + checks", "serve/tfserving.py", None),
    ("parse + checks", "peer_asgi.py", ("parse",)),
    ("read body", "serve/limits.py", None),
    ("read body", "peer_asgi.py", ("read_body",)),
    ("send", "serve/dataplane.py", ("respond",)),
    ("send", "uvicorn/protocols/http/httptools_impl.py", ("RequestResponseCycle.send",)),
    ("send", "peer_asgi.py", ("answer",)),
    ("app (other)", "peer_asgi.py", BARE_STEPS),
)
# Frames whose own lines count, but not what runs under them: the connection guard wraps
# uvicorn's parsing (its data_received holds every HTTP callback), which stays the server's.
SELF_ONLY = (("connection guard", "serve/connections.py"),)
APP_FILES = re.compile(r"(^|/)serve/(?!__main__\.py|connections\.py)")  # tandem's app
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):\d+\)$")


def stage_of(frame: str, innermost: bool = False) -> str | None:
    """The stage one py-spy frame, `function (path:line)`, belongs to; None: none."""
    match = FRAME.match(frame)
    if match is None:
        return None
    function, file = match["function"], match["file"]
    for stage, suffix in SELF_ONLY:
        if file.endswith(suffix):
            return stage if innermost else None
    for stage, suffix, functions in RULES:
        if file.endswith(suffix) and (functions is None or function in functions):
            return stage
    return "app (other)" if APP_FILES.search(file) else None


def charge(stack: str) -> str:
    """One sample's stage: its innermost frame that has one (frames outermost first)."""
    for depth, frame in enumerate(reversed(stack.split(";"))):
        if stage := stage_of(frame, innermost=depth == 0):
            return stage
    return SERVER


def shares(raw: str) -> tuple[dict[str, float], int]:
    """py-spy's raw output (one `stack count` per line) -> each stage's share, samples."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[charge(stack)] += int(count)
    total = sum(counts.values())
    return {s: counts[s] / total for s in STAGES} if total else {}, total


def py_spy() -> str | None:
    """The py-spy this venv installed (requirements), else one on the PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.is_file() else shutil.which("py-spy")


async def profile_run(send, pid: int, concurrency: int, seconds: float) -> dict:
    """One load run with py-spy sampling `pid`: microseconds per request per stage."""
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        out = Path(tmp) / "samples.txt"
        cmd = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking"]
        cmd += ["--duration", str(max(1, round(seconds))), "--format", "raw", "-o", str(out)]
        spy = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        used = peers.group_cpu_seconds(pid)
        run = await load(send, concurrency, 10**9, max(1, round(seconds)) + 0.5)
        used = peers.group_cpu_seconds(pid) - used
        _, err = await spy.communicate()
        if spy.returncode != 0 or not out.is_file():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-300:].strip()}")
        share, samples = shares(out.read_text())
    cpu_us = used / max(run["requests"], 1) * 1e6
    return {
        "cpu_us_per_request": round(cpu_us, 1),
        "samples": samples,
        "us": {stage: round(share.get(stage, 0.0) * cpu_us, 1) for stage in STAGES},
    }


async def breakdown(senders: dict, pids: dict[str, int], seconds: float) -> dict:
    """{row: {"c1": ..., "c16": ...}} for ROWS that run, or {"skipped": why}."""
    if py_spy() is None:
        return {"skipped": "no py-spy installed (make setup installs it)"}
    out: dict = {}
    try:
        for row in ROWS:
            if row in senders:
                await load(senders[row], 16, 2000, 0.5)  # pooled connections renewed, untimed
                out[row] = {
                    f"c{c}": await profile_run(senders[row], pids[row], c, seconds) for c in (1, 16)
                }
    except RuntimeError as e:  # no permission to read another process, say
        return {"skipped": str(e)}
    return out


# --- the report ---------------------------------------------------------------------------


def headline(server: dict) -> list[dict]:
    """tandem req/s over the row it is judged against (HEADLINE), per concurrency."""
    by = {(r["server"], r["concurrency"]): r["req_per_s"] for r in server["rows"]}
    out = []
    for row, over in HEADLINE:
        ratios = {}
        for c in sorted({r["concurrency"] for r in server["rows"]}):
            mine, theirs = by.get((row, c)), by.get((over, c))
            ratios[f"c{c}"] = round(mine / theirs, 3) if mine and theirs else None
        out.append({"server": row, "over": over, "ratio": ratios})
    return out


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def headline_md(server: dict) -> list[str]:
    rows = headline(server)
    keys = list(rows[0]["ratio"]) if rows else []
    out = ["tandem req/s over the bare endpoint's (and TF Serving's over V2 JSON), same run:", ""]
    out += ["| tandem | over | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in rows:
        out.append(
            f"| {r['server']} | {r['over']} | "
            + " | ".join(fmt(r["ratio"][k], 2) for k in keys)
            + " |"
        )
    return [*out, ""]


def stages_md(server: dict) -> list[str]:
    stages = server.get("stages", {})
    if "skipped" in stages or not stages:
        return ["Stages: " + stages.get("skipped", "not measured"), ""]
    out = [
        "Server CPU per request by stage, us (py-spy samples over one run each; "
        "benchmarks/stages.py):",
        "",
    ]
    for c in ("c1", "c16"):
        rows = [r for r in stages if c in stages[r]]
        out += [f"| {c} | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
        for stage in STAGES:
            out.append(
                f"| {stage} | " + " | ".join(fmt(stages[r][c]["us"][stage], 1) for r in rows) + " |"
            )
        total = " | ".join(fmt(stages[r][c]["cpu_us_per_request"], 1) for r in rows)
        out += [f"| total | {total} |", ""]
    return out


def plot(server: dict, path: Path, plt, save) -> Path | None:
    stages = server.get("stages", {})
    if "skipped" in stages or not stages:
        return None
    bars = [(f"{row} {c}", stages[row][c]["us"]) for row in stages for c in stages[row]]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(bars) + 1.5))
    left = [0.0] * len(bars)
    colors = plt.get_cmap("tab20").colors  # one color per stage: tab10 repeats past ten
    for stage, color in zip(STAGES, colors[::2] + colors[1::2], strict=False):
        widths = [us[stage] for _, us in bars]
        ax.barh([name for name, _ in bars], widths, left=left, label=stage, color=color)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("server CPU per request, us")
    ax.set_title("Where a request's server CPU goes (py-spy samples)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, path)
    return path
