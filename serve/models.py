"""The variants one server holds: each loaded, proven before it serves, and batched.

A variant serves only after a start-up check: it replays the golden batch that
`make parity` saved (artifacts/reports/golden.npz) against the eager reference logits
saved with it, and the parity gate's own verdict (harness/verdict.py) decides: fail ->
UNAVAILABLE; inconclusive (too few labelled images to tell) -> it serves, and its
metadata and ready answers say so. Without a golden batch it checks the contract on a
seeded batch and that batched rows equal one-at-a-time rows (dynamic batching relies on
it). A variant that fails to load or check is UNAVAILABLE with the reason, and every
request for it gets that reason with a 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import harness
from contract.formats import FORMATS
from export import repository
from harness.golden import Saved
from harness.verdict import FAIL, INCONCLUSIVE, PASS, judge
from serve import catalog, v2
from serve.batching import MAX_QUEUE, Batcher
from serve.metrics import ModelStats

SEEDED_IMAGES = 7  # an odd batch: a batch-dimension bug shows at N > 1
LOADING, READY, UNAVAILABLE = "LOADING", "READY", "UNAVAILABLE"


@dataclass
class Servable:
    name: str
    path: Path
    stats: ModelStats = field(default_factory=ModelStats)
    manifest: dict | None = None
    model: harness.Backend | None = None
    batcher: Batcher | None = None
    signature: v2.Signature | None = None
    state: str = LOADING
    reason: str = "loading"
    parity: dict = field(default_factory=dict)  # the start-up check's verdict and reason
    max_batch: int = repository.MAX_BATCH_SIZE  # what the batcher puts in one runtime call

    @property
    def ready(self) -> bool:
        return self.state == READY

    def metadata(self) -> dict:
        """V2 model metadata, from the manifest (served even while unavailable)."""
        m = self.manifest or {}
        tensors = {key: m.get(key, {}) for key in ("input", "output")}
        return {
            "name": self.name,
            "versions": [v2.VERSION],
            # As config.pbtxt names the runtime: its platform, else its backend (TFLite's).
            "platform": platform(m.get("format")),
            "inputs": [tensors["input"]],
            "outputs": [tensors["output"]],
            "parity": self.parity,
        }


def platform(fmt: str | None) -> str:
    """What Triton's model metadata says for a folder of this format: the config's
    `platform`, or for a backend-only config the backend's name, as Triton reports it."""
    record = FORMATS.get(fmt)
    if record is None:
        return "unknown"
    return record.triton_platform or record.triton_backend or "unknown"


def check(model: harness.Backend, manifest: dict, golden: Saved) -> dict:
    """The start-up check's verdict ({"verdict", "reason"}); a FAIL keeps it from serving."""
    profile = FORMATS[manifest["format"]].precision
    entry = golden.batch(manifest["trainer"])
    if entry is not None:
        images, labels, reference = entry
        if images.shape[1:] != model.input_shape:
            return {
                "verdict": FAIL,
                "reason": f"golden batch {golden.path.name} holds {list(images.shape[1:])} "
                f"images, the model takes {list(model.input_shape)}: rerun `make parity` "
                "for this repository",
            }
        result = judge(reference, model.predict(images), labels, profile)
        if result["verdict"] != PASS:
            result["reason"] = f"golden replay ({profile} profile): {result['reason']}"
        return {"verdict": result["verdict"], "reason": result["reason"]}
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (SEEDED_IMAGES, *model.input_shape)).astype(np.float32)
    batched = model.predict(images)
    single = np.concatenate([model.predict(images[i : i + 1]) for i in range(len(images))])
    result = judge(single, batched, np.full(len(images), -1), profile)
    if result["verdict"] == FAIL:
        return {
            "verdict": FAIL,
            "reason": f"a batch of {len(images)} differs from one image at a time: "
            f"{result['reason']}",
        }
    return {"verdict": PASS, "reason": "no golden batch: contract and batching checked"}


def load(
    servable: Servable,
    golden: Saved,
    threads: int,
    max_batch: int,
    delay: float,
    max_queue: int = MAX_QUEUE,
) -> None:
    """Load and check one variant in place; never raises, the reason goes on the servable."""
    try:
        servable.manifest = repository.read_manifest(servable.path)
        model = harness.load(servable.path, threads=threads)
        servable.parity = check(model, servable.manifest, golden)
    except Exception as e:  # whatever stops a variant is its reason, not a crash
        # Runtimes name the file they fail on; clients get it relative to the repository.
        reason = catalog.without_paths(f"{type(e).__name__}: {e}", servable.path.parent)
        servable.state, servable.reason = UNAVAILABLE, reason
        return
    if servable.parity["verdict"] == FAIL:
        servable.state, servable.reason = UNAVAILABLE, servable.parity["reason"]
        return
    servable.model = model
    servable.signature = v2.Signature(
        servable.manifest["input"]["name"],
        servable.manifest["output"]["name"],
        tuple(model.labels),
    )
    servable.max_batch = min(max_batch, repository.max_batch_size(servable.manifest))
    servable.batcher = Batcher(
        servable.name,
        model.predict,
        servable.max_batch,
        delay,
        on_batch=servable.stats.batch,
        max_queue=max_queue,
    )
    servable.state, servable.reason = READY, ""


def inconclusive(servable: Servable) -> str:
    """Why a serving variant's parity is unproven, or empty."""
    verdict = servable.parity.get("verdict")
    return servable.parity["reason"] if servable.ready and verdict == INCONCLUSIVE else ""
