"""The export matrix: every requested trainer's checkpoint x every requested format.

EXPORTERS is the registry: format name -> fn(source, artifact_path) -> extra manifest
fields. What else a format is (precision, artifact file, packages...): its record,
contract/formats.py.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path

from contract import checkpoint
from contract.formats import FORMATS
from contract.names import INPUT_NAME, OUTPUT_NAME, PIXEL_MAX, variant_name
from export import onnx_quant, repository, tf_formats, torch_formats, versions
from export.source import Source

EXPORTERS: dict[str, Callable[[Source, Path], dict]] = {
    "torchscript": torch_formats.torchscript,
    "pt2": torch_formats.pt2,
    "onnx": torch_formats.onnx,
    "onnx-tf": tf_formats.onnx_tf,
    "onnx-fp16": onnx_quant.onnx_fp16,
    "onnx-int8": onnx_quant.onnx_int8,
    "savedmodel": tf_formats.savedmodel,
    **{
        name: partial(tf_formats.tflite, precision=FORMATS[name].precision)
        for name in ("tflite", "tflite-fp16", "tflite-int8")
    },
    "pte": torch_formats.pte,
}

# Distributions whose versions a manifest records: the format's (its record's packages) and
# the framework's the checkpoint was trained in, which a transferred model passed through.
FRAMEWORK_PACKAGES = {"torch": ("torch",), "keras": ("tensorflow", "keras")}
# TensorFlow ships as `tensorflow` (GPU hosts) or `tensorflow-cpu` (the CPU-only wheel).
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu")}


@dataclass(frozen=True)
class Result:
    name: str
    size: int  # bytes, the whole variant folder
    seconds: float


def package_versions(fmt: str, framework: str) -> dict[str, str]:
    names = dict.fromkeys(FRAMEWORK_PACKAGES[framework] + FORMATS[fmt].packages)
    return {name: _version(name) for name in names} | {"python": platform.python_version()}


def _version(name: str) -> str:
    candidates = DISTRIBUTIONS.get(name, (name,))
    for dist in candidates:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    raise metadata.PackageNotFoundError(f"none of {candidates} is installed")


def manifest(source: Source, fmt: str, name: str, extra: dict, version: int = 1) -> dict:
    """The record of one exported version: what every reader of the variant reads."""
    spec, ckpt = source.spec, source.ckpt
    side = spec.image_size
    return {
        "name": name,
        "trainer": source.trainer,
        "format": fmt,
        "precision": FORMATS[fmt].precision,
        "artifact": f"{version}/{FORMATS[fmt].artifact}",
        "max_batch_size": repository.MAX_BATCH_SIZE,
        "input": {"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, side, side, spec.channels]},
        "output": {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, spec.num_classes]},
        "labels": list(ckpt.labels),
        "normalization": {
            "layout": "NHWC",
            "scale": 1.0 / PIXEL_MAX,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "inside_graph": True,
        },
        "spec": spec.to_dict(),
        "versions": package_versions(fmt, ckpt.framework),
        **extra,
        "source_checkpoint": {
            "trainer": source.trainer,
            "path": str(ckpt.weights),
            "sha256": source.weights_sha256,
        },
        "run": training_run(ckpt),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def training_run(ckpt: checkpoint.Checkpoint) -> dict:
    """Where a version came from: the checkpoint's data, seed and initial weights' hash
    (spec.json), and its test metrics (metrics.json, when the trainer wrote one)."""
    r = ckpt.recorded
    metrics_file = ckpt.run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return {
        "data": r.get("data"),
        "seed": r.get("seed"),
        "init_sha256": (r.get("init") or {}).get("sha256"),
        "metrics": {k: v for k, v in metrics.items() if k.startswith("test_")},
    }


def export_variant(source: Source, fmt: str, out: Path, keep: int = versions.KEEP) -> Result:
    """Build version N+1 of a variant in a hidden folder beside the newest versions kept
    (export/versions.py), then rename the whole variant into place."""
    started = time.perf_counter()
    name = variant_name(source.trainer, fmt)
    staged = repository.stage(out, name)
    try:
        probe = manifest(source, fmt, name, {})  # the tensors and labels the new one takes
        number, kept, dropped = versions.carried(out, name, probe, keep)
        versions.link_versions(out / name, staged, list(kept))
        artifact = staged / str(number) / FORMATS[fmt].artifact
        artifact.parent.mkdir(parents=True, exist_ok=True)
        extra = EXPORTERS[fmt](source, artifact)
        warmup = source.calibration_images[0].astype("<f4").tobytes()  # a training image
        spec, labels = source.spec, source.ckpt.labels
        repository.write_metadata(staged, name, fmt, spec, labels, artifact, warmup)
        record = manifest(source, fmt, name, extra, number)
        files = repository.file_hashes(staged)
        assembled = versions.assemble(record, str(number), kept, files)
        repository.write_manifest(staged, assembled)
        final = repository.publish(staged, out, name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    result = Result(name, versions.deployed_size(final), time.perf_counter() - started)
    held = ",".join([*kept, str(number)])
    print(
        f"[export] {name:<26} {result.size / 1e6:7.2f} MB {result.seconds:6.1f} s  "
        f"version {number} (holds {held})" + (f"; {dropped}" if dropped else ""),
        flush=True,
    )
    return result


def export_all(
    trainers: Sequence[str],
    formats: Sequence[str],
    checkpoints: Path,
    out: Path,
    edge: Path | None = None,
    keep: int = versions.KEEP,
) -> list[Result]:
    """Every trainer x format into the model repository `out`, or into the edge root for
    what Triton cannot load (default: beside `out`). All checkpoints are found first, so a
    missing one fails before any work. Raises contract.checkpoint.CheckpointError."""
    ckpts = [checkpoint.find(t, checkpoints) for t in trainers]
    out = Path(out)
    edge = repository.edge_beside(out) if edge is None else Path(edge)
    roots = {fmt: repository.home(fmt, out, edge) for fmt in formats}
    for root in dict.fromkeys([out, *roots.values()]):
        root.mkdir(parents=True, exist_ok=True)
        repository.clean_stale(root)
    results = []
    for ckpt in ckpts:
        scratch = out / f"{repository.TMP_PREFIX}source-{ckpt.trainer}-{os.getpid()}"
        source = Source(ckpt, scratch)
        try:
            results += [export_variant(source, fmt, roots[fmt], keep) for fmt in formats]
        finally:
            source.close()
    return results


def summary(results: Sequence[Result], seconds: float) -> str:
    width = max([len("variant"), *(len(r.name) for r in results)])
    lines = [f"{'variant':<{width}} {'size MB':>8} {'seconds':>8}"]
    lines += [f"{r.name:<{width}} {r.size / 1e6:>8.2f} {r.seconds:>8.1f}" for r in results]
    lines.append(f"total {seconds:.1f} s for {len(results)} variant(s)")
    return "\n".join(lines)
