"""Snapshots from a real run: the reports under artifacts/, each with the run it came from.

Run on the machine that made the reports, right after the run: the date is the report's,
the machine and commit are this machine's and this checkout's (the bench's own record of
its machine where it has one).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from pathlib import Path

from deploy import capacity as capacity_plan


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "logical_cores": os.cpu_count()}


def provenance(root: Path, report: Path, commands: list[str], where: dict | None = None) -> dict:
    mtime = datetime.datetime.fromtimestamp(report.stat().st_mtime, datetime.UTC)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    where = where or machine()
    return {
        "commands": commands,
        "date": mtime.date().isoformat(),
        "cpu": where["cpu"],
        "logical_cores": where["logical_cores"],
        "commit": commit or "?",
    }


def trainers(checkpoints: Path) -> tuple[dict, Path] | None:
    """The `make demo` models' summary from their metrics.json, in the trainers' order."""
    from contract.names import TRAINERS

    found = {t: checkpoints / t / "metrics.json" for t in TRAINERS}
    found = {t: p for t, p in found.items() if p.is_file()}
    if not found:
        return None
    summary = {}
    for name, path in found.items():
        m = json.loads(path.read_text())
        summary[name] = {
            "device": m["device"],
            "epochs": len(m["epochs"]),
            "seconds": round(sum(e["seconds"] for e in m["epochs"]), 3),
            "images_per_s": round(m["epochs"][-1]["images_per_s"], 1),
            "test_accuracy": m["test_accuracy"],
        }
    return {"trainers": summary}, max(found.values(), key=lambda p: p.stat().st_mtime)


class Taker:
    """Writes snapshots into `out` and says what it took."""

    def __init__(self, root: Path, out: Path) -> None:
        self.root, self.out, self.said = root, out, []

    def save(self, name: str, snap: dict, report: Path, commands: list[str], where=None) -> dict:
        snap = {"provenance": provenance(self.root, report, commands, where), **snap}
        (self.out / f"{name}.json").write_text(json.dumps(snap, indent=1) + "\n")
        self.said.append(f"{name}.json <- {report} ({', '.join(commands)})")
        return snap

    def picture(self, png: Path) -> None:
        """A report's plot beside the page that shows it."""
        if png.is_file():
            shutil.copyfile(png, self.root / "docs" / png.name)
            self.said.append(f"docs/{png.name} <- {png}")

    def parity(self, path: Path) -> None:
        report = json.loads(path.read_text())
        browser = any(v.get("runtime") for v in report["variants"])
        commands = ["make demo", "make web", "make parity ARGS=--browser"][: 3 if browser else 1]
        self.save("parity", report, path, commands)
        self.picture(path.with_name("parity.png"))

    def lockstep(self, path: Path) -> None:
        report = json.loads(path.read_text())
        quick = " ARGS=--quick" if report["settings"]["max_steps"] else ""
        self.save("lockstep", report, path, [f"make lockstep{quick}"])
        self.picture(path.with_name("lockstep.png"))

    def bench(self, path: Path) -> None:
        """All but the server section into bench.json; that section, once, where the capacity
        plan reads it (deploy/bench-snapshot.json, as `make capacity` writes it)."""
        bench = json.loads(path.read_text())
        if bench["quick"]:
            self.said.append(f"not taken: {path} is a --quick run (its figures are for CI only)")
            return
        where = {k: bench["machine"][k] for k in ("cpu", "logical_cores")}
        rest = {k: v for k, v in bench.items() if k != "server"}
        p = self.save("bench", rest, path, ["make bench"], where)["provenance"]
        source = f"`make bench` on {p['date']} (commit {p['commit']})"
        repo = capacity_plan.HERE.parent
        capacity_plan.write(
            capacity_plan.snapshot(bench, source),
            self.root / capacity_plan.SNAPSHOT.relative_to(repo),
            self.root / capacity_plan.PAGE.relative_to(repo),
            {self.root / m.relative_to(repo): s for m, s in capacity_plan.SIZED_BY.items()},
        )
        self.said.append("deploy/bench-snapshot.json and the manifests' maxReplicas <- its server")
        self.picture(path.with_name("bench_stages.png"))


def take(root: Path, reports: Path, checkpoints: Path, out: Path) -> list[str]:
    """Every report found -> its snapshot in `out`; what was taken and what was not."""
    taker = Taker(root, out)
    if (path := reports / "parity.json").is_file():
        taker.parity(path)
    if found := trainers(checkpoints):
        taker.save("train", found[0], found[1], ["make demo"])
    if (path := reports / "lockstep.json").is_file():
        taker.lockstep(path)
    if (path := reports / "bench.json").is_file():
        taker.bench(path)
    if (path := reports / "serve_bench.json").is_file():
        commands = ["python -m benchmarks.server"]
        taker.save("serve_bench", json.loads(path.read_text()), path, commands)
    if (path := reports / "photos.json").is_file():
        taker.save("photos", json.loads(path.read_text()), path, ["python -m benchmarks.photos"])
    if (path := reports / "bug_example.json").is_file():
        commands = ["make demo", "python -m docs.figures.bug_example"]
        taker.save("bug_example", json.loads(path.read_text()), path, commands)
        taker.picture(path.with_name("bug_example.png"))
    if (path := reports / "browser_bench.json").is_file():
        commands = ["make web", "python -m benchmarks.browser"]
        taker.save("browser_bench", json.loads(path.read_text()), path, commands)
    return taker.said
