"""bench.md and the plots, computed from bench.json's dict alone (nothing measured here).

Every ratio in the tables is derived here from the figures beside it, so the markdown can
never disagree with the JSON it was made from.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks import stages
from benchmarks.data_path import markdown as data_md
from benchmarks.stages import fmt
from contract.files import atomic_path
from contract.formats import FORMATS

PEERS = ("triton", "litserve", "bare-asgi-v2", "noop")
TANDEM = "tandem-v2-binary"
PLOTS = {
    "latency": "bench_latency.png",
    "throughput": "bench_throughput.png",
    "server": "bench_server.png",
    "stages": "bench_stages.png",
}


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def server_ratios(server: dict) -> dict[int, dict[str, float | None]]:
    """{concurrency: {peer: tandem-v2-binary req/s over the peer's}}."""
    by = {(r["server"], r["concurrency"]): r["req_per_s"] for r in server["rows"]}
    concurrencies = sorted({r["concurrency"] for r in server["rows"]})
    return {
        c: {p: ratio(by.get((TANDEM, c)), by.get((p, c))) for p in PEERS} for c in concurrencies
    }


def quantized_ratios(section: dict) -> list[dict]:
    """Each fp16 and int8 variant's images/s over its own fp32 file's (onnx-int8 over onnx,
    tflite-fp16 over tflite...), same trainer, same run, at every batch size."""
    by = {(r["trainer"], r["format"]): r for r in section["rows"]}
    out = []
    for r in section["rows"]:
        base = by.get((r["trainer"], r["format"].rsplit("-", 1)[0]))
        if r["format"] not in FORMATS or FORMATS[r["format"]].precision == "fp32" or not base:
            continue
        speedup = {
            b: ratio(r["images_per_s"].get(str(b)), base["images_per_s"].get(str(b)))
            for b in section["batches"]
        }
        out.append({"variant": r["variant"], "over": base["variant"], "speedup": speedup})
    return out


def machine_line(m: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    return f"{m.get('cpu', '?')}, {m.get('logical_cores', '?')} logical cores; {versions}"


def runtimes_md(s: dict) -> list[str]:
    batches = s["batches"]
    out = [
        f"## Runtimes (in process, {s['threads']} runtime thread(s))",
        "",
        f"harness/raw at batch {s['ratio_batch']}: median {s['median_harness_over_raw']:.3f}, "
        f"worst {s['worst_harness_over_raw']:.3f} (goal <= {s['goal_harness_over_raw']}).",
        "",
        "| variant | b1 p50 ms | b1 p99 ms | "
        + " | ".join(f"b{b} img/s" for b in batches)
        + " | harness/raw |",
        "|---|" + "---|" * (len(batches) + 3),
    ]
    for r in s["rows"]:
        figures = " | ".join(fmt(r["images_per_s"].get(str(b)), 0) for b in batches)
        out.append(
            f"| {r['variant']} | {r['b1_p50_ms']:.3f} | {r['b1_p99_ms']:.3f} | {figures} | "
            f"{r['harness_over_raw']:.3f} |"
        )
    quantized = quantized_ratios(s)
    if quantized:
        out += [
            "",
            "Quantized over fp32 (images/s of each fp16 and int8 variant over its own fp32 "
            "file's, same trainer, same run):",
            "",
            "| variant | over | " + " | ".join(f"b{b}" for b in batches) + " |",
            "|---|---|" + "---|" * len(batches),
        ]
        for q in quantized:
            figures = " | ".join(fmt(q["speedup"][b], 2) for b in batches)
            out.append(f"| {q['variant']} | {q['over']} | {figures} |")
    return [*out, ""]


def trainers_md(s: dict) -> list[str]:
    cpu = s["cpu"]
    w = cpu["workload"]
    out = [
        "## Trainers",
        "",
        f"CPU, synthetic {'x'.join(map(str, w['image']))} images, batch {w['batch_size']}, "
        f"{w['samples']} samples, last of {w['epochs']} epochs:",
        "",
        "| trainer | images/s | / torch |",
        "|---|---|---|",
    ]
    torch_figure = cpu["images_per_s"].get("torch")
    for name, figure in cpu["images_per_s"].items():
        out.append(f"| {name} | {fmt(figure, 0)} | {fmt(ratio(figure, torch_figure), 3)} |")
    cuda = s["cuda"]
    out += ["", "CUDA: " + (cuda["skipped"] if "skipped" in cuda else cuda["device"]), ""]
    if "skipped" not in cuda:
        ceilings = cuda["ceiling_images_per_s"]
        out += [
            f"Ceiling (same CNN, batch {cuda['workload']['batch_size']}): "
            + ", ".join(f"{k} {fmt(v, 0)} img/s" for k, v in ceilings.items()),
            "",
            "| run | images/s | trainer / ceiling |",
            "|---|---|---|",
        ]
        for r in cuda["rows"]:
            figure = r.get("images_per_s")
            top = ceilings.get(r["run"].split("+")[0])
            out.append(f"| {r['run']} | {fmt(figure, 0)} | {fmt(ratio(figure, top), 3)} |")
    return [*out, ""]


def export_md(s: dict) -> list[str]:
    if "skipped" in s:
        return ["## Export", "", s["skipped"], ""]
    out = [
        f"## Export ({', '.join(s['trainers'])})",
        "",
        "| format | variants | seconds | share |",
        "|---|---|---|---|",
    ]
    total = s["total_seconds"]
    for name, r in s["formats"].items():
        share = fmt(ratio(r["seconds"], total), 3)
        out.append(f"| {name} | {r['variants']} | {r['seconds']:.1f} | {share} |")
    return [*out, f"| total | {len(s['variants'])} | {total:.1f} | |", ""]


def server_md(s: dict) -> list[str]:
    out = [
        f"## Server ({s['model']}, one image per request, server on {s['server_cores']} core, "
        f"load generator on {s['load_cores']}, best of {s.get('rounds', 1)} x {s['seconds']} s)",
        "",
        "| server | c | req/s | p50 ms | p99 ms | server CPU ms/req | RSS MiB | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        if r["req_per_s"] is None:
            why = " ".join(r["skipped"].split()).replace("|", "/")[:160]  # one table cell
            out.append(f"| {r['server']} | {r['concurrency']} | skipped: {why} |" + " |" * 5)
            continue
        out.append(
            f"| {r['server']} | {r['concurrency']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['server_cpu_ms_per_req']:.3f} | {r['server_rss_mib']:.0f} | "
            f"{r['errors']} |"
        )
    out += [
        "",
        *stages.headline_md(s),
        *stages.stages_md(s),
        f"{TANDEM} req/s over each peer's:",
        "",
    ]
    out += ["| c | " + " | ".join(PEERS) + " |", "|---|" + "---|" * len(PEERS)]
    for c, peers in server_ratios(s).items():
        out.append(f"| {c} | " + " | ".join(fmt(peers[p], 2) for p in PEERS) + " |")
    return [*out, ""]


SECTIONS_MD = {
    "runtimes": runtimes_md,
    "trainers": trainers_md,
    "data": data_md,
    "export": export_md,
    "server": server_md,
}


def markdown(bench: dict) -> str:
    lines = [
        "# tandem bench" + (" (--quick)" if bench["quick"] else ""),
        "",
        f"Machine: {machine_line(bench['machine'])}.",
        "",
    ]
    for name, section_md in SECTIONS_MD.items():
        section = bench[name]
        if "skipped" in section and len(section) <= 2:  # the reason and its seconds only
            lines += [f"## {name.capitalize()}", "", f"skipped: {section['skipped']}", ""]
        else:
            lines += section_md(section)
    lines += [f"![{name}]({file})" for name, file in PLOTS.items()]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plots(bench: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    if "rows" in bench["runtimes"]:
        written += runtime_plots(bench["runtimes"], out, plt)
    if "rows" in bench["server"]:
        written.append(server_plot(bench["server"]["rows"], out, plt))
        written.append(stages.plot(bench["server"], out / PLOTS["stages"], plt, save_figure))
    plt.close("all")
    return [path for path in written if path]


def runtime_plots(section: dict, out: Path, plt) -> list[Path]:
    rows = section["rows"]
    threads = f"{section['threads']} thread(s)"
    written = []
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    names = [r["variant"] for r in rows]
    # A bar from p50 to p99 and a dot at p50: on a log axis a bar from 0 would mislead.
    p50, p99 = [r["b1_p50_ms"] for r in rows], [r["b1_p99_ms"] for r in rows]
    ax.barh(names, [b - a for a, b in zip(p50, p99, strict=True)], left=p50, alpha=0.35,
            label="p50 to p99")  # fmt: skip
    ax.plot(p50, names, "o", label="p50")
    ax.set_xlim(left=min(p50) * 0.7)
    ax.set_xlabel("batch-1 latency, ms (log)")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.legend()
    ax.set_title(f"Runtimes, batch 1, {section['threads']} thread(s)")
    save_figure(fig, written_path := out / PLOTS["latency"])
    written.append(written_path)
    fig, ax = plt.subplots(figsize=(8, 5))
    # One line per format (the median over its trainers' variants), not one per variant.
    formats: dict[str, list[dict]] = {}
    for r in rows:
        formats.setdefault(r["format"], []).append(r["images_per_s"])
    for i, (name, figures) in enumerate(formats.items()):
        batches = sorted({int(b) for f in figures for b in f})
        medians = [statistics.median(f[str(b)] for f in figures if str(b) in f) for b in batches]
        label = f"{name} ({len(figures)})"
        ax.plot(batches, medians, marker="osv^D<>p*h"[i % 10], label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images/s")
    ax.set_title(f"Throughput vs batch size, per format (median of its variants), {threads}")
    ax.legend(fontsize=8, ncol=2)
    save_figure(fig, written_path := out / PLOTS["throughput"])
    written.append(written_path)
    return written


def server_plot(server: list[dict], out: Path, plt) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(dict.fromkeys(r["server"] for r in server))
    for i, c in enumerate(sorted({r["concurrency"] for r in server})):
        by = {r["server"]: r["req_per_s"] or 0 for r in server if r["concurrency"] == c}
        ax.bar(
            [j + 0.4 * i for j in range(len(names))], [by[n] for n in names], 0.4, label=f"c={c}"
        )
    ax.set_xticks([j + 0.2 for j in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("req/s (skipped: 0)")
    ax.set_title("Server vs peers, one image per request")
    ax.legend()
    save_figure(fig, out / PLOTS["server"])
    return out / PLOTS["server"]
