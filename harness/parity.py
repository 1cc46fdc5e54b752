"""The parity gate: every variant against the eager model it came from.

    python -m harness.parity                 # all variants in artifacts/model_repository
    python -m harness.parity --replay        # reuse the saved golden inputs and references
    python -m harness.parity --strict        # inconclusive rows fail the gate too
    python -m harness.parity --browser       # and each in-browser runtime of the built site
    python -m harness.parity --junit-xml artifacts/reports/parity-junit.xml   # for CI

Golden set per trainer: the held-out images of the checkpoint's own split (val + test,
labelled: the model never trained on them) plus seeded uniform-noise images (unlabelled),
so real and out-of-distribution inputs are both covered. Each row gets a verdict (pass,
inconclusive, fail) from harness/verdict.py. Variants come from the model repository and the
edge root beside it. With --browser, the site `make web` built runs the same golden batch in
headless Chromium: one more row per in-browser variant (`torch.onnx@browser-onnxruntime-web`,
`torch.tflite@browser-litert`), judged against the same eager logits under the format's
profile. Writes artifacts/reports/{parity.json, parity.md, parity.png, golden.npz}; exits 1
on any fail (with --strict, on inconclusive).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import harness
from export import repository
from harness.verdict import BLEND, FAIL, INCONCLUSIVE, PASS, PROFILES, RANDOM, VERDICTS, judge
from train.config import (
    CHECKPOINTS,
    FORMATS,
    MODEL_REPOSITORY,
    PRECISION,
    REPORTS,
    TRAINERS,
    WEB,
)

GOLDEN_FILE = "golden.npz"
RANDOM_IMAGES = 64  # uniform noise: label RANDOM
BLEND_IMAGES = 64  # two held-out images mixed: label BLEND (verdict.py says why both)
# Labelled held-out images at most (test first, then validation): enough for the verdict's
# bounds (a pass with no miss needs 268 at a 1% allowance), and a golden file of the same
# size whatever the folder holds (1024 RGB images at 64 px: 50 MB of float32).
HELD_OUT_IMAGES = 1024
ORACLE_IMAGES = 16  # onnx.reference is pure Python: a few images prove the point


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
    size_bytes: int
    verdict: str
    reason: str = ""
    max_abs_diff: float = float("nan")
    mean_abs_diff: float = float("nan")
    top1_agreement: float = float("nan")
    accuracy: float = float("nan")
    reference_accuracy: float = float("nan")
    accuracy_delta: float = float("nan")
    bound: float | None = None
    labelled_images: int | None = None
    unlabelled_max_abs_diff: float | None = None
    random_max_abs_diff: float | None = None  # int8: reported, not bounded (verdict.py)
    near_tie_flips: int | None = None
    decisive_flips: int | None = None
    oracle_max_abs_diff: float | None = None
    runtime: str | None = None  # browser rows: the in-browser runtime; else the format's own
    host_max_abs_diff: float | None = None  # browser rows: vs the same file in Python


def golden_set(trainer: str, checkpoints: Path, seed: int = 0) -> Golden:
    """The checkpoint's held-out images (val + test) plus seeded noise of the same shape."""
    from train import checkpoint

    splits = checkpoint.find(trainer, checkpoints).splits()
    tests = min(len(splits.test.labels), HELD_OUT_IMAGES)
    vals = min(len(splits.val.labels), HELD_OUT_IMAGES - tests)
    held_out = [splits.test.take(np.arange(tests)), splits.val.take(np.arange(vals))]
    rng = np.random.default_rng(seed)
    real = np.concatenate([np.asarray(d.images, np.float32) for d in held_out])
    noise = rng.uniform(0, 255, (RANDOM_IMAGES, *real.shape[1:])).astype(np.float32)
    pairs = rng.integers(0, len(real), (BLEND_IMAGES, 2))
    alpha = rng.uniform(0.3, 0.7, (BLEND_IMAGES, 1, 1, 1)).astype(np.float32)
    blends = alpha * real[pairs[:, 0]] + (1 - alpha) * real[pairs[:, 1]]
    images = np.concatenate([real, noise, blends])
    labels = np.concatenate(
        [
            *(d.labels for d in held_out),
            np.full(RANDOM_IMAGES, RANDOM),
            np.full(BLEND_IMAGES, BLEND),
        ]
    )
    return Golden(images, labels)


