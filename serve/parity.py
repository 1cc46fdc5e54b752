"""The parity gate: every variant against the eager model it came from.

    python -m serve.parity                   # all variants in artifacts/model_repository
    python -m serve.parity --replay          # reuse the saved golden inputs and references

Golden set per trainer: the checkpoint's own test split (labelled) plus seeded random
images (unlabelled), so both real and adversarially flat inputs are covered. Writes
artifacts/reports/{parity.json, parity.md, parity.png, golden.npz}; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from serve import harness
from train.config import (
    ARTIFACT_FILE,
    CHECKPOINTS,
    FORMATS,
    MODEL_REPOSITORY,
    PRECISION,
    REPORTS,
    TRAINERS,
)

RANDOM_IMAGES = 64
ORACLE_IMAGES = 16  # onnx.reference is pure Python: a few images prove the point


@dataclass(frozen=True)
class Profile:
    """Named tolerances (the parity profiles in the README)."""

    max_abs_diff: float | None  # absolute, scaled by max(1, max |reference logit|) if `scaled`
    scaled: bool
    min_top1_agreement: float
    max_accuracy_drop: float | None


PROFILES = {
    "fp32": Profile(1e-4, False, 1.0, None),
    "fp16": Profile(1e-2, True, 0.99, None),
    "int8": Profile(None, False, 0.98, 0.01),
    # torch eager vs keras eager, same weights. Scaled: float32 keeps ~7 digits, so trained
    # logits near 20 differ by a few ulps (~1e-5) between two correct frameworks.
    "transfer": Profile(1e-5, True, 1.0, None),
    "oracle": Profile(1e-4, False, 1.0, None),  # onnxruntime vs onnx.reference
}


@dataclass
class Golden:
    images: np.ndarray  # (N, H, W, C) float32
    labels: np.ndarray  # (N,) int64; -1 for the random images


@dataclass
class Row:
    name: str
    trainer: str
    format: str
    profile: str
    reference: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    accuracy: float
    reference_accuracy: float
    accuracy_delta: float
    size_bytes: int
    passed: bool
    reason: str = ""
    oracle_max_abs_diff: float | None = None


def golden_set(trainer: str, checkpoints: Path, seed: int = 0) -> Golden:
    """The checkpoint's test split plus seeded random images of the same shape."""
    from train import checkpoint

    splits = checkpoint.find(trainer, checkpoints).splits()
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (RANDOM_IMAGES, *splits.test.images.shape[1:]))
    images = np.concatenate([splits.test.images, noise.astype(np.float32)])
    labels = np.concatenate([splits.test.labels, np.full(RANDOM_IMAGES, -1)])
    return Golden(images, labels)


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, profile: str) -> dict:
    """Shape, then dtype, then values against the named profile; the reason names the miss."""
    p = PROFILES[profile]
    if candidate.shape != reference.shape or candidate.dtype != reference.dtype:
        return {
            "passed": False,
            "reason": f"output {candidate.dtype}{list(candidate.shape)} != "
            f"reference {reference.dtype}{list(reference.shape)}",
        }
    diff = np.abs(candidate - reference)
    known = labels >= 0
    out = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((candidate.argmax(1) == reference.argmax(1)).mean()),
        "accuracy": float((candidate.argmax(1) == labels)[known].mean()) if known.any() else 0.0,
        "reference_accuracy": float((reference.argmax(1) == labels)[known].mean())
        if known.any()
        else 0.0,
    }
    out["accuracy_delta"] = out["accuracy"] - out["reference_accuracy"]
    misses = []
    if p.max_abs_diff is not None:
        bound = p.max_abs_diff * (max(1.0, float(np.abs(reference).max())) if p.scaled else 1.0)
        if out["max_abs_diff"] > bound:
            misses.append(f"max abs diff {out['max_abs_diff']:.3g} > {bound:.3g}")
    if out["top1_agreement"] < p.min_top1_agreement:
        misses.append(f"top-1 agreement {out['top1_agreement']:.2%} < {p.min_top1_agreement:.0%}")
    # 1e-9: "a drop of at most 1 point" must not fail on 0.99 - 1.0 == -0.0100000000000000089
    if p.max_accuracy_drop is not None and -out["accuracy_delta"] > p.max_accuracy_drop + 1e-9:
        misses.append(f"accuracy drop {-out['accuracy_delta']:.2%} > {p.max_accuracy_drop:.0%}")
    return {**out, "passed": not misses, "reason": "; ".join(misses)}


