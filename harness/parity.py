"""The parity gate: every variant against the eager model it came from.

    python -m harness.parity                 # all variants in artifacts/model_repository
    python -m harness.parity --replay        # reuse the saved golden inputs and references
    python -m harness.parity --strict        # inconclusive rows fail the gate too
    python -m harness.parity --browser       # and each in-browser runtime of the built site
    python -m harness.parity --junit-xml artifacts/reports/parity-junit.xml   # for CI
    python -m harness.parity --diagnose all  # every row's error per layer, not only failing ones

Every variant is judged on its trainer's golden set (harness/golden.py: the checkpoint's
held-out images plus seeded noise) against the eager model. Each row gets a verdict (pass,
inconclusive, fail) from harness/verdict.py. Variants come from the model repository and the
edge root beside it. With --browser, the site `make web` built runs the same golden batch in
headless Chromium: one more row per in-browser variant (`torch.onnx@browser-onnxruntime-web`,
`torch.tflite@browser-litert`), judged against the same eager logits under the format's
profile. Every fail and inconclusive row is diagnosed (harness/diagnose.py): the first
layer of the CNN over its budget, in the row's `first_divergence`. Writes
artifacts/reports/{parity.json, parity.md, parity.png, golden.npz} (and diagnose.png when a
row was diagnosed); exits 1 on any fail (with --strict, on inconclusive).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

import harness
from contract.checkpoint import CheckpointError
from contract.formats import FORMAT_NAMES, FORMATS
from contract.names import TRAINERS
from contract.paths import CHECKPOINTS, REPORTS, WEB, add_repository_argument
from export import repository, versions
from harness import browser_parity, diagnose, golden, junit, report
from harness.golden import GOLDEN_FILE, Golden
from harness.verdict import FAIL, INCONCLUSIVE, PASS, PROFILES, VERDICTS, Row, judge

ORACLE_IMAGES = 16  # onnx.reference is pure Python: a few images prove the point


def oracle_diff(path: Path, model: harness.Backend, images: np.ndarray) -> float:
    """onnxruntime vs onnx.reference.ReferenceEvaluator: an independent ONNX executor."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(repository.artifact(path, model.manifest)))
    name = evaluator.input_names[0]
    expected = evaluator.run(None, {name: images[:ORACLE_IMAGES]})[0]
    return float(np.abs(model.predict(images[:ORACLE_IMAGES]) - expected).max())


def check_variant(
    path: Path, goldens: dict, references: dict, made_from: dict | None = None
) -> Row:
    """One variant's row. `made_from`: {trainer: sha256 of the checkpoint the reference
    logits come from}; a live version exported from another one (a rollback to a model
    trained before) has no eager model on disk to compare with: inconclusive, saying so."""
    manifest = repository.read_manifest(path)
    trainer, fmt = manifest["trainer"], manifest["format"]
    profile = FORMATS[fmt].precision
    images, labels = goldens[trainer].images, goldens[trainer].labels
    base = dict(
        name=path.name,
        trainer=trainer,
        format=fmt,
        profile=profile,
        reference=references[trainer][0],
        size_bytes=versions.deployed_size(path),
        version=str(manifest.get("version", "1")),
    )
    reference = (made_from or {}).get(trainer)
    exported = manifest.get("source_checkpoint", {}).get("sha256")
    if reference and exported and reference != exported:
        version = manifest.get("version", "1")
        return Row(
            **base,
            verdict=INCONCLUSIVE,
            reason=f"version {version} was exported from checkpoint {exported[:12]}, the "
            f"reference is checkpoint {reference[:12]}'s: its eager model is not on disk "
            "(a rollback to an earlier training run); export the current one to prove it",
        )
    try:
        model = harness.load(path)
        result = judge(references[trainer][1], model.predict(images), labels, profile)
        # The oracle is exact arithmetic: a quantized file's kernels round differently (ORT
        # fuses QDQ into int8 kernels, casts float16 to float32) and its profile judges it.
        exact = FORMATS[fmt].precision == "fp32"
        if FORMATS[fmt].runner == "onnxruntime" and exact and result["verdict"] != FAIL:
            oracle = oracle_diff(path, model, images)
            result["oracle_max_abs_diff"] = oracle
            if oracle > PROFILES["oracle"].max_abs_diff:
                result["verdict"] = FAIL
                result["reason"] = f"onnxruntime vs onnx.reference max abs diff {oracle:.3g}"
    except Exception as e:  # a variant that cannot load or run is a failed row, not a crash
        result = {"verdict": FAIL, "reason": f"{type(e).__name__}: {e}"}
    return Row(**base, **result)


