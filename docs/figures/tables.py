"""The blocks: markdown from one snapshot each, ending with the run it came from.

Where a report module already turns its JSON into markdown (benchmarks/report.py,
deploy/capacity.py), the block is that module's table, so a page shows what the report shows.
"""

from __future__ import annotations

import statistics

from benchmarks import report as bench_report
from deploy import capacity as capacity_plan

CODE = "code"  # a block computed from the project's code rather than read from a snapshot
SHOWN = {"pass": "pass", "inconclusive": "*inconclusive*", "fail": "**fail**"}
# The bench's server section, where the capacity plan reads it (`make capacity`).
CAPACITY_FILE = "deploy/bench-snapshot.json"


def source(snap: dict, file: str) -> str:
    """The run a snapshot came from, as the line under its table."""
    p = snap["provenance"]
    commands = ", then ".join(f"`{c}`" for c in p["commands"])
    return (
        f"*Measured by {commands} on {p['date']} ({p['cpu']}, {p['logical_cores']} logical "
        f"cores; commit `{p['commit']}`); snapshot `docs/figures/{file}`.*"
    )


def sci(x: float | None) -> str:
    return "-" if x is None else "0" if x == 0 else f"{x:.1e}"


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def size(n: int | None) -> str:
    return "-" if not n else f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def verdicts(rows: list[dict]) -> str:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in SHOWN}
    return ", ".join(f"{n} {SHOWN[v]}" for v, n in counts.items() if n)


def section_body(lines: list[str]) -> str:
    """A benchmarks/report.py section without its `## heading` and blank edges."""
    return "\n".join(lines[1:]).strip()


# --- parity: the `make demo` table and the per-format summary ----------------------------


def host_rows(snap: dict) -> list[dict]:
    """The rows run in Python (not in a browser)."""
    return [v for v in snap["variants"] if not v.get("runtime")]


def group(v: dict) -> str:
    return "transfer" if v["profile"] == "transfer" else v["format"]


def demo(snap: dict) -> str:
    rows = host_rows(snap)
    trainers = list(dict.fromkeys(v["trainer"] for v in rows))
    groups: dict[str, list[dict]] = {}
    for v in rows:
        groups.setdefault(group(v), []).append(v)
    lines = [
        "| format | profile | " + " | ".join(trainers) + " | top-1 agreement, worst | verdict |",
        "|---|---|" + "---:|" * len(trainers) + "---:|---|",
    ]
    for name, members in groups.items():
        diff = {v["trainer"]: sci(v["max_abs_diff"]) for v in members}
        label = "eager, rebuilt in the other framework" if name == "transfer" else f"`{name}`"
        worst = min(v["top1_agreement"] for v in members)
        cells = [label, members[0]["profile"], *(diff.get(t, "-") for t in trainers)]
        lines.append("| " + " | ".join([*cells, pct(worst), verdicts(members)]) + " |")
    accuracy = ", ".join(
        f"{v['trainer']} {pct(v['reference_accuracy'])}" for v in rows if v["profile"] == "transfer"
    )
    counts = {v: sum(r["verdict"] == v for r in rows) for v in SHOWN}
    return "\n".join(
        [
            *lines,
            "",
            f"Cells: max abs logit difference from the trainer's eager model on "
            f"{rows[0]['labelled_images']} held-out images plus noise images. "
            + ", ".join(f"{n} {v}" for v, n in counts.items())
            + f" of {len(rows)}. The eager models' accuracy on those images: {accuracy}.",
            "",
            source(snap, "parity.json"),
        ]
    )


