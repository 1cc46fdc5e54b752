"""Where a variant leaves its reference: the error at each probe point of the CNN.

    python -m harness.diagnose torch.tflite-int8 keras-fit.onnx     # names in the repository
    python -m harness.diagnose path/to/variant torch.eager-keras     # a folder; a transfer row

For each probe point (contract/spec.py's `CNNSpec.probes`: every conv block's output, every
pool, the hidden layer, the logits) the candidate's tensor is compared with the eager
reference's on the same golden rows (harness/golden.py), in the contract's layout
(harness/probes.py). The error is relative to the range that tensor covers in the
reference, so one budget holds for every layer of any model; the budget follows from the
row's parity profile (`budget`). The first probe over its budget is the row's
`first_divergence`: where the bug is (or where quantization first costs more than it may).

`make parity` diagnoses every fail and inconclusive row (`--diagnose all`: every row) and
records it in parity.json, parity.md and the JUnit message. This command writes
artifacts/reports/diagnose.json and diagnose.png (the error per layer, one line per
variant, its budget dashed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from contract import checkpoint
from contract.checkpoint import CheckpointError
from contract.files import atomic_path, write_json_atomic
from contract.formats import FORMATS
from contract.paths import CHECKPOINTS, REPORTS, add_repository_argument
from contract.spec import CNNSpec
from export import repository
from harness import golden, probes
from harness.golden import GOLDEN_FILE, Golden
from harness.verdict import PROFILES, RANDOM

# Rows probed per trainer: the first labelled ones and every unlabelled one, as long as
# every probe of every row (held at once, the reference's and the candidate's) fits in
# PROBE_BYTES per side: all 384 at 8 px (28 KB a row), 242 at 64 px, 19 at 224 px
# (14 MB a row); a layer's error shows on a few rows as well as on many.
LABELLED_ROWS = 256
PROBE_BYTES = 256 << 20
MIN_ROWS = 16
# Exact profiles: float32 keeps ~7 digits, so a layer's error is ~1e-7..1e-6 of its range
# in every correct runtime (measured: <= 1.1e-6 on the demo's variants); 1e-5 leaves ~10x.
EXACT_BUDGET = 1e-5
# Quantized profiles judge the 99.9th percentile of a layer's errors, not the largest: an
# int8 tensor saturates on the odd element outside its calibrated range, by design (the
# verdict forgives the same, harness/verdict.py). Measured on the demo's int8 variants:
# <= 0.016 of the range at every layer, against the int8 profile's 0.05.
QUANTILE = 0.999


def budget(profile: str) -> float:
    """A layer's allowed error, relative to its range: the profile's own tolerance for the
    quantized ones (fp16 1e-2, int8 5e-2), EXACT_BUDGET for the exact ones."""
    p = PROFILES[profile]
    return p.max_abs_diff if p.quantized else EXACT_BUDGET


def rows(labels: np.ndarray, profile: str, spec: CNNSpec) -> np.ndarray:
    """The golden rows a layer is judged on: the first LABELLED_ROWS labelled ones and the
    unlabelled ones the profile bounds (int8 does not bound the uniform-noise rows), cut
    to what PROBE_BYTES holds (two thirds labelled)."""
    labelled = np.flatnonzero(labels >= 0)[:LABELLED_ROWS]
    unlabelled = np.flatnonzero(labels < 0)
    if PROFILES[profile].calibrated:
        unlabelled = unlabelled[labels[unlabelled] != RANDOM]
    per_row = 4 * sum(int(np.prod(p.shape)) for p in spec.probes())  # float32
    fits = max(MIN_ROWS, PROBE_BYTES // per_row)
    if len(labelled) + len(unlabelled) > fits:
        labelled = labelled[: max(fits * 2 // 3, fits - len(unlabelled))]
        unlabelled = unlabelled[: fits - len(labelled)]
    return np.concatenate([labelled, unlabelled])


def layer_errors(reference: dict, candidate: dict, profile: str) -> list[dict]:
    """Per probe, in the spec's order: its error relative to the reference's range, the
    budget, and whether it is over."""
    quantized, allowed, out = PROFILES[profile].quantized, budget(profile), []
    for name, ref in reference.items():
        diff = np.abs(candidate[name].astype(np.float64) - ref)
        spread = float(np.ptp(ref)) or 1.0  # a constant tensor: its absolute error
        worst = float(np.quantile(diff, QUANTILE) if quantized else diff.max())
        error = worst / spread
        out.append({"probe": name, "error": error, "budget": allowed, "over": error > allowed})
    return out


def first_over(layers: list[dict]) -> str | None:
    return next((layer["probe"] for layer in layers if layer["over"]), None)


def summary(result: dict) -> str:
    """One line for a report cell or a JUnit message."""
    if result.get("unreachable"):
        return f"layers not reachable: {result['unreachable']}"
    first = result["first_divergence"]
    if first is None:
        return "every layer within its budget"
    layer = next(x for x in result["layers"] if x["probe"] == first)
    return (
        f"first divergence at {first}: error {layer['error']:.2g} of its range, "
        f"budget {layer['budget']:.0e}"
    )


class Diagnosis:
    """The eager references' probes per trainer, computed once, and the candidates'."""

    def __init__(self, checkpoints: Path, goldens: dict[str, Golden]) -> None:
        self.checkpoints = checkpoints
        self.goldens = goldens
        self.cache: dict[tuple[str, str, int], dict] = {}

    def checkpoint(self, trainer: str):
        return checkpoint.find(trainer, self.checkpoints)

    def eager(self, trainer: str, framework: str, picked: np.ndarray) -> dict:
        key = (trainer, framework, hash(picked.tobytes()))
        if key not in self.cache:
            ckpt = self.checkpoint(trainer)
            images = self.goldens[trainer].images[picked]
            if framework == "torch":
                self.cache[key] = probes.torch_probes(checkpoint.load_torch(ckpt), images)
            else:
                model = checkpoint.load_keras(ckpt)
                self.cache[key] = probes.keras_probes(model, ckpt.spec, images)
        return self.cache[key]

    def variant(self, path: Path) -> dict:
        """One variant folder against its trainer's eager model."""
        manifest = repository.read_manifest(path)
        trainer, fmt = manifest["trainer"], manifest["format"]
        profile = FORMATS[fmt].precision
        base = {"name": path.name, "trainer": trainer, "format": fmt, "profile": profile}
        reason = probes.unreachable(fmt)
        if reason:
            return {**base, "unreachable": reason, "layers": [], "first_divergence": None}
        ckpt = self.checkpoint(trainer)
        picked = rows(self.goldens[trainer].labels, profile, ckpt.spec)
        reference = self.eager(trainer, ckpt.framework, picked)
        images = self.goldens[trainer].images[picked]
        candidate = probes.capture(repository.artifact(path, manifest), fmt, ckpt.spec, images)
        return self.judged(base, reference, candidate, profile)

    def transfer(self, trainer: str, other: str) -> dict:
        """The trained model rebuilt in the other framework against itself."""
        ckpt = self.checkpoint(trainer)
        picked = rows(self.goldens[trainer].labels, "transfer", ckpt.spec)
        reference = self.eager(trainer, ckpt.framework, picked)
        candidate = self.eager(trainer, other, picked)
        base = {
            "name": f"{trainer}.eager-{other}",
            "trainer": trainer,
            "format": f"eager-{other}",
            "profile": "transfer",
        }
        return self.judged(base, reference, candidate, "transfer")

    @staticmethod
    def judged(base: dict, reference: dict, candidate: dict, profile: str) -> dict:
        layers = layer_errors(reference, candidate, profile)
        return {**base, "unreachable": "", "layers": layers, "first_divergence": first_over(layers)}