def oracle_diff(path: Path, model: harness.Backend, images: np.ndarray) -> float:
    """onnxruntime vs onnx.reference.ReferenceEvaluator: an independent ONNX executor."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path / ARTIFACT_FILE[model.manifest["format"]]))
    name = evaluator.input_names[0]
    expected = evaluator.run(None, {name: images[:ORACLE_IMAGES]})[0]
    return float(np.abs(model.predict(images[:ORACLE_IMAGES]) - expected).max())


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def check_variant(path: Path, goldens: dict, references: dict) -> Row:
    manifest = harness.read_manifest(path)
    trainer, fmt = manifest["trainer"], manifest["format"]
    profile = PRECISION[fmt]
    golden = goldens[trainer]
    base = dict(
        name=path.name,
        trainer=trainer,
        format=fmt,
        profile=profile,
        reference=references[trainer][0],
        size_bytes=size_of(path),
    )
    try:
        model = harness.load(path)
        result = compare(
            references[trainer][1], model.predict(golden.images), golden.labels, profile
        )
        if "max_abs_diff" in result and fmt in ("onnx", "onnx-tf"):
            oracle = oracle_diff(path, model, golden.images)
            result["oracle_max_abs_diff"] = oracle
            if oracle > PROFILES["oracle"].max_abs_diff:
                result["passed"] = False
                result["reason"] = (result["reason"] + "; " if result["reason"] else "") + (
                    f"onnxruntime vs onnx.reference max abs diff {oracle:.3g}"
                )
    except Exception as e:  # a variant that cannot load or run is a failed row, not a crash
        result = {"passed": False, "reason": f"{type(e).__name__}: {e}"}
    blank = dict.fromkeys(
        (
            "max_abs_diff",
            "mean_abs_diff",
            "top1_agreement",
            "accuracy",
            "reference_accuracy",
            "accuracy_delta",
        ),
        float("nan"),
    )
    return Row(**{**base, **blank, **result})


def cross_framework_row(trainer: str, checkpoints: Path, golden: Golden, reference) -> Row:
    """The trained model rebuilt in the other framework by weight transfer."""
    ref_name, ref_logits = reference
    other = "keras" if ref_name.endswith("torch") else "torch"
    model = harness.eager(trainer, other, checkpoints)
    result = compare(ref_logits, model.predict(golden.images), golden.labels, "transfer")
    return Row(
        name=model.name,
        trainer=trainer,
        format=f"eager-{other}",
        profile="transfer",
        reference=ref_name,
        size_bytes=0,
        **result,
    )


def run(repository: Path, checkpoints: Path, reports: Path, replay: bool = False) -> dict:
    from serve import report

    found = harness.variants(repository)
    if not found:
        raise SystemExit(f"no variants in {repository}: run `make export` first")
    present = {harness.read_manifest(p)["trainer"] for p in found.values()}
    trainers = [t for t in TRAINERS if t in present]
    goldens, references = load_or_build(trainers, checkpoints, reports / GOLDEN_FILE, replay)
    rows = [check_variant(p, goldens, references) for p in found.values()]
    rows.sort(key=lambda r: (trainers.index(r.trainer), FORMATS.index(r.format)))
    if not replay:
        rows += [cross_framework_row(t, checkpoints, goldens[t], references[t]) for t in trainers]
    result = {"passed": all(r.passed for r in rows), "variants": [asdict(r) for r in rows]}
    report.write(result, reports)
    return result


GOLDEN_FILE = "golden.npz"


def load_or_build(trainers, checkpoints: Path, path: Path, replay: bool):
    """Golden inputs and reference logits per trainer; saved so a run can be replayed."""
    if replay:
        if not path.is_file():
            raise SystemExit(f"--replay needs {path}: run `make parity` once without it")
        saved = np.load(path)
        goldens = {t: Golden(saved[f"images_{t}"], saved[f"labels_{t}"]) for t in trainers}
        refs = {t: (str(saved[f"name_{t}"]), saved[f"reference_{t}"]) for t in trainers}
        return goldens, refs
    goldens, refs, arrays = {}, {}, {}
    for t in trainers:
        goldens[t] = golden_set(t, checkpoints)
        model = harness.eager(t, checkpoints=checkpoints)
        refs[t] = (model.name, model.predict(goldens[t].images))
        arrays |= {
            f"images_{t}": goldens[t].images,
            f"labels_{t}": goldens[t].labels,
            f"reference_{t}": refs[t][1],
            f"name_{t}": np.array(model.name),
        }
    first = goldens[trainers[0]].images
    if all(np.array_equal(g.images, first) for g in goldens.values()):
        arrays["images"] = first  # one shared golden batch, e.g. for the server's start-up replay
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return goldens, refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve.parity", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--repository", type=Path, default=MODEL_REPOSITORY, help="model repository"
    )
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="checkpoint root")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the report goes")
    parser.add_argument(
        "--replay", action="store_true", help="reuse the saved golden.npz instead of checkpoints"
    )
    args = parser.parse_args(argv)
    from train.checkpoint import CheckpointError

    try:
        result = run(args.repository, args.checkpoints, args.reports, args.replay)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [v for v in result["variants"] if not v["passed"]]
    for v in failed:
        print(f"FAILED {v['name']}: {v['reason']}", file=sys.stderr)
    print(f"{len(result['variants']) - len(failed)}/{len(result['variants'])} passed")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
