"""The blocks of your own images' page (docs/data.md): what the defaults give on a folder of
photos (benchmarks/photos.py's report), and the CNN each image size gets (from the code)."""

from __future__ import annotations

from benchmarks import report as bench_report
from docs.figures.tables import bench_source, pct, section_body, source


def photos(snap: dict) -> str:
    s, cnn = snap["settings"], snap["cnn"]
    lines = [
        "| trainer | test accuracy | validation accuracy after each epoch | lowest after the first "
        "| images/s | seconds |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, r in snap["trainers"].items():
        val = r["val_accuracy"]
        curve = " ".join(f"{v:.2f}" for v in val)
        lines.append(
            f"| `{name}` | {pct(r['test_accuracy'])} | {curve} | {min(val[1:]):.2f} | "
            f"{r['images_per_s']:,.0f} | {r['seconds']:,.0f} |"
        )
    image = "x".join(map(str, snap["image"]))
    return "\n".join(
        [
            *lines,
            "",
            f"`{snap['command']}` on {snap['folder']}: images at {image}, augment "
            f"{s['augment']}, lr {s['lr']:g} after {s['warmup_epochs']} warm-up epoch(s), "
            f"BatchNorm recomputed over {s['bn_batches']} batches per epoch; the CNN "
            f"{tuple(cnn['widths'])} with a {cnn['head']} head, {cnn['weights']:,} weights.",
            "",
            source(snap, "photos.json"),
        ]
    )


def cnn_sizes(_: dict) -> str:
    """The default CNN per image size (contract/spec.py:layout), with its cost."""
    from contract.spec import CNNSpec

    lines = [
        "| image | stages (widths) | head | weights | float32 file | multiply-adds per image |",
        "|---|---|---|---:|---:|---:|",
    ]
    for side in (8, 16, 28, 32, 64, 96, 128, 224):
        spec = CNNSpec.for_data(side, 3 if side > 8 else 1, 10)
        cost = spec.cost()
        widths = ", ".join(map(str, spec.widths))
        last = f"{spec.feature_side}x{spec.feature_side}"
        lines.append(
            f"| {side}x{side}x{spec.channels} | {len(spec.widths)} ({widths}) | {spec.head} of "
            f"{last} | {cost['weights']:,} | {cost['weights'] * 4 / 2**20:.1f} MiB | "
            f"{cost['macs'] / 1e6:,.0f} M |"
        )
    return "\n".join(
        [
            *lines,
            "",
            "*Computed from `CNNSpec.for_data` (10 classes), as `python -m train --describe` "
            "prints it.*",
        ]
    )


def bench_data(snap: dict) -> str:
    """The bench's data section: prepare, the trainers from the cache, memory."""
    return section_body(bench_report.data_md(snap["data"])) + "\n\n" + bench_source(snap)
