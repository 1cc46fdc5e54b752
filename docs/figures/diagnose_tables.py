"""The parity page's "When parity fails" block: a real bug's row and its error per layer
(docs/figures/bug_example.py's report)."""

from __future__ import annotations

from docs.figures.tables import sci, source


def bug_example(snap: dict) -> str:
    row = snap["row"]
    first = row["first_divergence"]
    lines = ["| probe point | error / its range | budget | |", "|---|---:|---:|---|"]
    for layer in row["layers"]:
        mark = (
            "**first over its budget**"
            if layer["probe"] == first
            else ("over" if layer["over"] else "")
        )
        lines.append(
            f"| `{layer['probe']}` | {sci(layer['error'])} | {layer['budget']:.0e} | {mark} |"
        )
    return "\n".join(
        [
            f"`{row['name']}` with the bug ({snap['bug']}): **{row['verdict']}**, "
            f"{row['reason']}. The gate's diagnosis: {row['diagnosis']}.",
            "",
            *lines,
            "",
            source(snap, "bug_example.json"),
        ]
    )
