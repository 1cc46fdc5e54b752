"""The lockstep report: lockstep.json (everything), lockstep.md (the table at milestone
steps) and lockstep.png (divergence over steps, log scale, one line per pair)."""

from __future__ import annotations

from pathlib import Path

from contract.files import atomic_path, write_json_atomic, write_text_atomic

JSON_FILE, MD_FILE, PNG_FILE = "lockstep.json", "lockstep.md", "lockstep.png"


def milestones(result: dict) -> list[int]:
    """Step 0, 1 and 5, and the end of every epoch, where traced."""
    per_epoch = result["settings"]["steps_per_epoch"]
    ends = [per_epoch * e for e in range(1, result["settings"]["epochs"] + 1)]
    return [s for s in sorted({0, 1, 5, *ends}) if s in result["steps"]]


def lines(result: dict) -> dict[str, dict]:
    """Every compared pair, then the rounding-only reference where there is one."""
    ref = result.get("reference")
    return {**result["pairs"], **({ref["name"]: ref} if ref else {})}


def table(result: dict) -> str:
    """Markdown: per milestone step, per pair: max abs logit diff / max abs weight diff /
    top-1 agreement on the test split."""
    pairs = lines(result)
    per_epoch = result["settings"]["steps_per_epoch"]
    rows = [
        "| step | epoch | " + " | ".join(pairs) + " |",
        "|---:|---:|" + "---|" * len(pairs),
    ]
    for step in milestones(result):
        i = result["steps"].index(step)
        cells = [
            f"{d['logits'][i]:.1e} / {d['weights'][i]:.1e} / {d['top1'][i]:.2%}"
            for d in pairs.values()
        ]
        rows.append(f"| {step} | {step / per_epoch:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def markdown(result: dict) -> str:
    s = result["settings"]
    shas = {r["sha256"] for r in result["init"].values()}
    init = f"`{next(iter(shas))[:16]}...`, the same for all three" if len(shas) == 1 else "differ"
    accuracy = ", ".join(f"{t} {a:.2%}" for t, a in result["test_accuracy"].items())
    return "\n".join(
        [
            "# Lockstep: three trainers, one trajectory",
            "",
            f"{s['data']}, {len(result['steps']) and result['steps'][-1]} steps "
            f"({s['epochs']} epoch(s) of {s['steps_per_epoch']}), batch {s['batch_size']}, "
            f"lr {s['lr']}, dropout {s['dropout']}, seed {s['seed']}, on the {s['device']}.",
            f"Initial weights drawn by {s['init']}; sha256 {init}.",
            f"Test accuracy at the end: {accuracy}.",
            "",
            "Each cell: max abs logit difference on the test split "
            f"({s['test_images']} images) / max abs weight difference / top-1 agreement.",
            "The last column, where present, is torch against itself on another thread "
            "count: float32 rounding alone, the yardstick for the other columns.",
            "",
            table(result),
            "",
        ]
    )


def write(result: dict, reports: Path) -> list[Path]:
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    write_json_atomic(reports / JSON_FILE, result)
    write_text_atomic(reports / MD_FILE, markdown(result))
    plot(result, reports / PNG_FILE)
    return [reports / name for name in (JSON_FILE, MD_FILE, PNG_FILE)]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    per_epoch = result["settings"]["steps_per_epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    titles = {
        "logits": "max abs logit difference (test split)",
        "weights": "max abs weight difference",
    }
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        for i, (pair, d) in enumerate(lines(result).items()):
            # A log axis cannot show 0 (bit-identical): those points are left out, and said so.
            values = [v if v > 0 else float("nan") for v in d[key]]
            zeros = sum(v == 0 for v in d[key])
            label = pair + (f" (0 at {zeros} of {len(steps)} steps)" if zeros else "")
            # Thinner on top, so that equal lines (keras-fit is keras-tape) both stay visible.
            style = {"lw": 4.5 - 1.5 * i, "marker": "."}
            if d is result.get("reference"):
                style = {"color": "black", "ls": ":", "lw": 1.5, "marker": "."}
            ax.plot(steps, values, label=label, **style)
        for e in range(1, result["settings"]["epochs"]):
            ax.axvline(per_epoch * e, color="grey", lw=0.8, ls="--")
        ax.set(yscale="log", xlabel="optimizer step", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Three trainers from one init, dropout off: divergence per step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