def parity_formats(snap: dict) -> str:
    rows = host_rows(snap)
    browser: dict[str, list[dict]] = {}
    for v in snap["variants"]:
        if v.get("runtime"):
            browser.setdefault(v["format"], []).append(v)
    lines = [
        "| format | profile | max abs logit diff | top-1 agreement | accuracy change | "
        "in the browser: max abs diff | browser vs its Python runtime | size |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[str, list[dict]] = {}
    for v in rows:
        if v["profile"] != "transfer":
            groups.setdefault(v["format"], []).append(v)
    for name, members in groups.items():
        web = browser.get(name, [])
        cells = [
            f"`{name}`",
            members[0]["profile"],
            sci(max(v["max_abs_diff"] for v in members)),
            pct(min(v["top1_agreement"] for v in members)),
            f"{min(v['accuracy_delta'] for v in members):+.2%}",
            sci(max(v["max_abs_diff"] for v in web)) if web else "",
            sci(max(v["host_max_abs_diff"] for v in web)) if web else "",
            size(max(v["size_bytes"] for v in members)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    web_rows = sum(len(w) for w in browser.values())
    return "\n".join(
        [
            *lines,
            "",
            f"Worst of the {len({v['trainer'] for v in rows})} trainers' variants per format "
            f"(size: the largest, every file of the variant); {web_rows} in-browser rows. "
            f"All rows: {verdicts(snap['variants'])}.",
            "",
            source(snap, "parity.json"),
        ]
    )


# --- training and lockstep ---------------------------------------------------------------


def train(snap: dict) -> str:
    lines = [
        "| trainer | device | epochs | seconds (all epochs) | images/s (last epoch) | "
        "test accuracy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, t in snap["trainers"].items():
        cells = [
            f"`{name}`",
            t["device"],
            str(t["epochs"]),
            f"{t['seconds']:.1f}",
            f"{t['images_per_s']:,.0f}",
            pct(t["test_accuracy"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", source(snap, "train.json")])


def lockstep(snap: dict) -> str:
    s = snap["settings"]
    per_epoch = s["steps_per_epoch"]
    ends = [per_epoch * e for e in range(1, s["epochs"] + 1)]
    steps = [step for step in sorted({0, 1, 5, *ends}) if step in snap["steps"]]
    pairs = dict(snap["pairs"])
    if snap.get("reference"):
        pairs[snap["reference"]["name"]] = snap["reference"]
    lines = [
        "| step | " + " | ".join(pairs) + " |",
        "|---:|" + "---|" * len(pairs),
    ]
    for step in steps:
        i = snap["steps"].index(step)
        cells = [f"{sci(d['logits'][i])} / {sci(d['weights'][i])} / {pct(d['top1'][i], 1)}"
                 for d in pairs.values()]  # fmt: skip
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    accuracy = ", ".join(f"{t} {pct(a)}" for t, a in snap["test_accuracy"].items())
    return "\n".join(
        [
            *lines,
            "",
            f"Each cell: max abs logit difference on the {s['test_images']} test images / max "
            f"abs weight difference / top-1 agreement. Data: {s['data']}, {s['epochs']} "
            f"epoch(s) of {per_epoch} steps, batch {s['batch_size']}, lr {s['lr']}, dropout "
            f"{s['dropout']}, seed {s['seed']}, on the {s['device']}; test accuracy at the "
            f"end: {accuracy}.",
            "",
            source(snap, "lockstep.json"),
        ]
    )


# --- the bench ---------------------------------------------------------------------------


def export(snap: dict) -> str:
    body = section_body(bench_report.export_md(snap["export"]))
    return f"{body}\n\nSeconds summed over the trainers.\n\n{source(snap, 'bench.json')}"


def bench_runtimes(snap: dict) -> str:
    return section_body(bench_report.runtimes_md(snap["runtimes"])) + "\n\n" + bench_source(snap)


def bench_trainers(snap: dict) -> str:
    return section_body(bench_report.trainers_md(snap["trainers"])) + "\n\n" + bench_source(snap)


def bench_source(snap: dict) -> str:
    m = snap["machine"]
    load = ", ".join(str(x) for x in m["load_average"])
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"{source(snap, 'bench.json')} Load average at the start {load}; {versions}."


def bench_server(snap: dict) -> str:
    server = snap["server"]
    body = section_body(bench_report.server_md(server))
    head = (
        f"`{server['model']}`, one image per request, server on {server['server_cores']} "
        f"core, load generator on {server['load_cores']}, best of {server.get('rounds', 1)} "
        f"rounds of {server['seconds']} s."
    )
    return f"{head}\n\n{body}\n\n*From {snap['source']}; snapshot `{CAPACITY_FILE}`.*"


def capacity(snap: dict) -> str:
    return capacity_plan.table(snap)


# --- the server alone, and the browser ---------------------------------------------------


def serve(snap: dict) -> str:
    runs = [
        ("V2 binary, batching on (defaults)", snap["batching"]),
        ("V2 binary, batching off (`--max-batch 1`)", snap["no_batching"]),
        ("KServe V2 gRPC, batching on", snap["grpc"]),
    ]
    lines = [
        "| server | c | req/s | p50 ms | p99 ms | server CPU us/request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, run in runs:
        for c in ("c1", "c16"):
            r = run[c]
            cells = [label, c[1:], f"{r['req_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
                     f"{r['p99_ms']:.2f}", f"{r['server_cpu_us_per_request']:,}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    load = snap["batching"]["load_c32"]
    return "\n".join(
        [
            *lines,
            "",
            f"`{snap['model']}`, one image per request; {snap['cores']}; best of the rounds. "
            f"Batching's gain at c=16: {snap['batching_gain_c16']:.2f}x; gRPC over HTTP binary: "
            f"{snap['grpc_vs_http_c1']:.2f}x at c=1, {snap['grpc_vs_http_c16']:.2f}x at c=16. "
            f"Load run, {load['requests']:,} requests at c=32 with batching on: "
            f"{load['req_per_s']:,.0f} req/s, p99 {load['p99_ms']:.2f} ms, {load['errors']} "
            f"errors, server RSS {load['rss_before_mib']} -> {load['rss_after_mib']} MiB.",
            "",
            source(snap, "serve_bench.json"),
        ]
    )


def browser(snap: dict) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in snap["variants"]:
        groups.setdefault((r["runtime"], r["variant"].split(".", 1)[1]), []).append(r)
    lines = [
        "| runtime | format | ms per image, batch 1 | ms per image, batch 64 |",
        "|---|---|---:|---:|",
    ]
    for (runtime, fmt), rows in groups.items():
        b1 = statistics.median(r["ms_per_image_b1"] for r in rows)
        b64 = statistics.median(r["ms_per_image_b64"] for r in rows)
        lines.append(f"| {runtime} | `{fmt}` | {b1:.3f} | {b64:.3f} |")
    threads = "on" if snap["cross_origin_isolated"] else "off (no cross-origin isolation)"
    return "\n".join(
        [
            *lines,
            "",
            f"Median over the trainers' variants of each format; wasm threads {threads}.",
            "",
            source(snap, "browser_bench.json"),
        ]
    )


def browser_site(snap: dict) -> str:
    s = snap["site"]
    lines = ["| files | size |", "|---|---:|", f"| the page | {size(s['page_bytes'])} |"]
    lines += [f"| `{path}` | {size(n)} |" for path, n in s["vendor_bytes"].items()]
    lines += [f"| `models/` | {size(s['models_bytes'])} |"]
    lines += [f"| the whole site | {size(s['total_bytes'])} |"]
    return "\n".join([*lines, "", source(snap, "browser_bench.json")])
