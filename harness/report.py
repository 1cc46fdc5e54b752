"""The parity report for people and machines: parity.json, parity.md, parity.png."""

from __future__ import annotations

import math
from pathlib import Path

from contract.files import atomic_path, write_json_atomic, write_text_atomic
from contract.formats import FORMAT_NAMES
from contract.names import TRAINERS
from harness.verdict import FAIL, INCONCLUSIVE, PASS, VERDICTS

COLUMNS = (
    "variant",
    "profile",
    "max abs diff",
    "top-1 agree",
    "accuracy",
    "Δ acc",
    "size",
    "verdict",
)
SHOWN = {PASS: "pass", INCONCLUSIVE: "*inconclusive*", FAIL: "**FAIL**"}


def fmt_size(n: int) -> str:
    return "-" if not n else f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def fmt_num(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(result: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for v in result["variants"]:
        cells = (
            v["name"],
            v["profile"],
            fmt_num(v["max_abs_diff"], ".2e"),
            fmt_num(v["top1_agreement"], ".2%"),
            fmt_num(v["accuracy"], ".2%"),
            fmt_num(v["accuracy_delta"], "+.2%"),
            fmt_size(v["size_bytes"]),
            SHOWN[v["verdict"]] + (f": {v['reason']}" if v["reason"] else ""),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(result: dict, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    write_json_atomic(reports / "parity.json", result)
    tally = result["counts"]
    status = "FAILED" if tally[FAIL] else "inconclusive rows" if tally[INCONCLUSIVE] else "passed"
    text = (
        f"# Parity report: {status}\n\nEvery variant against the eager model it came from: "
        + ", ".join(f"{tally[v]} {v}" for v in VERDICTS)
        + ".\n\nQuantized rows are judged on the labelled held-out images (flips between "
        "near-tied classes forgiven, allowances at 95% confidence) and bounded on the noise "
        "images; *inconclusive* means too few labelled images to tell (see docs/parity.md).\n\n"
    )
    text += table(result) + "\n\n![max abs logit diff by trainer and format](parity.png)\n"
    diagnosed = [v for v in result["variants"] if v.get("diagnosis")]
    if diagnosed:
        text += (
            "\n## Where the rows leave their eager model\n\nThe error at each probe point of "
            "the CNN relative to its range, against the budget of the row's profile "
            "(`python -m harness.diagnose`, docs/parity.md):\n\n"
            + "".join(f"- `{v['name']}` ({v['verdict']}): {v['diagnosis']}\n" for v in diagnosed)
        )
        if any(v.get("layers") for v in diagnosed):
            text += "\n![error per layer](diagnose.png)\n"
    write_text_atomic(reports / "parity.md", text)
    plot(result, reports / "parity.png")
    print(table(result))


def plot(result: dict, path: Path) -> None:
    """Heat map of max abs logit diff (log scale), trainer x format, failures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # One cell per trainer x format: the in-browser rows of a variant are in the table only.
    rows = [v for v in result["variants"] if v["format"] in FORMAT_NAMES and not v.get("runtime")]
    present = {v["trainer"] for v in rows}
    trainers = [t for t in TRAINERS if t in present]
    grid = np.full((len(trainers), len(FORMAT_NAMES)), np.nan)
    failed, unsure, exact = [], [], []
    for v in rows:
        i, j = trainers.index(v["trainer"]), FORMAT_NAMES.index(v["format"])
        d = v["max_abs_diff"]
        grid[i, j] = np.log10(max(d, 1e-9)) if d is not None and not math.isnan(d) else np.nan
        if v["verdict"] == FAIL:
            failed.append((i, j))
        elif v["verdict"] == INCONCLUSIVE:
            unsure.append((i, j))
        if d == 0.0:
            exact.append((i, j))
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * len(trainers)))
    im = ax.imshow(grid, cmap="viridis", vmin=-8, vmax=0, aspect="auto")
    ax.set_xticks(range(len(FORMAT_NAMES)), FORMAT_NAMES, rotation=30, ha="right")
    ax.set_yticks(range(len(trainers)), trainers)
    for i in range(len(trainers)):
        for j in range(len(FORMAT_NAMES)):
            if not np.isnan(grid[i, j]):
                mark = f"{10 ** grid[i, j]:.0e}" if (i, j) not in exact else "0"
                mark = "FAIL" if (i, j) in failed else mark + "?" if (i, j) in unsure else mark
                colour = "black" if grid[i, j] > -3 else "white"
                ax.text(j, i, mark, ha="center", va="center", color=colour, fontsize=9)
    fig.colorbar(im, ax=ax, label="log10 max abs logit diff")
    ax.set_title("parity: max abs logit diff vs the eager model")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