def cross_framework_row(trainer: str, checkpoints: Path, inputs: Golden, reference) -> Row:
    """The trained model rebuilt in the other framework by weight transfer."""
    ref_name, ref_logits = reference
    other = "keras" if ref_name.endswith("torch") else "torch"
    model = harness.eager(trainer, other, checkpoints)
    result = judge(ref_logits, model.predict(inputs.images), inputs.labels, "transfer")
    return Row(
        name=model.name,
        trainer=trainer,
        format=f"eager-{other}",
        profile="transfer",
        reference=ref_name,
        size_bytes=0,
        **result,
    )


DIAGNOSE = ("failing", "all", "none")  # --diagnose: which rows get their layers checked


def diagnose_rows(rows: list[Row], which: str, found: dict, diagnosis: diagnose.Diagnosis) -> None:
    """Set each chosen row's first divergence (fail and inconclusive rows, or all)."""
    for row in rows:
        if which == "none" or (which == "failing" and row.verdict == PASS):
            continue
        if row.runtime:  # an in-browser row: its runtime runs in Chromium
            row.diagnosis = f"layers not reachable: {row.runtime} runs inside the browser"
            continue
        try:
            if row.profile == "transfer":
                result = diagnosis.transfer(row.trainer, row.format.removeprefix("eager-"))
            else:
                result = diagnosis.variant(found[row.name])
        except Exception as e:  # a variant that cannot load has its reason already
            result = {"unreachable": f"{type(e).__name__}: {e}", "layers": []}
            result["first_divergence"] = None
        row.first_divergence, row.layers = result["first_divergence"], result["layers"]
        row.diagnosis = diagnose.summary(result)


def counts(rows: list[dict]) -> dict[str, int]:
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def run(
    repository_dir: Path,
    checkpoints: Path,
    reports: Path,
    replay: bool = False,
    edge: Path | None = None,
    site: Path | None = None,
    diagnosed: str = "failing",
) -> dict:
    """Check every variant of the repository and the edge root (default: beside it), and
    with `site`, every in-browser one; diagnose the `diagnosed` rows (DIAGNOSE); write the
    report. `passed` is false when any row failed."""
    edge = repository.edge_beside(repository_dir) if edge is None else edge
    found = repository.variants(repository_dir) | repository.variants(edge)
    if not found:
        raise SystemExit(f"no variants in {repository_dir} or {edge}: run `make export` first")
    present = {repository.read_manifest(p)["trainer"] for p in found.values()}
    trainers = [t for t in TRAINERS if t in present]
    goldens, references = golden.load_or_build(trainers, checkpoints, reports / GOLDEN_FILE, replay)
    saved = golden.Saved(reports / GOLDEN_FILE)
    made_from = {t: saved.checkpoint(t) for t in trainers}
    rows = [check_variant(p, goldens, references, made_from) for p in found.values()]
    if site is not None:
        rows += browser_parity.rows(site, found, goldens, references)
    rows.sort(key=lambda r: (trainers.index(r.trainer), FORMAT_NAMES.index(r.format), r.name))
    if not replay:
        rows += [cross_framework_row(t, checkpoints, goldens[t], references[t]) for t in trainers]
    diagnose_rows(rows, diagnosed, found, diagnose.Diagnosis(checkpoints, goldens))
    variants = [asdict(r) for r in rows]
    tally = counts(variants)
    result = {"passed": tally[FAIL] == 0, "counts": tally, "variants": variants}
    report.write(result, reports)
    if any(r.layers for r in rows):
        diagnose.plot([v for v in variants if v["layers"]], reports / "diagnose.png")
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.parity", description=__doc__.split("\n")[0]
    )
    add_repository_argument(parser)
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
        "--diagnose",
        choices=DIAGNOSE,
        default="failing",
        help="which rows get the error at each layer of the CNN and their first divergence: "
        "fail and inconclusive ones (default), all, or none",
    )
    parser.add_argument(
        "--junit-xml",
        type=Path,
        metavar="PATH",
        help="also write the report as JUnit XML for CI: a case per variant, a fail a "
        "<failure>, an inconclusive row a <skipped> (with --strict a <failure>)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        site = args.site if args.browser else None
        result = run(
            args.repository,
            args.checkpoints,
            args.reports,
            args.replay,
            args.edge,
            site,
            args.diagnose,
        )
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.junit_xml:
        print(f"JUnit XML: {junit.write(result, args.junit_xml, args.strict)}")
    for v in result["variants"]:
        if v["verdict"] != PASS:
            print(f"{v['verdict'].upper()} {v['name']}: {v['reason']}", file=sys.stderr)
            if v["diagnosis"]:
                print(f"  {v['diagnosis']}", file=sys.stderr)
    tally = result["counts"]
    print(", ".join(f"{tally[v]} {v}" for v in VERDICTS) + f" of {len(result['variants'])}")
    blocking = (FAIL, INCONCLUSIVE) if args.strict else (FAIL,)
    return 1 if any(tally[v] for v in blocking) else 0


if __name__ == "__main__":
    sys.exit(main())