def oracle_diff(path: Path, model: harness.Backend, images: np.ndarray) -> float:
    """onnxruntime vs onnx.reference.ReferenceEvaluator: an independent ONNX executor."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(repository.artifact(path, model.manifest)))
    name = evaluator.input_names[0]
    expected = evaluator.run(None, {name: images[:ORACLE_IMAGES]})[0]
    return float(np.abs(model.predict(images[:ORACLE_IMAGES]) - expected).max())


def check_variant(path: Path, goldens: dict, references: dict) -> Row:
    manifest = repository.read_manifest(path)
    trainer, fmt = manifest["trainer"], manifest["format"]
    profile = PRECISION[fmt]
    golden = goldens[trainer]
    base = dict(
        name=path.name,
        trainer=trainer,
        format=fmt,
        profile=profile,
        reference=references[trainer][0],
        size_bytes=repository.folder_size(path),
    )
    try:
        model = harness.load(path)
        result = judge(references[trainer][1], model.predict(golden.images), golden.labels, profile)
        if fmt in ("onnx", "onnx-tf") and result["verdict"] != FAIL:
            oracle = oracle_diff(path, model, golden.images)
            result["oracle_max_abs_diff"] = oracle
            if oracle > PROFILES["oracle"].max_abs_diff:
                result["verdict"] = FAIL
                result["reason"] = f"onnxruntime vs onnx.reference max abs diff {oracle:.3g}"
    except Exception as e:  # a variant that cannot load or run is a failed row, not a crash
        result = {"verdict": FAIL, "reason": f"{type(e).__name__}: {e}"}
    return Row(**base, **result)


def cross_framework_row(trainer: str, checkpoints: Path, golden: Golden, reference) -> Row:
    """The trained model rebuilt in the other framework by weight transfer."""
    ref_name, ref_logits = reference
    other = "keras" if ref_name.endswith("torch") else "torch"
    model = harness.eager(trainer, other, checkpoints)
    result = judge(ref_logits, model.predict(golden.images), golden.labels, "transfer")
    return Row(
        name=model.name,
        trainer=trainer,
        format=f"eager-{other}",
        profile="transfer",
        reference=ref_name,
        size_bytes=0,
        **result,
    )


def counts(rows: list[dict]) -> dict[str, int]:
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def run(
    repository_dir: Path,
    checkpoints: Path,
    reports: Path,
    replay: bool = False,
    edge: Path | None = None,
    site: Path | None = None,
) -> dict:
    """Check every variant of the repository and the edge root (default: beside it), and
    with `site`, every in-browser one; write the report. `passed` is false when any row
    failed."""
    from harness import report

    edge = repository.edge_beside(repository_dir) if edge is None else edge
    found = repository.variants(repository_dir) | repository.variants(edge)
    if not found:
        raise SystemExit(f"no variants in {repository_dir} or {edge}: run `make export` first")
    present = {repository.read_manifest(p)["trainer"] for p in found.values()}
    trainers = [t for t in TRAINERS if t in present]
    goldens, references = load_or_build(trainers, checkpoints, reports / GOLDEN_FILE, replay)
    rows = [check_variant(p, goldens, references) for p in found.values()]
    if site is not None:
        from harness import browser_parity

        rows += browser_parity.rows(site, found, goldens, references)
    rows.sort(key=lambda r: (trainers.index(r.trainer), FORMATS.index(r.format), r.name))
    if not replay:
        rows += [cross_framework_row(t, checkpoints, goldens[t], references[t]) for t in trainers]
    variants = [asdict(r) for r in rows]
    tally = counts(variants)
    result = {"passed": tally[FAIL] == 0, "counts": tally, "variants": variants}
    report.write(result, reports)
    return result


def load_or_build(
    trainers: list[str], checkpoints: Path, path: Path, replay: bool
) -> tuple[dict[str, Golden], dict[str, tuple[str, np.ndarray]]]:
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
        prog="python -m harness.parity", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--repository", type=Path, default=MODEL_REPOSITORY, help="model repository"
    )
    parser.add_argument(
        "--edge",
        type=Path,
        default=None,
        help="root of the variants Triton cannot load (default: beside --repository)",
    )
    parser.add_argument(
        "--browser",
        action="store_true",
        help="also run the built site's in-browser runtimes in headless Chromium",
    )
    parser.add_argument(
        "--site", type=Path, default=WEB, help=f"the site `make web` built (default: {WEB})"
    )
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="checkpoint root")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the report goes")
    parser.add_argument(
        "--replay", action="store_true", help="reuse the saved golden.npz instead of checkpoints"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on inconclusive rows too, not only on fails"
    )
    parser.add_argument(
        "--junit-xml",
        type=Path,
        metavar="PATH",
        help="also write the report as JUnit XML for CI: a case per variant, a fail a "
        "<failure>, an inconclusive row a <skipped> (with --strict a <failure>)",
    )
    args = parser.parse_args(argv)
    from train.checkpoint import CheckpointError

    try:
        site = args.site if args.browser else None
        result = run(args.repository, args.checkpoints, args.reports, args.replay, args.edge, site)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.junit_xml:
        from harness import junit

        print(f"JUnit XML: {junit.write(result, args.junit_xml, args.strict)}")
    for v in result["variants"]:
        if v["verdict"] != PASS:
            print(f"{v['verdict'].upper()} {v['name']}: {v['reason']}", file=sys.stderr)
    tally = result["counts"]
    print(", ".join(f"{tally[v]} {v}" for v in VERDICTS) + f" of {len(result['variants'])}")
    blocking = (FAIL, INCONCLUSIVE) if args.strict else (FAIL,)
    return 1 if any(tally[v] for v in blocking) else 0


if __name__ == "__main__":
    sys.exit(main())