def resolve(names: list[str], repository_dir: Path) -> list[Path | tuple[str, str]]:
    """Each argument as a variant folder, or (trainer, framework) for an eager-<framework>
    row; a name that is neither is an error naming what exists."""
    found = repository.variants(repository_dir) | repository.variants(
        repository.edge_beside(repository_dir)
    )
    out: list[Path | tuple[str, str]] = []
    for name in names:
        trainer, _, rest = name.partition(".")
        if rest in ("eager-torch", "eager-keras"):
            out.append((trainer, rest.removeprefix("eager-")))
        elif Path(name).is_dir():
            out.append(Path(name))
        elif name in found:
            out.append(found[name])
        else:
            known = ", ".join(sorted(found)) or f"none: run `make export` for {repository_dir}"
            raise SystemExit(f"error: no variant {name!r}; in the repository: {known}")
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r["layers"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, r in enumerate(shown):
        colour = f"C{i % 10}"
        names = [x["probe"] for x in r["layers"]]
        errors = [max(x["error"], 1e-9) for x in r["layers"]]
        ax.plot(names, errors, marker="o", color=colour, label=r["name"])
        ax.plot(names, [x["budget"] for x in r["layers"]], ls="--", color=colour, lw=1)
    ax.set_yscale("log")
    ax.set_ylabel("error / the layer's range (dashed: budget)")
    ax.set_title("Where each variant leaves its eager model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.diagnose", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "variants", nargs="+", metavar="VARIANT", help="a name, a folder or <trainer>.eager-*"
    )
    add_repository_argument(parser)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="checkpoint root")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the report goes")
    parser.add_argument(
        "--replay", action="store_true", help="the golden set of the last `make parity`"
    )
    args = parser.parse_args(argv)
    targets = resolve(args.variants, args.repository)
    trainers = sorted(
        {t[0] if isinstance(t, tuple) else repository.read_manifest(t)["trainer"] for t in targets}
    )
    try:
        goldens, _ = golden.load_or_build(
            trainers, args.checkpoints, args.reports / GOLDEN_FILE, args.replay
        )
        diagnosis = Diagnosis(args.checkpoints, goldens)
        results = [
            diagnosis.transfer(*t) if isinstance(t, tuple) else diagnosis.variant(t)
            for t in targets
        ]
    except (CheckpointError, probes.ProbeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r['name']} ({r['profile']}): {summary(r)}")
        for layer in r["layers"]:
            mark = "  OVER" if layer["over"] else ""
            print(f"  {layer['probe']:<8} {layer['error']:.2e}  budget {layer['budget']:.0e}{mark}")
    args.reports.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.reports / "diagnose.json", {"variants": results})
    plot(results, args.reports / "diagnose.png")
    print(f"-> {args.reports / 'diagnose.json'}, diagnose.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
